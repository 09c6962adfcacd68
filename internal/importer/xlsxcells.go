package importer

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strconv"

	"github.com/xuri/excelize/v2"
	"github.com/xuri/nfp"
)

// excelize's Rows() gives each cell's value as a string and nothing else,
// so a number cell and a text cell holding the same digits read the same,
// and so do an error value (#N/A) and the text "#N/A", and a date (with
// date formats switched off, see showOnlyZeroPadding) and its serial
// number. What a cell is, the sheet's XML says: its t attribute (none or
// "n" a number, "e" an error value, "d" a date, "s", "str" and "inlineStr"
// text, "b" a boolean) and its s attribute, the style whose number format
// makes a number a date.
//
// cellTypes reads those beside excelize, from the same part of the upload,
// a row at a time: its next and columns are excelize's Rows.Next and
// Rows.Columns (excelize 2.11) done over the scanner's tokens, so that a
// row and a column name the same cell for both. The sheet is read twice,
// and still streamed. Where the two could disagree (XML only a crafted file
// holds), the reader checks each cell it acts on against excelize's value
// of it (typedCell.agrees), and a cell that does not agree is taken as
// unknown, as are all the cells of a sheet cellTypes cannot read (a part in
// UTF-16, a document type declaration): those are judged by their value
// alone, as before (see XLSXReader.Next).
type cellTypes struct {
	rc        io.ReadCloser
	s         *xmlScanner
	dates     []bool // by style index: a date or time number format
	curRow    int    // excelize's rows.curRow
	seekRow   int    // excelize's rows.seekRow
	pending   []byte // rows.token: a <row> start read by next, not yet by columns
	cell      sheetCell
	cells     []typedCell
	failed    bool // the rest of the sheet is unknown
	pendingOK bool
}

// cellKind is what a cell holds, when it matters to the row rules.
type cellKind int

const (
	// kindUnknown: two cells of one column, of which excelize shows one
	// (which, is not worth working out): neither is known.
	kindUnknown cellKind = iota
	kindText
	kindNumber
	kindDate  // a number with a date or time format, or a t="d" cell
	kindError // a formula's error value: t="e"
	// kindUncalculated: a formula with no value saved (a workbook a
	// program wrote without calculating it); excelize reads it empty.
	kindUncalculated
)

// typedCell is a cell with a value: its column (1 for A), what it is,
// and its value as the XML holds it (decoded).
type typedCell struct {
	col     int
	kind    cellKind
	value   string
	isoDate bool // a t="d" cell, whose value is an ISO 8601 date
}

// openCellTypes starts reading the types of a sheet's cells; nil when they
// cannot be known.
func openCellTypes(part *zip.File, dates []bool) *cellTypes {
	if part == nil {
		return nil
	}
	if utf8, err := isUTF8Part(part); err != nil || !utf8 {
		return nil
	}
	rc, err := part.Open()
	if err != nil {
		return nil
	}
	return &cellTypes{rc: rc, s: newXMLScanner(rc, maxTagBytes), dates: dates}
}

func (t *cellTypes) close() {
	if t != nil {
		t.rc.Close()
	}
}

// row moves to the next row as excelize's Next and Columns do, and returns
// its cells with a value; known is false when they cannot be told.
func (t *cellTypes) row() (cells []typedCell, known bool) {
	if t == nil || t.failed {
		return nil, false
	}
	if !t.next() {
		t.failed = true
		return nil, false
	}
	cells = t.columns()
	return cells, !t.failed
}

func (t *cellTypes) fail() bool {
	t.failed = true
	return false
}

// next is Rows.Next.
func (t *cellTypes) next() bool {
	t.seekRow++
	if t.curRow >= t.seekRow {
		return true
	}
	for {
		tok, raw, err := t.s.next()
		if err != nil {
			return t.fail()
		}
		switch tok {
		case tokStart, tokEmpty:
			switch string(localName(tagName(raw))) {
			case "row":
				t.curRow++
				n, _, ok := rowNumber(raw)
				if !ok || n > excelize.TotalRows {
					return t.fail()
				}
				if n != 0 {
					t.curRow = n
				}
				t.pending = append(t.pending[:0], raw...)
				t.pendingOK = true
				return true
			case "sheetData":
				if tok == tokEmpty {
					return t.fail() // excelize stops here: no rows
				}
			}
		case tokEnd:
			if string(localName(tagName(raw))) == "sheetData" {
				return t.fail()
			}
		}
	}
}

