package importer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/unicode"
)

func readAll(t *testing.T, data []byte) ([]Row, error) {
	t.Helper()
	r, err := OpenCSV(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var rows []Row
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		rows = append(rows, row)
	}
}

func utf16(t *testing.T, s string, e unicode.Endianness) []byte {
	t.Helper()
	b, err := unicode.UTF16(e, unicode.UseBOM).NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEncodingsDelimitersAndLineEndings(t *testing.T) {
	t.Parallel()
	const text = "Account Number,Customer Email,Customer First Name,Customer Last Name\n145722,jose@example.com,José,Müller\n145723,ann@example.com,Ann,Lee\n"
	win1252, err := charmap.Windows1252.NewEncoder().Bytes([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	macRoman, err := charmap.Macintosh.NewEncoder().Bytes([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	cr := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r")) }
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"utf-8", []byte(text)},
		{"utf-8 bom", append([]byte{0xEF, 0xBB, 0xBF}, text...)},
		{"utf-16le bom", utf16(t, text, unicode.LittleEndian)},
		{"utf-16be bom", utf16(t, text, unicode.BigEndian)},
		{"windows-1252", win1252},
		{"crlf", []byte(strings.ReplaceAll(text, "\n", "\r\n"))},
		{"cr (classic Mac)", []byte(strings.ReplaceAll(text, "\n", "\r"))},
		// Excel for Mac's "CSV": Mac Roman, rows ended by CR.
		{"mac roman cr", cr(macRoman)},
		{"mac roman semicolon cr", cr(bytes.ReplaceAll(macRoman, []byte(","), []byte(";")))},
		// The last line ended by CRLF (another program appended it): the
		// other rows still end at their CR.
		{"cr with a final crlf", []byte(strings.Replace(strings.ReplaceAll(text, "\n", "\r"), "Lee\r", "Lee\r\n", 1))},
		{"trailing delimiter", []byte(strings.ReplaceAll(text, "\n", ",\n"))},
		{"trailing delimiter on the header only", []byte(strings.Replace(text, "\n", ",\n", 1))},
		{"semicolon", []byte(strings.ReplaceAll(text, ",", ";"))},
		{"tab", []byte(strings.ReplaceAll(text, ",", "\t"))},
		{"sep= line", []byte("sep=;\n" + strings.ReplaceAll(text, ",", ";"))},
		{"sep= line padded", []byte("sep=;;;\n" + strings.ReplaceAll(text, ",", ";"))},
		{"sep= line crlf bom", append([]byte{0xEF, 0xBB, 0xBF}, "\"sep=\t\"\r\n"+strings.ReplaceAll(strings.ReplaceAll(text, ",", "\t"), "\n", "\r\n")...)},
		{"semicolon crlf bom", append([]byte{0xEF, 0xBB, 0xBF}, strings.ReplaceAll(strings.ReplaceAll(text, ",", ";"), "\n", "\r\n")...)},
	} {
		rows, err := readAll(t, tc.data)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if len(rows) != 2 || rows[0] != (Row{Number: 2, AccountNumber: "145722", Email: "jose@example.com", FirstName: "José", LastName: "Müller"}) || rows[1].Number != 3 {
			t.Errorf("%s: %+v", tc.name, rows)
		}
	}
}

// Excel writes a CSV's rows with no delimiters for the empty cells at
// their end, past the first rows of the sheet: such a row is whole, its
// last cells empty.
func TestExcelRowsWithoutTrailingDelimiters(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("Account Number,Customer Email,Customer First Name,Customer Last Name\r\n")
	for i := 0; i < 16; i++ {
		fmt.Fprintf(&b, "%d,u%d@example.com,Ann,Lee\r\n", 100+i, i)
	}
	for i := 16; i < 20; i++ {
		fmt.Fprintf(&b, "%d,u%d@example.com,Bob\r\n", 100+i, i)
	}
	b.WriteString("120,u20@example.com\r\n")
	rows, err := readAll(t, []byte(b.String()))
	if err != nil || len(rows) != 21 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	for _, r := range rows {
		if r.Err != nil || len(Validate(r)) > 0 {
			t.Errorf("row %d: %+v %v", r.Number, r, Validate(r))
		}
	}
	if r := rows[17]; r.FirstName != "Bob" || r.LastName != "" {
		t.Errorf("short row: %+v", r)
	}
}

// An account number Excel wrote to CSV in its exponent form lost its
// digits: the row fails rather than invite the wrong account. A value only
// like it (letters, or digits in another form) is an account number.
func TestExcelExponentAccountInCSV(t *testing.T) {
	t.Parallel()
	rows, err := readAll(t, []byte("Account Number,Customer Email\r\n1.23457E+15,a@example.com\r\n1E5X,b@example.com\r\n12345678901234567,c@example.com\r\n"))
	if err != nil || len(rows) != 3 {
		t.Fatalf("%+v %v", rows, err)
	}
	if e := rows[0].Err; e == nil || e.Message != MsgAccountRounded || e.Field != ColAccountNumber {
		t.Errorf("exponent: %+v", rows[0])
	}
	if rows[1].Err != nil || rows[2].Err != nil {
		t.Errorf("accounts: %+v %+v", rows[1], rows[2])
	}
}

// A blank line above the header does not hide its delimiter.
func TestDelimiterOfAHeaderBelowBlankLines(t *testing.T) {
	t.Parallel()
	for name, data := range map[string][]byte{
		"semicolon":   []byte("\r\nAccount Number;Customer Email;Customer First Name\r\n1;a@example.com;Ann, Jr.\r\n"),
		"utf-16 tabs": utf16(t, "\r\n\r\nAccount Number\tCustomer Email\tCustomer First Name\r\n1\ta@example.com\tAnn, Jr.\r\n", unicode.LittleEndian),
	} {
		rows, err := readAll(t, data)
		if err != nil || len(rows) != 1 || rows[0].Email != "a@example.com" || rows[0].FirstName != "Ann, Jr." {
			t.Errorf("%s: %+v %v", name, rows, err)
		}
	}
}

// A quotation mark left open takes the rows after it into one field; the
// row says so instead of the import completing without them.
func TestUnclosedQuoteFailsItsRow(t *testing.T) {
	t.Parallel()
	const header = "Account Number,Customer Email,Customer First Name,Customer Last Name\r\n"
	for name, tc := range map[string]struct {
		data  string
		field string
	}{
		"in the last column, to the end of the file": {header +
			"1,a@example.com,Bud,\"Smith\r\n2,b@example.com,Ann,Lee\r\n3,c@example.com,Cy,Dee\r\n", ColLastName},
		"in a name, closed by a later quote": {header +
			"1,a@example.com,\"Robert \"Bob,Smith\r\n2,b@example.com,Ann,Lee\r\n3,c@example.com,\"Cy\",Dee\r\n", ColFirstName},
		"in a column onboard does not read": {"Account Number,Customer Email,Notes\r\n" +
			"1,a@example.com,\"call first\r\n2,b@example.com,ok\r\n", ""},
		// The rows below are short (Excel leaves off empty trailing cells),
		// so they carry fewer delimiters than the header.
		"rows below without their last cells": {header +
			"1,a@example.com,\"Bob,Smith\r\n2,b@example.com\r\n3,c@example.com\r\n", ColFirstName},
	} {
		rows, err := readAll(t, []byte(tc.data))
		if err != nil || len(rows) == 0 {
			t.Fatalf("%s: %+v %v", name, rows, err)
		}
		if e := rows[0].Err; e == nil || e.Message != MsgUnclosedQuote || e.Field != tc.field {
			t.Errorf("%s: %+v", name, rows[0])
		}
	}
	// A line break in a value, quoted as it should be, is not one, however
	// many commas its lines hold.
	for name, data := range map[string]string{
		"a two-line address":     "Account Number,Customer Email,Address\r\n1,a@example.com,\"12 Main St,\r\nSpringfield\"\r\n2,b@example.com,x\r\n",
		"notes with commas":      "Account Number,Customer Email,Notes\r\n1,a@example.com,\"Attn: Accounts\r\n12 High St, Leeds, LS1 4AP\"\r\n2,b@example.com,x\r\n",
		"a name over two lines":  header + "1,a@example.com,\"Ivy\r\nMarie\",Lee\r\n2,b@example.com,Bo,Li\r\n",
		"an address of 5 fields": "Account Number,Customer Email,Street,City,Zip\r\n1,a@example.com,\"Unit 4,\r\n12 High St, Leeds, West Yorkshire\",Leeds,LS1\r\n2,b@example.com,x,y,z\r\n",
	} {
		rows, err := readAll(t, []byte(data))
		if err != nil || len(rows) != 2 || rows[0].Err != nil {
			t.Errorf("%s: %+v %v", name, rows, err)
		}
	}
}

// A file in an encoding that is neither UTF-8 nor Windows-1252, but has
// bytes Windows-1252 leaves undefined, fails instead of importing garbled
// names. In Shift-JIS such a byte leads the full-width space and the long
// vowel mark (山田　太郎, タロー); a name without one cannot be told.
func TestOtherLegacyEncodingsFailTheFile(t *testing.T) {
	t.Parallel()
	const text = "Account Number,Customer Email,Customer First Name\r\n1,a@example.com,山田　太郎\r\n"
	sjis, err := japanese.ShiftJIS.NewEncoder().Bytes([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	dos, err := charmap.CodePage850.NewEncoder().Bytes([]byte("Account Number,Customer Email,Customer First Name\r\n1,a@example.com,Müller\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Past the first 64 KiB, which decide the encoding.
	late := append([]byte("Account Number,Customer Email,Customer First Name\r\n"+strings.Repeat("1,a@example.com,Ann\r\n", 4000)), dos[len("Account Number,Customer Email,Customer First Name\r\n"):]...)
	for name, data := range map[string][]byte{"Shift-JIS": sjis, "MS-DOS (850)": dos, "MS-DOS after 64 KiB": late} {
		_, err := readAll(t, data)
		if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "CSV UTF-8") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestWindows1252AfterTheSniffedBytes: the encoding is guessed from the
// first 64 KiB; a Windows-1252 letter after them is still read as one, not
// passed on as bytes that are not text.
// A file whose rows end in CR alone and whose cells break lines with LF (how
// Excel for Mac writes a cell with a line break) reads row by row: the one
// LF must not make the whole file one header row.
func TestRowsEndedByCRWithLineBreaksInCells(t *testing.T) {
	t.Parallel()
	data := []byte("Account Number,Customer Email,Customer First Name,Customer Last Name\r" +
		"1,a@example.com,\"Ann\nMarie\",Lee\r" +
		"2,b@example.com,Bob,Day\r")
	rows, err := readAll(t, data)
	if err != nil || len(rows) != 2 || rows[0].FirstName != "Ann\nMarie" || rows[1] != (Row{Number: 3, AccountNumber: "2", Email: "b@example.com", FirstName: "Bob", LastName: "Day"}) {
		t.Fatalf("%+v %v", rows, err)
	}
}

// A CRLF whose CR ends one read and whose LF starts the next is still one
// line end, not a CR row end followed by a blank line (which would move
// every later row number).
func TestCRLFSplitAcrossReads(t *testing.T) {
	t.Parallel()
	text := "Account Number,Customer Email\r\n1,a@example.com\r\n2,b@example.com\r\n"
	r, err := OpenCSV(iotest.OneByteReader(strings.NewReader(text)))
	if err != nil {
		t.Fatal(err)
	}
	for want := 2; ; want++ {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			if want != 4 {
				t.Fatalf("%d rows, want 2", want-2)
			}
			return
		}
		if err != nil || row.Number != want {
			t.Fatalf("row %+v, want number %d: %v", row, want, err)
		}
	}
}

func TestWindows1252AfterTheSniffedBytes(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	b.WriteString("Account Number,Customer Email,Customer Last Name\n")
	for i := 0; b.Len() < 2*sniffSize; i++ {
		b.WriteString("1000,user@example.com,Lee\n")
	}
	b.WriteString("2000,jose@example.com,M\xfcller \x96 N\xfa\xf1ez\n")
	b.WriteString("2001,nul@example.com,Nu\x00ll\n")
	rows, err := readAll(t, b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if r := rows[len(rows)-2]; r.LastName != "Müller – Núñez" || r.AccountNumber != "2000" {
		t.Fatalf("row %+v", r)
	}
	if r := rows[len(rows)-1]; r.LastName != "Null" {
		t.Fatalf("row %+v", r)
	}
	// With a UTF-8 BOM the file says what it is: bytes that are not UTF-8
	// are replaced, not guessed at.
	rows, err = readAll(t, []byte("\xef\xbb\xbfAccount Number,Customer Email,Customer Last Name\n1,a@example.com,M\xfcller\n"))
	if err != nil || len(rows) != 1 || rows[0].LastName != "M\uFFFDller" {
		t.Fatalf("%+v %v", rows, err)
	}
}

func TestHeadersByNameInAnyOrder(t *testing.T) {
	t.Parallel()
	for _, header := range []string{
		"Email,Notes,Account #,First Name",
		"E-MAIL ADDRESS,notes,account_number,firstname",
		"customer_email,notes,AccountNumber,Given Name",
		" Customer Email , Notes ,Acct #,Customer First Name",
		"Customer Email*,Notes,Account Number (required),First Name (optional)",
		"\"Customer\nEmail\",Notes,\"Account\r\nNumber\",\"First\nName\"",
	} {
		rows, err := readAll(t, []byte(header+"\njane@example.com,ignored,100,Jane\n"))
		if err != nil || len(rows) != 1 || rows[0].AccountNumber != "100" || rows[0].Email != "jane@example.com" || rows[0].FirstName != "Jane" {
			t.Errorf("%q: %+v %v", header, rows, err)
		}
	}
}

func TestFileErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, data, want string }{
		{"missing email column", "Account Number,Name\n1,x\n", `missing required column "Customer Email"`},
		{"missing both", "Name,Phone\nx,1\n", `"Account Number" and "Customer Email"`},
		{"duplicate column", "Email,E-mail,Account\n", `both "Customer Email"`},
		{"empty", "  \n\n", "the file is empty"},
		{"binary", "PK\x00\x00garbage", "neither CSV"},
	} {
		_, err := readAll(t, []byte(tc.data))
		if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a file error containing %q", tc.name, err, tc.want)
		}
	}
	if rows, err := readAll(t, []byte("Account Number,Customer Email\n")); err != nil || len(rows) != 0 {
		t.Errorf("header only: %v %v, want zero rows", rows, err)
	}
}

func TestRowNumbersAsASpreadsheetShowsThem(t *testing.T) {
	t.Parallel()
	data := "Account Number,Customer Email,Customer First Name\n" +
		"1,a@example.com,\"Two\nLines\"\n" + // row 2, spans two lines of the file
		"\n" + // row 3, blank
		"2,b@example.com,B\n" + // row 4
		",,\n" + // row 5, blank cells
		"3,c@example.com\n" + // row 6, short: its last cell is empty
		"4,d@example.com,D,extra\n" + // row 7, ragged with a value past the header
		"5,e@example.com,E,\n" // row 8, an empty trailing field is fine
	rows, err := readAll(t, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		n      int
		ragged bool
	}{{2, false}, {4, false}, {6, false}, {7, true}, {8, false}}
	if len(rows) != len(want) {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	for i, w := range want {
		if rows[i].Number != w.n || (rows[i].Err != nil) != w.ragged {
			t.Errorf("row %d: %+v, want number %d ragged %v", i, rows[i], w.n, w.ragged)
		}
	}
	if rows[0].FirstName != "Two\nLines" {
		t.Errorf("embedded newline: %q", rows[0].FirstName)
	}
	// Rows of empty cells above the header (what a sheet with empty top
	// rows exports to) are skipped, and rows keep their place in the sheet.
	rows, err = readAll(t, []byte(",,\n\n , \nAccount Number,Customer Email\n1,a@example.com\n"))
	if err != nil || len(rows) != 1 || rows[0].Number != 5 {
		t.Errorf("header below empty rows: %+v %v", rows, err)
	}
}

// TestFailedRowsReadBackAsTheyWentOut: the failed rows onboard sends back
// to be fixed have formula-like cells quoted against CSV injection; uploaded
// again, they read as the values that were written.
func TestFailedRowsReadBackAsTheyWentOut(t *testing.T) {
	t.Parallel()
	rows, err := readAll(t, []byte("Account Number,Customer Email,Customer First Name,Customer Last Name\n'-100,jane@example.com,'@jane,'quoted'\n"))
	if err != nil || len(rows) != 1 {
		t.Fatalf("%+v %v", rows, err)
	}
	if r := rows[0]; r.AccountNumber != "-100" || r.FirstName != "@jane" || r.LastName != "'quoted'" {
		t.Fatalf("%+v", r)
	}
}

func TestValuesPastedFromTheWebAreTrimmed(t *testing.T) {
	t.Parallel()
	rows, err := readAll(t, []byte("Account Number,Customer Email\n\u00a0100\u200b,\u200bjane@example.com\u00a0\ufeff\n"))
	if err != nil || len(rows) != 1 || rows[0].AccountNumber != "100" || rows[0].Email != "jane@example.com" || Validate(rows[0]) != nil {
		t.Fatalf("%+v %v", rows, err)
	}
}

func TestALineWithoutEndFailsTheFileNotTheWorker(t *testing.T) {
	t.Parallel()
	data := "Account Number,Customer Email\n1," + strings.Repeat("x", MaxLineBytes+10)
	_, err := readAll(t, []byte(data))
	if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("got %v", err)
	}
}

// A quoted field may span lines, so the line limit does not bound it: its
// value is cut when read, and its row fails on its length, so the error log
// holds a thousand characters of it rather than megabytes.
func TestAHugeQuotedFieldIsCutAndFailsItsRow(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat(strings.Repeat("x", 999)+"\n", 4000) // 4 MB over 4,000 lines
	data := "Account Number,Customer Email,Customer First Name\n1,\"" + huge + "\",Jane\n2,b@example.com,\"" + huge + "\"\n"
	rows, err := readAll(t, []byte(data))
	if err != nil || len(rows) != 2 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	for _, r := range rows {
		for _, v := range r.Values() {
			if n := utf8.RuneCountInString(v); n > MaxValueRunes+1 {
				t.Errorf("row %d: a value of %d characters kept", r.Number, n)
			}
		}
	}
	if errs := Validate(rows[0]); len(errs) != 1 || errs[0].Message != MsgEmailInvalid || !strings.HasSuffix(rows[0].Email, "…") {
		t.Errorf("row 2: %v", errs)
	}
	if errs := Validate(rows[1]); len(errs) != 1 || errs[0].Field != ColFirstName || rows[1].Number != 3 {
		t.Errorf("row %d: %v", rows[1].Number, errs)
	}
}

func TestValidateMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		row  Row
		want []FieldError
	}{
		{Row{AccountNumber: "1", Email: "a@example.com"}, nil},
		{Row{AccountNumber: "1"}, []FieldError{{ColEmail, "Customer Email field must not be empty"}}},
		{Row{AccountNumber: "1", Email: "not an email"}, []FieldError{{ColEmail, "Customer Email must be valid"}}},
		{Row{Email: "a@example.com"}, []FieldError{{ColAccountNumber, "Account Number field must not be empty"}}},
		{Row{}, []FieldError{{ColAccountNumber, MsgAccountEmpty}, {ColEmail, MsgEmailEmpty}}},
	} {
		got := Validate(tc.row)
		if len(got) != len(tc.want) {
			t.Errorf("%+v: %v, want %v", tc.row, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%+v: %v, want %v", tc.row, got, tc.want)
			}
		}
	}
}

func TestTemplateReadsBack(t *testing.T) {
	t.Parallel()
	rows, err := readAll(t, TemplateCSV())
	if err != nil || len(rows) != 1 || len(Validate(rows[0])) != 0 {
		t.Fatalf("template: %+v %v", rows, err)
	}
}

// genCSV produces a CSV of n rows on the fly, without holding it.
type genCSV struct {
	n, i int
	buf  []byte
}

func (g *genCSV) Read(p []byte) (int, error) {
	for len(g.buf) < len(p) && g.i <= g.n {
		if g.i == 0 {
			g.buf = append(g.buf, "Account Number,Customer Email,Customer First Name,Customer Last Name\n"...)
		} else {
			g.buf = append(g.buf, []byte(strings.Repeat("9", 6)+","+"user"+itoa(g.i)+"@example.com,First,Last\n")...)
		}
		g.i++
	}
	if len(g.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

func itoa(i int) string {
	var b [20]byte
	p := len(b)
	for i > 0 || p == len(b) {
		p--
		b[p] = byte('0' + i%10)
		i /= 10
	}
	return string(b[p:])
}

// BenchmarkCSVReader reads a generated 100,000-row CSV; allocations per row
// stay constant whatever the size (the reader streams).
func BenchmarkCSVReader(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		r, err := OpenCSV(&genCSV{n: 100_000})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			if _, err := r.Next(); err != nil {
				break
			}
			n++
		}
		if n != 100_000 {
			b.Fatalf("%d rows", n)
		}
	}
}

func FuzzCSV(f *testing.F) {
	f.Add([]byte("Account Number,Customer Email\n1,a@example.com\n"))
	f.Add([]byte("Email;Account\n\"a\nb\";1\n\n;\n"))
	f.Add(append([]byte{0xFF, 0xFE}, []byte("A\x00,\x00")...))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := OpenCSV(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrFile) {
				t.Fatalf("open error is not a file error: %v", err)
			}
			return
		}
		last := 1
		for {
			row, err := r.Next()
			if err != nil {
				return
			}
			if row.Number <= last {
				t.Fatalf("row numbers not increasing: %d after %d", row.Number, last)
			}
			last = row.Number
			for _, v := range []string{row.AccountNumber, row.Email, row.FirstName, row.LastName} {
				if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
					t.Fatalf("row %d holds a value Postgres cannot store as text: %q", row.Number, v)
				}
			}
			_ = Validate(row)
		}
	})
}
