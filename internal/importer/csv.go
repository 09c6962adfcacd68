package importer

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
)

// sniffSize is how much of the file decides its encoding and delimiter.
const sniffSize = 64 << 10

// binaryHead tells a file that is not text from its first bytes (after a
// UTF-16 byte order mark, which is text with NUL bytes): one with a NUL
// byte, or one that starts as the files people upload by mistake do (a
// PDF, an image, a compressed archive other than zip), which may not
// show a NUL in the bytes read.
func binaryHead(head []byte) bool {
	if bytes.HasPrefix(head, []byte{0xFF, 0xFE}) || bytes.HasPrefix(head, []byte{0xFE, 0xFF}) {
		return false
	}
	for _, magic := range []string{"%PDF-", "\x89PNG", "\xFF\xD8\xFF", "GIF8", "\x1F\x8B", "Rar!", "7z\xBC\xAF"} {
		if bytes.HasPrefix(head, []byte(magic)) {
			return true
		}
	}
	return bytes.IndexByte(head, 0) >= 0
}

// markupHead tells HTML or XML (an HTML table saved as .xls, Excel 2003's
// XML Spreadsheet, a flat OpenDocument file) from CSV: it starts with a
// tag. No header row starts with "<".
func markupHead(head []byte) bool {
	head = bytes.TrimLeft(bytes.TrimPrefix(head, []byte{0xEF, 0xBB, 0xBF}), " \t\r\n")
	return len(head) > 1 && head[0] == '<' && (head[1] == '!' || head[1] == '?' || head[1] >= 'A' && head[1] <= 'Z' || head[1] >= 'a' && head[1] <= 'z')
}

// MaxLineBytes bounds one line of a CSV file, so that a file with no line
// breaks cannot hold the worker's memory.
const MaxLineBytes = 1 << 20

// CSVReader streams the rows of a CSV file.
type CSVReader struct {
	r       *csv.Reader
	cols    columns
	lastRow int // spreadsheet row of the last record
	lastEnd int // physical line where the last record ended
	// fallback decodes a field that is not UTF-8 in a file taken for UTF-8
	// from its first bytes; nil when the encoding is certain.
	fallback *charmap.Charmap
	// checkDecoded: the file is read as Windows-1252, and a field with
	// U+FFFD held a byte Windows-1252 does not define.
	checkDecoded bool
	Encoding     string
	Delim        rune
}

// hasWindows1252Undefined finds a byte Windows-1252 leaves undefined (the
// decoder gives U+FFFD for them): a file that is not UTF-8 and has one is
// in another encoding (Shift-JIS, the MS-DOS code pages of Excel's "CSV
// (MS-DOS)"), and read as Windows-1252 its names would be garbled. Other
// encodings (Windows-1250 or -1251) use no such byte and cannot be told
// from Windows-1252 by their bytes.
func hasWindows1252Undefined(b []byte) bool {
	for _, c := range b {
		switch c {
		case 0x81, 0x8D, 0x8F, 0x90, 0x9D:
			return true
		}
	}
	return false
}

const msgNotWindows1252 = `the file is neither UTF-8 nor Windows-1252 text (it may be Shift-JIS, or an MS-DOS code page): save it as "CSV UTF-8 (Comma delimited)" and upload it again`

// OpenCSV reads the header of a CSV upload and returns a reader of its rows.
// Encodings: UTF-8 with or without BOM, UTF-16 with BOM, and for bytes that
// are not UTF-8, Windows-1252 (what Excel writes as "CSV" on Windows) or,
// in a file whose lines end in CR alone, Mac Roman (Excel for Mac's "CSV").
// Delimiters: comma, semicolon or tab, whichever splits the header most.
func OpenCSV(src io.Reader) (*CSVReader, error) {
	br := bufio.NewReaderSize(src, sniffSize)
	head, err := br.Peek(sniffSize)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("read the file: %w", err)
	}
	if len(bytes.TrimSpace(head)) == 0 {
		return nil, fileError("the file is empty")
	}
	var text io.Reader
	var enc string
	legacy, legacyName := charmap.Windows1252, "Windows-1252"
	if macLineEnds(head) {
		legacy, legacyName = charmap.Macintosh, "Mac Roman"
	}
	switch {
	case markupHead(head):
		return nil, fileError("the file is a web page or XML (what some programs' \"Export to Excel\" saves as .xls), not CSV or XLSX: open it in Excel and save it as .xlsx or .csv")
	case bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF}):
		_, _ = br.Discard(3)
		text, enc = br, "UTF-8 (BOM)"
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}), bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		text = transform.NewReader(br, unicode.UTF16(unicode.BigEndian, unicode.ExpectBOM).NewDecoder())
		enc = "UTF-16"
	case binaryHead(head):
		return nil, fileError("the file is neither CSV text nor XLSX")
	case utf8.Valid(trimPartialRune(head)):
		text, enc = br, "UTF-8"
	case legacy == charmap.Windows1252 && hasWindows1252Undefined(head):
		return nil, fileError("%s", msgNotWindows1252)
	default:
		text, enc = transform.NewReader(br, legacy.NewDecoder()), legacyName
	}
	limited := &lineLimiter{r: &bareCRAsLF{r: bufio.NewReaderSize(text, sniffSize)}}
	tb := bufio.NewReaderSize(limited, sniffSize)
	sample, _ := tb.Peek(sniffSize)
	delim, sepLine := sepDirective(sample)
	if sepLine > 0 {
		// Excel hides the line, so the header is still row 1.
		_, _ = tb.Discard(sepLine)
	} else {
		delim = detectDelimiter(sample)
	}

	cr := csv.NewReader(tb)
	cr.Comma = delim
	cr.FieldsPerRecord = -1 // ragged rows are that row's error, not the file's
	cr.LazyQuotes = true    // a stray quote (5" pipe) is text, as Excel reads it
	cr.ReuseRecord = true
	// The header is the first row with a value in it, as in a workbook:
	// rows of empty cells above it (",,,") are what spreadsheet programs
	// export for empty rows.
	var header []string
	for {
		header, err = cr.Read()
		if err != nil {
			if limited.err != nil {
				return nil, limited.err
			}
			if errors.Is(err, io.EOF) {
				return nil, fileError("the file is empty")
			}
			return nil, fileError("cannot read the header row: %v", err)
		}
		if !blank(header) {
			break
		}
	}
	cols, err := mapHeader(header)
	if err != nil {
		return nil, err
	}
	line, _ := cr.FieldPos(0)
	r := &CSVReader{r: cr, cols: cols, lastRow: line, Encoding: enc, Delim: delim}
	switch enc {
	case "UTF-8":
		r.fallback = legacy
	case "Windows-1252":
		r.checkDecoded = true
	}
	r.lastEnd = line + newlines(header)
	return r, nil
}

