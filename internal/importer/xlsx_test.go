package importer

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/unicode"
)

func workbook(t testing.TB, build func(f *excelize.File)) []byte {
	t.Helper()
	f := excelize.NewFile()
	defer f.Close()
	build(f)
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readXLSX(t testing.TB, data []byte, o XLSXOptions) ([]Row, error) {
	t.Helper()
	r, err := OpenXLSX(bytes.NewReader(data), o)
	if err != nil {
		return nil, err
	}
	defer r.Close()
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

func TestSpreadsheetMadeWorkbook(t *testing.T) {
	t.Parallel()
	data := workbook(t, func(f *excelize.File) {
		// Shared strings (SetCellValue with text) and numeric cells, as a
		// spreadsheet program saves them.
		_ = f.SetSheetRow("Sheet1", "A1", &[]any{"Customer Email", "Account #", "First Name", "Notes"})
		_ = f.SetSheetRow("Sheet1", "A2", &[]any{"jane@example.com", 145722, "Jane", "x"})
		_ = f.SetSheetRow("Sheet1", "A3", &[]any{"bob@example.com", 145723.0, "Bob"})
		_ = f.SetSheetRow("Sheet1", "A5", &[]any{"big@example.com", 12345678901234, "Big"}) // row 4 left empty
		_ = f.SetCellStr("Sheet1", "B6", "00123")                                           // a text cell with leading zeros
		_ = f.SetCellStr("Sheet1", "A6", "zeros@example.com")
		style, _ := f.NewStyle(&excelize.Style{NumFmt: 11}) // 0.00E+00
		_ = f.SetCellStyle("Sheet1", "B5", "B5", style)
		// Numbers as other programs store them (openpyxl's 145724.0, an
		// exponent, binary noise), and text that only looks numeric.
		for i, v := range []struct{ number, text string }{
			{number: "145724.0"}, {number: "1.45725E+05"}, {number: "145726.00000000001"}, {number: "-1.5E+2"},
			{text: "4711.10"}, {text: "0012.5"}, {text: "12E4"}, {text: "100.2"},
		} {
			row := strconv.Itoa(7 + i)
			_ = f.SetCellStr("Sheet1", "A"+row, "n"+row+"@example.com")
			if v.number != "" {
				_ = f.SetCellDefault("Sheet1", "B"+row, v.number)
			} else {
				_ = f.SetCellStr("Sheet1", "B"+row, v.text)
			}
		}
		// Account numbers kept as numbers formatted to show leading zeros
		// read as shown; other formats do not change the value: thousands
		// separators, decimals, and a styled (bold) General cell, which
		// excelize would otherwise write as 1.23456789E+13.
		for i, c := range []struct {
			v    any
			code string
			font bool
		}{{123, "000000", false}, {4711, "00000000", false}, {145722, "#,##0", false}, {145723, "0.00", false}, {12345678901234, "", true}, {"00042", "000000", false}} {
			row := strconv.Itoa(15 + i)
			_ = f.SetCellStr("Sheet1", "A"+row, "f"+row+"@example.com")
			_ = f.SetCellValue("Sheet1", "B"+row, c.v)
			st := &excelize.Style{}
			if c.code != "" {
				st.CustomNumFmt = &c.code
			}
			if c.font {
				st.Font = &excelize.Font{Bold: true}
			}
			id, _ := f.NewStyle(st)
			_ = f.SetCellStyle("Sheet1", "B"+row, "B"+row, id)
		}
		// A number with more digits than a workbook number keeps (written
		// by a program; Excel itself keeps 15): the row's error, not a
		// rounded account.
		_ = f.SetCellStr("Sheet1", "A21", "long@example.com")
		_ = f.SetCellDefault("Sheet1", "B21", "1234567890123456")
		// A note right of the header's last column is under no column.
		_ = f.SetCellStr("Sheet1", "F15", "called on 3 May")
	})
	if fm, err := Detect(data); err != nil || fm != FormatXLSX {
		t.Fatalf("detect: %v %v", fm, err)
	}
	rows, err := readXLSX(t, data, XLSXOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Rows 3, 5 and 6 end before the last column: a worksheet does not
	// store empty cells at the end of a row, and those rows are whole.
	want := []Row{
		{Number: 2, AccountNumber: "145722", Email: "jane@example.com", FirstName: "Jane"},
		{Number: 3, AccountNumber: "145723", Email: "bob@example.com", FirstName: "Bob"},
		{Number: 5, AccountNumber: "12345678901234", Email: "big@example.com", FirstName: "Big"},
		{Number: 6, AccountNumber: "00123", Email: "zeros@example.com"},
		{Number: 7, AccountNumber: "145724", Email: "n7@example.com"},
		{Number: 8, AccountNumber: "145725", Email: "n8@example.com"},
		{Number: 9, AccountNumber: "145726", Email: "n9@example.com"},
		{Number: 10, AccountNumber: "-150", Email: "n10@example.com"},
		{Number: 11, AccountNumber: "4711.10", Email: "n11@example.com"},
		{Number: 12, AccountNumber: "0012.5", Email: "n12@example.com"},
		{Number: 13, AccountNumber: "12E4", Email: "n13@example.com"},
		{Number: 14, AccountNumber: "100.2", Email: "n14@example.com"},
		{Number: 15, AccountNumber: "000123", Email: "f15@example.com"},
		{Number: 16, AccountNumber: "00004711", Email: "f16@example.com"},
		{Number: 17, AccountNumber: "145722", Email: "f17@example.com"},
		{Number: 18, AccountNumber: "145723", Email: "f18@example.com"},
		{Number: 19, AccountNumber: "12345678901234", Email: "f19@example.com"},
		{Number: 20, AccountNumber: "00042", Email: "f20@example.com"},
		{Number: 21, AccountNumber: "1.23456789012346E+15", Email: "long@example.com", cellErrs: [4]string{MsgAccountRounded}},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	for i := range want {
		got, w := rows[i], want[i]
		if (got.Err == nil) != (w.Err == nil) || (got.Err != nil && *got.Err != *w.Err) {
			t.Errorf("row %d: error %v, want %v", i, got.Err, w.Err)
		}
		got.Err, w.Err = nil, nil
		if got != w {
			t.Errorf("row %d: %+v, want %+v", i, got, w)
		}
	}
}

func TestStreamWrittenWorkbookWithInlineStrings(t *testing.T) {
	t.Parallel()
	data := workbook(t, func(f *excelize.File) {
		sw, err := f.NewStreamWriter("Sheet1")
		if err != nil {
			t.Fatal(err)
		}
		_ = sw.SetRow("A1", []any{"Account Number", "Customer Email"})
		for i := 2; i <= 1001; i++ {
			cell, _ := excelize.CoordinatesToCellName(1, i)
			_ = sw.SetRow(cell, []any{100000 + i, "user" + itoa(i) + "@example.com"})
		}
		if err := sw.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	rows, err := readXLSX(t, data, XLSXOptions{})
	if err != nil || len(rows) != 1000 || rows[999].Number != 1001 || rows[999].AccountNumber != "101001" {
		t.Fatalf("%d rows, last %+v, %v", len(rows), rows[len(rows)-1], err)
	}
}

func TestNamedSheet(t *testing.T) {
	t.Parallel()
	data := workbook(t, func(f *excelize.File) {
		_, _ = f.NewSheet("Customers")
		_ = f.SetSheetRow("Customers", "A1", &[]any{"Account Number", "Customer Email"})
		_ = f.SetSheetRow("Customers", "A2", &[]any{"1", "a@example.com"})
	})
	if rows, err := readXLSX(t, data, XLSXOptions{Sheet: "Customers"}); err != nil || len(rows) != 1 {
		t.Fatalf("%+v %v", rows, err)
	}
	if _, err := readXLSX(t, data, XLSXOptions{Sheet: "Nope"}); !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), `no sheet named "Nope"`) {
		t.Fatalf("missing sheet: %v", err)
	}
	// With no sheet named, the empty "Sheet1" before the data is passed over.
	if rows, err := readXLSX(t, data, XLSXOptions{}); err != nil || len(rows) != 1 || rows[0].Email != "a@example.com" {
		t.Fatalf("empty first sheet: %+v %v", rows, err)
	}
	if _, err := readXLSX(t, data, XLSXOptions{Sheet: "Sheet1"}); !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), `sheet "Sheet1" is empty`) {
		t.Fatalf("empty named sheet: %v", err)
	}
}

// Hidden sheets (drop-down lists, lookups) are not the one a user means:
// without a sheet named, the first visible sheet with anything in it is read.
// When that one has no header, the message names it and the others.
func TestFirstVisibleSheet(t *testing.T) {
	t.Parallel()
	data := workbook(t, func(f *excelize.File) {
		_ = f.SetSheetRow("Sheet1", "A1", &[]any{"Countries"})
		_ = f.SetSheetRow("Sheet1", "A2", &[]any{"DE"})
		_, _ = f.NewSheet("Customers")
		_ = f.SetSheetRow("Customers", "A1", &[]any{"Account Number", "Customer Email"})
		_ = f.SetSheetRow("Customers", "A2", &[]any{"1", "a@example.com"})
		idx, _ := f.GetSheetIndex("Customers")
		f.SetActiveSheet(idx) // the active sheet cannot be hidden
		if err := f.SetSheetVisible("Sheet1", false); err != nil {
			t.Fatal(err)
		}
	})
	if rows, err := readXLSX(t, data, XLSXOptions{}); err != nil || len(rows) != 1 || rows[0].Email != "a@example.com" {
		t.Fatalf("hidden first sheet: %+v %v", rows, err)
	}
	data = workbook(t, func(f *excelize.File) {
		_ = f.SetSheetRow("Sheet1", "A1", &[]any{"Countries"})
		_, _ = f.NewSheet("Customers")
	})
	_, err := readXLSX(t, data, XLSXOptions{})
	if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), `missing required column`) || !strings.Contains(err.Error(), `read sheet "Sheet1"; the workbook also has "Customers"`) {
		t.Fatalf("no header: %v", err)
	}
}