// columns is Rows.Columns, keeping the cells with a value.
func (t *cellTypes) columns() []typedCell {
	t.cells = t.cells[:0]
	if t.curRow > t.seekRow {
		return nil
	}
	col := 0
	for {
		var tok xmlToken
		var raw []byte
		fromNext := t.pendingOK
		if fromNext {
			tok, raw = tokStart, t.pending
		} else {
			var err error
			if tok, raw, err = t.s.next(); err != nil {
				t.fail()
				return t.cells
			}
		}
		t.pendingOK = false
		switch tok {
		case tokStart, tokEmpty:
			switch string(localName(tagName(raw))) {
			case "row":
				n, err, ok := rowNumber(raw)
				switch {
				case !ok || n > excelize.TotalRows:
					t.fail()
					return t.cells
				case n != 0:
					t.curRow = n
				case !fromNext:
					t.curRow++
				}
				if t.curRow > t.seekRow {
					return t.cells
				}
				if err != nil {
					t.fail() // excelize fails the row
					return t.cells
				}
			case "c":
				if !t.readCell(tok, raw, &col) {
					return t.cells
				}
			case "sheetData":
				if tok == tokEmpty {
					return t.cells
				}
			}
		case tokEnd:
			if string(localName(tagName(raw))) == "sheetData" {
				return t.cells
			}
		}
	}
}

// readCell reads a cell as excelize's rowXMLHandler and cellXMLHandler do:
// its column is the one after the previous cell's unless its r names one.
func (t *cellTypes) readCell(tok xmlToken, raw []byte, col *int) bool {
	*col++
	var ref, typ string
	style := 0
	ok := true
	eachAttr(raw, func(name []byte, s, e int) bool {
		v := raw[s:e]
		if bytes.IndexByte(v, '&') >= 0 {
			var decoded string
			if xml.Unmarshal([]byte("<v>"+string(v)+"</v>"), &decoded) != nil {
				ok = false
				return false
			}
			v = []byte(decoded)
		}
		switch string(localName(name)) {
		case "r":
			ref = string(v)
		case "t":
			typ = string(v)
		case "s":
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				// excelize stops reading the cell here, and reads its
				// content as if it were the row's.
				ok = false
				return false
			}
			style = int(n)
		}
		return true
	})
	if !ok {
		return t.fail()
	}
	t.cell.start(raw, -1, -1)
	t.cell.noBody = true
	if tok == tokStart {
		for t.cell.open {
			tok, raw, err := t.s.next()
			if err != nil {
				return t.fail()
			}
			if err := t.cell.take(tok, raw); err != nil {
				return t.fail()
			}
		}
	}
	if ref != "" {
		c, _, err := excelize.CellNameToCoordinates(ref)
		if err != nil {
			return t.fail() // excelize fails the row
		}
		*col = c
	}
	value, hasValue := t.cell.text()
	var kind cellKind
	switch {
	case !t.cell.hasV && t.cell.hasF:
		// No <v> at all: never calculated. An empty <v/> is a formula
		// whose result is "" (=IF(X2="","",X2)), saved as such.
		kind = kindUncalculated
	case !hasValue || value == "":
		return true
	case typ == "" || typ == "n":
		kind = kindNumber
		if style >= 0 && style < len(t.dates) && t.dates[style] {
			kind = kindDate
		}
	case typ == "d":
		kind = kindDate
	case typ == "e":
		kind = kindError
	default:
		kind = kindText // text, a boolean, or a type excelize reads as text
	}
	for i, c := range t.cells {
		if c.col == *col {
			t.cells[i].kind = kindUnknown
			return true
		}
	}
	t.cells = append(t.cells, typedCell{col: *col, kind: kind, value: value, isoDate: typ == "d"})
	return true
}

// rowNumber is a <row>'s r as excelize reads it (attrValToInt): the last
// attribute of that local name, 0 when there is none; err when one is not a
// number. ok is false for a value cellTypes does not decode.
func rowNumber(tag []byte) (n int, err error, ok bool) {
	ok = true
	eachAttr(tag, func(name []byte, s, e int) bool {
		if string(localName(name)) != "r" {
			return true
		}
		if bytes.IndexByte(tag[s:e], '&') >= 0 {
			ok = false
			return false
		}
		n, err = strconv.Atoi(string(tag[s:e]))
		return err == nil
	})
	return n, err, ok
}