// sepDirective reads the "sep=;" line some programs put first to tell Excel
// the delimiter: the delimiter it names and the bytes of the line, or 0.
func sepDirective(sample []byte) (rune, int) {
	line, _, found := bytes.Cut(sample, []byte("\n"))
	if !found {
		return 0, 0
	}
	text := strings.Trim(strings.TrimSpace(string(line)), `"`)
	if len(text) < 5 || !strings.EqualFold(text[:4], "sep=") {
		return 0, 0
	}
	d, _ := utf8.DecodeRuneInString(text[4:])
	// "sep=;;;": a program that took the line for a row padded it.
	if strings.Trim(text[4:], string(d)) != "" || d == '"' || d == utf8.RuneError || d == '\r' || d == 0 {
		return 0, 0
	}
	return d, len(line) + 1
}

// Next returns the next row, io.EOF at the end. Blank lines are skipped but
// still counted, so row numbers match what a spreadsheet shows.
func (r *CSVReader) Next() (Row, error) {
	for {
		rec, err := r.r.Read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return Row{}, io.EOF
			}
			var lerr *lineTooLong
			if errors.As(err, &lerr) {
				return Row{}, fileError("row %d is longer than %d bytes", r.lastRow+1, MaxLineBytes)
			}
			return Row{}, fileError("row %d: %v", r.lastRow+1, err)
		}
		start, _ := r.r.FieldPos(0)
		r.lastRow += start - r.lastEnd // one row per physical line between records, blank ones included
		r.lastEnd = start + newlines(rec)
		if blank(rec) {
			continue
		}
		if !storable(rec, r.fallback, r.checkDecoded) {
			return Row{}, fileError("row %d: %s", r.lastRow, msgNotWindows1252)
		}
		row := r.cols.row(r.lastRow, rec)
		if err := r.unclosedQuote(rec); err != nil {
			row.Err = err
		} else if row.Err == nil && excelExponent.MatchString(row.AccountNumber) {
			row.Err = &FieldError{Field: ColAccountNumber, Message: MsgAccountRounded}
		}
		return row, nil
	}
}

// excelExponent is how Excel writes a number of more than 11 digits in a
// General cell to CSV: rounded to six digits, 1.23457E+15. No account
// number is written so; the digits of the one typed are gone.
var excelExponent = regexp.MustCompile(`^[0-9]\.[0-9]+E\+[0-9]+$`)

// MsgUnclosedQuote is the row error of a field that holds the rows after
// it: a quotation mark opened in it is never closed.
const MsgUnclosedQuote = `a quotation mark (") in this row is not closed, so the rows below it were read into this row; remove the quotation mark or close it`