// zipBomb builds a valid workbook whose sheet decompresses to far more than
// it weighs.
func zipBomb(t testing.TB, sheetBytes int) []byte {
	t.Helper()
	base := workbook(t, func(f *excelize.File) {
		_ = f.SetSheetRow("Sheet1", "A1", &[]any{"Account Number", "Customer Email"})
	})
	return withPart(t, base, "xl/worksheets/sheet1.xml", func(w io.Writer) {
		_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>`)
		repeat(w, " ", sheetBytes)
		_, _ = io.WriteString(w, `</sheetData></worksheet>`)
	})
}

func TestZipBombFailsTheImportNotTheWorker(t *testing.T) {
	t.Parallel()
	bomb := zipBomb(t, 64<<20)
	if len(bomb) > 1<<20 {
		t.Fatalf("the bomb weighs %d bytes; it should be small", len(bomb))
	}
	_, err := readXLSX(t, bomb, XLSXOptions{UnzipSizeLimit: 8 << 20, UnzipXMLSizeLimit: 4 << 20})
	if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "decompressed") {
		t.Fatalf("got %v", err)
	}
}

// withPart returns the workbook with the part name written by write,
// replacing the part of that name or added.
func withPart(t testing.TB, base []byte, name string, write func(w io.Writer)) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(base), int64(len(base)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, f := range zr.File {
		if f.Name == name {
			continue
		}
		w, _ := zw.Create(f.Name)
		rc, _ := f.Open()
		_, _ = io.Copy(w, rc)
		rc.Close()
	}
	w, _ := zw.Create(name)
	write(w)
	_ = zw.Close()
	return out.Bytes()
}

// repeat writes s n times.
func repeat(w io.Writer, s string, n int) {
	chunk := strings.Repeat(s, 1<<12)
	for ; n >= 1<<12; n -= 1 << 12 {
		_, _ = io.WriteString(w, chunk)
	}
	_, _ = io.WriteString(w, strings.Repeat(s, n))
}

// A small upload whose styles, shared strings or other parts excelize
// would hold in memory at many times their size fails its import before
// excelize opens it (50 MB of <xf/> took the worker to 4.7 GB).
func TestWorkbookPartsThatWouldFillMemoryFailTheImport(t *testing.T) {
	t.Parallel()
	base := workbook(t, func(f *excelize.File) {
		_ = f.SetSheetRow("Sheet1", "A1", &[]any{"Account Number", "Customer Email"})
		_ = f.SetSheetRow("Sheet1", "A2", &[]any{"100", "a@example.com"})
	})
	for _, tc := range []struct {
		name, part, want string
		write            func(w io.Writer)
	}{
		{"styles", "xl/styles.xml", "XML elements", func(w io.Writer) {
			_, _ = io.WriteString(w, `<?xml version="1.0"?><styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><cellXfs>`)
			repeat(w, "<xf/>", MaxParsedElements)
			_, _ = io.WriteString(w, `</cellXfs></styleSheet>`)
		}},
		{"shared strings", "xl/sharedStrings.xml", "shared strings", func(w io.Writer) {
			_, _ = io.WriteString(w, `<?xml version="1.0"?><x:sst xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main">`)
			repeat(w, "<x:si/>", MaxSharedStrings+1)
			_, _ = io.WriteString(w, `</x:sst>`)
		}},
		{"shared strings excelize would index itself", "xl/sharedStrings.xml", "cannot stream", func(w io.Writer) {
			// A table in another encoding than UTF-8 is not written into
			// the cells (inlineSharedStrings): excelize indexes it in memory.
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="ISO-8859-1"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">`)
			repeat(w, "<si/>", MaxIndexedSharedStrings+1)
			_, _ = io.WriteString(w, `</sst>`)
		}},
		{"embedded content", "xl/media/image1.png", "besides its sheets", func(w io.Writer) {
			repeat(w, "\x00", MaxHeldBytes+1)
		}},
	} {
		data := withPart(t, base, tc.part, tc.write)
		if len(data) > 2<<20 {
			t.Fatalf("%s: the upload weighs %d bytes; it should be small", tc.name, len(data))
		}
		_, err := readXLSX(t, data, XLSXOptions{})
		if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a file error saying %q", tc.name, err, tc.want)
		}
	}
}