// agrees tells whether excelize's value of the cell (v) is the value read
// here, so that both name the same cell: a number as excelize shows it
// (exact, padded with zeros, or rounded to the 15 digits of a General
// cell), an error value as it is.
func (c typedCell) agrees(v string) bool {
	switch {
	case c.kind == kindUncalculated:
		return v == ""
	case c.kind == kindError:
		return v == c.value
	case c.isoDate:
		_, err := strconv.ParseFloat(v, 64)
		return err == nil
	}
	want, err1 := strconv.ParseFloat(c.value, 64)
	got, err2 := strconv.ParseFloat(v, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	rounded, _ := strconv.ParseFloat(strconv.FormatFloat(want, 'G', 15, 64), 64)
	return got == want || got == rounded
}

// number is the cell's value as a number.
func (c typedCell) number() float64 {
	n, _ := strconv.ParseFloat(c.value, 64)
	return n
}

// maxExactAccount is the first number of 16 digits: Excel keeps 15
// significant digits, so a longer account number typed into a number cell
// lost its last digits (1234567890123456 is stored as 1234567890123450),
// and no number cell of 16 digits or more can be trusted to be the account.
const maxExactAccount = 1e15

// roundedAccount tells a number cell whose digits cannot all be the
// account's.
func (c typedCell) roundedAccount() bool {
	return c.kind == kindNumber && math.Abs(c.number()) >= maxExactAccount
}

// dateStyles tells, for each cell style of the workbook, whether its number
// format shows a number as a date or a time: a built-in date format, or a
// format whose first section has date or time codes (d, m, y, h, s, [h]).
// It must run before showOnlyZeroPadding switches the formats off.
func dateStyles(f *excelize.File) []bool {
	if f.Styles == nil || f.Styles.CellXfs == nil {
		return nil
	}
	custom := map[int]string{}
	if f.Styles.NumFmts != nil {
		for _, nf := range f.Styles.NumFmts.NumFmt {
			if nf != nil {
				custom[nf.NumFmtID] = nf.FormatCode
			}
		}
	}
	isDate := map[int]bool{}
	dates := make([]bool, len(f.Styles.CellXfs.Xf))
	for i, xf := range f.Styles.CellXfs.Xf {
		if xf.NumFmtID == nil {
			continue
		}
		id := *xf.NumFmtID
		d, seen := isDate[id]
		if !seen {
			if code, ok := custom[id]; ok {
				d = dateFormatCode(code)
			} else {
				d = builtInDateFormat(id)
			}
			isDate[id] = d
		}
		dates[i] = d
	}
	return dates
}

// builtInDateFormat tells the built-in number formats that show dates and
// times: 14–22 and 45–47 in every locale, 27–36 and 50–58 (East Asian
// dates) and 71–81 (Thai) where Excel defines them.
func builtInDateFormat(id int) bool {
	return (id >= 14 && id <= 22) || (id >= 27 && id <= 36) || (id >= 45 && id <= 47) ||
		(id >= 50 && id <= 58) || (id >= 71 && id <= 81)
}

// dateFormatCode tells a format code that shows a positive number as a
// date or a time, parsed as excelize parses it.
func dateFormatCode(code string) bool {
	p := nfp.NumberFormatParser()
	for _, section := range p.Parse(code) {
		if section.Type != nfp.TokenSectionPositive {
			continue
		}
		for _, item := range section.Items {
			if item.TType == nfp.TokenTypeDateTimes || item.TType == nfp.TokenTypeElapsedDateTimes {
				return true
			}
		}
		return false
	}
	return false
}

// shownDate is how a date cell reads in the error log: the date (and time)
// Excel shows, not its serial number.
func shownDate(serial float64, date1904 bool) string {
	t, err := excelize.ExcelDateToTime(serial, date1904)
	if err != nil {
		return strconv.FormatFloat(serial, 'f', -1, 64)
	}
	switch {
	case serial >= 0 && serial < 1:
		return t.Format("15:04:05")
	case t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0:
		return t.Format("2006-01-02")
	}
	return t.Format("2006-01-02 15:04:05")
}

// errorValues are the error values a formula can leave in a cell. They
// tell an error cell only where the cell's type cannot be read (see
// cellTypes); elsewhere the type does, and a text cell holding "#N/A" is
// text.
var errorValues = map[string]bool{
	"#N/A": true, "#REF!": true, "#VALUE!": true, "#DIV/0!": true, "#NAME?": true,
	"#NULL!": true, "#NUM!": true, "#GETTING_DATA": true, "#SPILL!": true, "#CALC!": true,
	"#FIELD!": true, "#BLOCKED!": true, "#CONNECT!": true, "#BUSY!": true, "#UNKNOWN!": true,
}