// unclosedQuote finds a field that swallowed rows. A field that starts
// with a quotation mark runs to the next one, across line breaks, so one
// left open (Robert "Bob, in a name) takes the rows after it, up to the
// next quotation mark or the end of the file, into that field: without a
// word they would be neither imported nor in the error log. A line inside
// the field is taken for a swallowed row when it could not be part of a
// real value: in one of the template's columns (an account number, an
// email, a name, none of which spans lines), a line with a delimiter in
// it; in another column (notes, an address on two lines), a line that
// splits like a row, an email where the email column is.
func (r *CSVReader) unclosedQuote(rec []string) *FieldError {
	delim := string(r.Delim)
	email, hasEmail := r.cols.index[ColEmail]
	for i, f := range rec {
		_, rest, more := strings.Cut(f, "\n")
		if !more {
			continue
		}
		col := r.cols.nameOf(i)
		for more {
			var line string
			line, rest, more = strings.Cut(rest, "\n")
			swallowed := false
			if col != "" {
				swallowed = strings.Contains(line, delim)
			} else if cells := strings.Split(line, delim); hasEmail && email < len(cells) {
				swallowed = strings.Contains(cells[email], "@")
			}
			if swallowed {
				return &FieldError{Field: col, Message: MsgUnclosedQuote}
			}
		}
	}
	return nil
}

// Close releases nothing for CSV; it makes CSVReader a Reader.
func (r *CSVReader) Close() error { return nil }

// storable makes every field text Postgres can store: no bytes that are not
// UTF-8, no NUL. In a file taken for UTF-8 (guessed from its first 64 KiB),
// a field that is not UTF-8 is read again with the fallback: an Excel CSV
// whose first accented letter comes later; otherwise (a file with a UTF-8
// BOM) such bytes become U+FFFD. It is false when a field decoded from
// Windows-1252 (the whole file, when checkDecoded, or a field read with
// the fallback) held a byte that encoding does not define.
func storable(rec []string, fallback *charmap.Charmap, checkDecoded bool) bool {
	ok := true
	for i, f := range rec {
		if checkDecoded && strings.ContainsRune(f, utf8.RuneError) {
			ok = false
		}
		if !utf8.ValidString(f) {
			if fallback == nil {
				f = strings.ToValidUTF8(f, "\uFFFD")
			} else if s, err := fallback.NewDecoder().String(f); err == nil {
				f = s
				if fallback == charmap.Windows1252 && strings.ContainsRune(s, utf8.RuneError) {
					ok = false
				}
			} else {
				f = strings.ToValidUTF8(f, "\uFFFD")
			}
		}
		rec[i] = strings.ReplaceAll(f, "\x00", "")
	}
	return ok
}

func blank(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

func newlines(rec []string) int {
	n := 0
	for _, f := range rec {
		n += strings.Count(f, "\n")
	}
	return n
}

// trimPartialRune drops a rune cut in half by the end of the sniffed bytes.
func trimPartialRune(b []byte) []byte {
	for i := 1; i <= 3 && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			break
		}
	}
	return b
}

// detectDelimiter counts comma, semicolon and tab outside quotes on the
// first line that is not blank (the header: blank lines above it are
// skipped) and takes the most frequent (comma on a tie).
func detectDelimiter(sample []byte) rune {
	sample = bytes.TrimLeft(sample, " \r\n")
	counts := map[rune]int{}
	inQuotes := false
	for _, c := range string(sample) {
		if c == '"' {
			inQuotes = !inQuotes
			continue
		}
		if inQuotes {
			continue
		}
		if c == '\n' || c == '\r' {
			break
		}
		if c == ',' || c == ';' || c == '\t' {
			counts[c]++
		}
	}
	best := ','
	for _, d := range []rune{';', '\t'} {
		if counts[d] > counts[best] {
			best = d
		}
	}
	return best
}

// macLineEnds tells a file whose lines end in CR alone (the Macintosh
// convention Excel for Mac still writes) from one that ends them in CRLF or
// LF: more lone CRs than either.
func macLineEnds(head []byte) bool {
	crlf := bytes.Count(head, []byte("\r\n"))
	cr := bytes.Count(head, []byte("\r")) - crlf
	lf := bytes.Count(head, []byte("\n")) - crlf
	return cr > crlf && cr > lf
}

// bareCRAsLF turns a CR that no LF follows into LF: encoding/csv ends a
// record only at LF, and a file whose rows end in CR alone (Excel for Mac)
// would otherwise read as one huge header row. That is so even when the file
// has an LF somewhere too (a line break inside a cell, a last line ended by
// another program), so every lone CR is converted, not only in files without
// LF; inside quotes it is a line break in the cell either way.
type bareCRAsLF struct {
	r *bufio.Reader
}

func (c *bareCRAsLF) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for i := range p[:n] {
		if p[i] != '\r' {
			continue
		}
		if i+1 < n {
			if p[i+1] != '\n' {
				p[i] = '\n'
			}
			continue
		}
		// The CR ends this read: what follows decides.
		if next, perr := c.r.Peek(1); perr != nil || next[0] != '\n' {
			p[i] = '\n'
		}
	}
	return n, err
}

type lineTooLong struct{}

func (*lineTooLong) Error() string { return "line too long" }

// lineLimiter fails a read once MaxLineBytes pass without a line break.
type lineLimiter struct {
	r   io.Reader
	run int
	err error
}

func (l *lineLimiter) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	for _, c := range p[:n] {
		if c == '\n' {
			l.run = 0
		} else if l.run++; l.run > MaxLineBytes {
			l.err = &lineTooLong{}
			return 0, l.err
		}
	}
	return n, err
}