// A workbook saved the way Excel saves it, text in a shared strings table
// larger than UnzipXMLSizeLimit (so excelize streams it from a temporary
// file), reads row for row.
func TestALargeSharedStringsTableReads(t *testing.T) {
	t.Parallel()
	const n = 40_000
	data := workbook(t, func(f *excelize.File) {
		_ = f.SetSheetRow("Sheet1", "A1", &[]any{"Account Number", "Customer Email"})
		for i := 2; i <= n+1; i++ {
			_ = f.SetCellStr("Sheet1", fmt.Sprintf("A%d", i), fmt.Sprintf("A-%06d", i))
			_ = f.SetCellStr("Sheet1", fmt.Sprintf("B%d", i), fmt.Sprintf("user%06d@example.com", i))
		}
	})
	zr, _ := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	for _, f := range zr.File {
		if f.Name == "xl/sharedStrings.xml" && f.UncompressedSize64 <= DefaultUnzipXMLSizeLimit {
			t.Fatalf("shared strings of %d bytes: the test needs more than %d", f.UncompressedSize64, DefaultUnzipXMLSizeLimit)
		}
	}
	rows, err := readXLSX(t, data, XLSXOptions{})
	if err != nil || len(rows) != n {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	if r := rows[n-1]; r.Number != n+1 || r.AccountNumber != fmt.Sprintf("A-%06d", n+1) || r.Email != fmt.Sprintf("user%06d@example.com", n+1) {
		t.Fatalf("last row %+v", r)
	}
}

// A shared string whose prefix is longer than countTags looks ahead still
// counts toward the limit.
func TestCountTagsCountsLongNames(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("p", 70)
	data := withPart(t, workbook(t, func(*excelize.File) {}), "xl/sharedStrings.xml", func(w io.Writer) {
		_, _ = io.WriteString(w, `<sst xmlns:`+long+`="`+"http://schemas.openxmlformats.org/spreadsheetml/2006/main"+`">`)
		repeat(w, "<"+long+":si/>", 10)
		_, _ = io.WriteString(w, `</sst>`)
	})
	zr, _ := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	for _, f := range zr.File {
		if f.Name != "xl/sharedStrings.xml" {
			continue
		}
		n, err := countTags(f, func(name []byte) bool { return bytes.Equal(localName(name), []byte("si")) }, 100)
		if err != nil || n != 10 {
			t.Fatalf("counted %d, %v; want 10", n, err)
		}
	}
}

func TestBrokenWorkbooks(t *testing.T) {
	t.Parallel()
	if _, err := Detect([]byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1}); !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), ".xls") {
		t.Fatalf("legacy xls: %v", err)
	}
	var ods bytes.Buffer
	zw := zip.NewWriter(&ods)
	w, _ := zw.Create("mimetype")
	_, _ = io.WriteString(w, "application/vnd.oasis.opendocument.spreadsheet")
	w, _ = zw.Create("content.xml")
	_, _ = io.WriteString(w, "<office:document-content/>")
	_ = zw.Close()
	if _, err := readXLSX(t, ods.Bytes(), XLSXOptions{}); !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), ".ods") {
		t.Fatalf("ods: %v", err)
	}
	good := workbook(t, func(f *excelize.File) { _ = f.SetCellStr("Sheet1", "A1", "x") })
	for name, data := range map[string][]byte{
		"truncated": good[:len(good)/2],
		"not a zip": append([]byte("PK\x03\x04"), bytes.Repeat([]byte{0xAB}, 100)...),
	} {
		if _, err := readXLSX(t, data, XLSXOptions{}); !errors.Is(err, ErrFile) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func FuzzXLSX(f *testing.F) {
	f.Add(workbook(f, func(x *excelize.File) {
		_ = x.SetSheetRow("Sheet1", "A1", &[]any{"Account Number", "Customer Email"})
		_ = x.SetSheetRow("Sheet1", "A2", &[]any{1, "a@example.com"})
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := readXLSX(t, data, XLSXOptions{UnzipSizeLimit: 4 << 20, UnzipXMLSizeLimit: 1 << 20, TempDir: t.TempDir()})
		if err != nil && !errors.Is(err, ErrFile) {
			t.Fatalf("not a file error: %v", err)
		}
		for _, r := range rows {
			_ = Validate(r)
		}
		// What excelize reads by itself, the rewrite of the shared strings
		// reads the same, or it fails on what excelize passes over in
		// silence: broken XML (Rows() stops there), a part whose data is
		// damaged (excelize reads what inflates and ignores the error), or
		// text that inlined passes the size limit.
		kept, keptErr := readXLSX(t, data, XLSXOptions{UnzipSizeLimit: 4 << 20, UnzipXMLSizeLimit: 1 << 20, TempDir: t.TempDir(), keepSharedStrings: true})
		switch {
		case keptErr != nil:
		case err == nil && !reflect.DeepEqual(rows, kept):
			t.Fatalf("rewritten %+v\nexcelize %+v", rows, kept)
		case err != nil && !containsAny(err.Error(), "XML", "unexpected EOF", "text cells", "zip: checksum error", "flate: corrupt input"):
			t.Fatalf("rewritten: %v; excelize read %+v", err, kept)
		}
	})
}

// The format an upload is labelled with (Sniff) and what reading it says
// agree: a file that is neither CSV nor XLSX is labelled so and fails its
// import naming what it is.
func TestSniffLabelsWhatOpenReads(t *testing.T) {
	t.Parallel()
	zipOf := func(name, content string) []byte {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		w, _ := zw.Create(name)
		_, _ = io.WriteString(w, content)
		_ = zw.Close()
		return b.Bytes()
	}
	const csvText = "Account Number,Customer Email\r\n1,a@example.com\r\n"
	for _, tc := range []struct {
		name   string
		data   []byte
		format Format
		err    string // in Open's error; "" when it reads
	}{
		{"CSV", []byte(csvText), FormatCSV, ""},
		{"CSV in UTF-16", utf16(t, csvText, unicode.LittleEndian), FormatCSV, ""},
		{"XLSX", workbook(t, func(f *excelize.File) {
			_ = f.SetSheetRow("Sheet1", "A1", &[]any{"Account Number", "Customer Email"})
			_ = f.SetSheetRow("Sheet1", "A2", &[]any{1, "a@example.com"})
		}), FormatXLSX, ""},
		{"legacy xls", []byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}, "", ".xls"},
		{"OpenDocument", zipOf("mimetype", "application/vnd.oasis.opendocument.spreadsheet"), "", ".ods"},
		{"a zipped CSV", zipOf("customers.csv", csvText), "", "zip archive"},
		{"a Word document", zipOf("[Content_Types].xml", `<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>`), "", "another Office document"},
		{"a PDF", []byte("%PDF-1.4\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"), "", "neither CSV"},
		{"a PNG", []byte("\x89PNG\r\n\x1A\n\x00\x00\x00\rIHDR"), "", "neither CSV"},
		{"a gzip", []byte("\x1F\x8B\x08\x00\x00\x00\x00\x00"), "", "neither CSV"},
		{"an HTML table saved as .xls", []byte("\xEF\xBB\xBF<html><body><table><tr><td>Account Number</td></tr></table></body></html>"), "", "web page or XML"},
		{"Excel 2003 XML", []byte("<?xml version=\"1.0\"?>\r\n<Workbook xmlns=\"urn:schemas-microsoft-com:office:spreadsheet\">"), "", "web page or XML"},
	} {
		if got := Sniff(bytes.NewReader(tc.data), int64(len(tc.data))); got != tc.format {
			t.Errorf("%s: labelled %q, want %q", tc.name, got, tc.format)
		}
		r, _, err := Open(bytes.NewReader(tc.data), XLSXOptions{TempDir: t.TempDir()})
		if r != nil {
			r.Close()
		}
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (!errors.Is(err, ErrFile) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v, want a file error with %q", tc.name, err, tc.err)
		}
	}
}
