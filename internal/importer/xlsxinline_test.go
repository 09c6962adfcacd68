package importer

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"
)

const mainNS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"

// handMade returns a workbook whose first sheet and shared strings table are
// the XML given, the rest made by excelize.
func handMade(t testing.TB, sheet, sst string) []byte {
	t.Helper()
	base := workbook(t, func(f *excelize.File) {
		_ = f.SetCellStr("Sheet1", "A1", "Account Number")
	})
	data := withPart(t, base, "xl/worksheets/sheet1.xml", func(w io.Writer) { _, _ = io.WriteString(w, sheet) })
	return withPart(t, data, "xl/sharedStrings.xml", func(w io.Writer) { _, _ = io.WriteString(w, sst) })
}

// readBothWays reads a workbook with its shared strings inlined and as
// excelize reads them itself.
func readBothWays(t testing.TB, data []byte, o XLSXOptions) (inlined, kept []Row, inlinedErr, keptErr error) {
	t.Helper()
	inlined, inlinedErr = readXLSX(t, data, o)
	o.keepSharedStrings = true
	kept, keptErr = readXLSX(t, data, o)
	return inlined, kept, inlinedErr, keptErr
}

// Cells written every way a workbook may write them read the same with the
// table inlined as through excelize's own index of it.
func TestInlinedSharedStringsReadAsExcelizeReadsThem(t *testing.T) {
	t.Parallel()
	const header = `<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c r="C1" t="s"><v>2</v></c></row>`
	sst := `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>` + "\n" +
		`<sst xmlns="` + mainNS + `" count="9" uniqueCount="9">` +
		`<si><t>Account Number</t></si><si><t>Customer Email</t></si><si><t>Customer First Name</t></si>` +
		`<si><t>100234</t></si>` + // 3
		`<si><t>jane@example.com</t></si>` + // 4
		`<si><r><rPr><b/></rPr><t>Mü</t></r><r><t xml:space="preserve">ller &amp; Co</t></r><rPh sb="0" eb="1"><t>ミュ</t></rPh></si>` + // 5: rich text, phonetic run
		`<si/>` + // 6: empty
		`<si><t><![CDATA[<b>&]]></t></si>` + // 7
		`<si><t xml:space="preserve">  00123 </t></si>` + // 8
		`</sst>`
	for _, tc := range []struct {
		name, rows string
		want       []Row
	}{
		{"plain", `<row r="2"><c r="A2" t="s"><v>3</v></c><c r="B2" t="s"><v>4</v></c><c r="C2" t="s"><v>5</v></c></row>`,
			[]Row{{Number: 2, AccountNumber: "100234", Email: "jane@example.com", FirstName: "Müller & Co"}}},
		{"attributes in another order, quotes and spaces", `<row r="2"><c t = 's' r="A2" s="0"><v> 8 </v></c><c t="s"   r="B2"><v>4</v></c></row>`,
			[]Row{{Number: 2, AccountNumber: "00123", Email: "jane@example.com"}}},
		{"index written with a character reference, CDATA, a comment", `<row r="2"><c r="A2" t="s"><v>&#51;</v></c><c r="B2" t="s"><v><![CDATA[4]]><!-- x --></v></c><c r="C2" t="s"><v>7</v></c></row>`,
			[]Row{{Number: 2, AccountNumber: "100234", Email: "jane@example.com", FirstName: "<b>&"}}},
		{"a formula and other cell types beside", `<row r="2"><c r="A2"><v>145722</v></c><c r="B2" t="s"><f>LOWER("x")</f><v>4</v></c><c r="C2" t="inlineStr"><is><t>Ann</t></is></c></row>`,
			[]Row{{Number: 2, AccountNumber: "145722", Email: "jane@example.com", FirstName: "Ann"}}},
		{"empty values", `<row r="2"><c r="A2" t="s"><v>3</v></c><c r="B2" t="s"><v>4</v></c><c r="C2" t="s"/></row><row r="3"><c r="A3" t="s"><v>3</v></c><c r="B3" t="s"><v>6</v></c><c r="C3" t="s"><v></v></c></row>`,
			[]Row{{Number: 2, AccountNumber: "100234", Email: "jane@example.com"}, {Number: 3, AccountNumber: "100234"}}},
		{"not a number reads the first string, as Excel's readers do", `<row r="2"><c r="A2" t="s"><v>x</v></c><c r="B2" t="s"><v>4</v></c></row>`,
			[]Row{{Number: 2, AccountNumber: "Account Number", Email: "jane@example.com"}}},
	} {
		sheet := `<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="` + mainNS + `"><sheetData>` + header + tc.rows + `</sheetData></worksheet>`
		inlined, kept, err1, err2 := readBothWays(t, handMade(t, sheet, sst), XLSXOptions{})
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v / %v", tc.name, err1, err2)
		}
		for i := range tc.want {
			tc.want[i].Err = inlined[min(i, len(inlined)-1)].Err
		}
		if !reflect.DeepEqual(inlined, kept) || !reflect.DeepEqual(inlined, tc.want) {
			t.Errorf("%s:\ninlined %+v\nexcelize %+v\nwant     %+v", tc.name, inlined, kept, tc.want)
		}
	}
}

// Well-formed oddities read as excelize reads them: comments that look
// closed early, values nested where excelize still finds them, a prefixed
// or encoded type, strings nested deeper than the table's children.
func TestInlinedSharedStringsOddButWellFormed(t *testing.T) {
	t.Parallel()
	const strs = `<si><t>Account Number</t></si><si><t>Customer Email</t></si><si><t>7</t></si><si><t>a--b@example.com</t></si>`
	sstOf := func(inner string) string { return `<sst xmlns="` + mainNS + `">` + inner + `</sst>` }
	sheetOf := func(rows string) string {
		return `<worksheet xmlns="` + mainNS + `"><sheetData><row r="1"><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row>` + rows + `</sheetData></worksheet>`
	}
	const row2 = `<row r="2"><c t="s"><v>2</v></c><c t="s"><v>3</v></c></row>`
	for _, tc := range []struct{ name, sheet, sst string }{
		{"a table opening with <!-->", sheetOf(row2), sstOf(`<!--><si><t>hidden</t></si>-->` + strs)},
		{"a sheet comment opening with <!-->", sheetOf(`<!--></x>-->` + row2), sstOf(strs)},
		{"a cell inside a comment", sheetOf(row2 + `<!--><c t="s"><v>3</v></c>--><row r="3"><c t="s"><v>2</v></c><c t="s"><v>3</v></c></row>`), sstOf(strs)},
		{"a processing instruction <?a?>", sheetOf(`<?a?>` + row2), sstOf(`<?b ?>` + strs)},
		{"a value nested in another element", sheetOf(`<row r="2"><c t="s"><v>2</v></c><c t="s"><x><v>3</v></x></c></row>`), sstOf(strs)},
		{"the last of two values", sheetOf(`<row r="2"><c t="s"><v>3</v><v>2</v></c><c t="s"><v>2</v><x><v>3</v></x></c></row>`), sstOf(strs)},
		{"a value inside a formula", sheetOf(`<row r="2"><c t="s"><v>2</v></c><c t="s"><f><v>2</v></f><v>3</v></c></row>`), sstOf(strs)},
		{"text nested in the value", sheetOf(`<row r="2"><c t="s"><v>2</v></c><c t="s"><v>3<x>1</x></v></c></row>`), sstOf(strs)},
		{"a prefixed type", sheetOf(`<row r="2"><c t="s"><v>2</v></c><c xmlns:p="urn:p" p:t="s"><v>3</v></c></row>`), sstOf(strs)},
		{"two types, the last one s", sheetOf(`<row r="2"><c t="s"><v>2</v></c><c xmlns:p="urn:p" t="n" p:t="s"><v>3</v></c></row>`), sstOf(strs)},
		{"an encoded type", sheetOf(`<row r="2"><c t="s"><v>2</v></c><c t="&#115;"><v>3</v></c></row>`), sstOf(strs)},
		{"a string nested below the table's children", sheetOf(row2), sstOf(`<x><si><t>hidden</t></si></x>` + strs)},
	} {
		inlined, kept, err1, err2 := readBothWays(t, handMade(t, tc.sheet, tc.sst), XLSXOptions{})
		if err1 != nil || err2 != nil || len(kept) == 0 || !reflect.DeepEqual(inlined, kept) {
			t.Errorf("%s:\ninlined  %+v %v\nexcelize %+v %v", tc.name, inlined, err1, kept, err2)
		}
	}
}

// A sheet whose relationship has another type than worksheet (a macro
// sheet) is still a sheet to excelize, and so to the rewrite.
func TestInlinedSharedStringsInAMacroSheet(t *testing.T) {
	t.Parallel()
	sst := `<sst xmlns="` + mainNS + `"><si><t>Account Number</t></si><si><t>Customer Email</t></si><si><t>7</t></si><si><t>a@example.com</t></si></sst>`
	sheet := `<worksheet xmlns="` + mainNS + `"><sheetData><row r="1"><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row><row r="2"><c t="s"><v>2</v></c><c t="s"><v>3</v></c></row></sheetData></worksheet>`
	data := handMade(t, sheet, sst)
	data = withPart(t, data, "xl/_rels/workbook.xml.rels", func(w io.Writer) {
		_, _ = io.WriteString(w, `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">`+
			`<Relationship Id="rId1" Type="http://schemas.microsoft.com/office/2006/relationships/xlMacrosheet" Target="worksheets/sheet1.xml"/>`+
			`<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>`+
			`<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>`+
			`</Relationships>`)
	})
	inlined, kept, err1, err2 := readBothWays(t, data, XLSXOptions{})
	if err1 != nil || err2 != nil || len(inlined) != 1 || inlined[0].Email != "a@example.com" || !reflect.DeepEqual(inlined, kept) {
		t.Fatalf("inlined %+v %v; excelize %+v %v", inlined, err1, kept, err2)
	}
}

// Elements nested thousands deep (each level costs the check memory) fail
// the file.
func TestDeeplyNestedSheetFailsTheFile(t *testing.T) {
	t.Parallel()
	sst := `<sst xmlns="` + mainNS + `"><si><t>Account Number</t></si><si><t>Customer Email</t></si></sst>`
	sheet := `<worksheet xmlns="` + mainNS + `"><sheetData><row r="1"><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row></sheetData>` +
		strings.Repeat("<a>", 5000) + strings.Repeat("</a>", 5000) + `</worksheet>`
	_, err := readXLSX(t, handMade(t, sheet, sst), XLSXOptions{})
	if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "deep") {
		t.Fatalf("got %v", err)
	}
}

// A workbook written with namespace prefixes (as the .NET Open XML SDK
// does: x:c, x:v), its table under another prefix, reads the same.
func TestInlinedSharedStringsWithNamespacePrefixes(t *testing.T) {
	t.Parallel()
	sst := `<?xml version="1.0" encoding="utf-8"?><s:sst xmlns:s="` + mainNS + `"><s:si><s:t>Account Number</s:t></s:si><s:si><s:t>Customer Email</s:t></s:si><s:si><s:r><s:t>A-</s:t></s:r><s:r><s:t>7</s:t></s:r></s:si><s:si><s:t>ann@example.com</s:t></s:si></s:sst>`
	sheet := `<?xml version="1.0" encoding="utf-8"?><x:worksheet xmlns:x="` + mainNS + `"><x:sheetData>` +
		`<x:row r="1"><x:c r="A1" t="s"><x:v>0</x:v></x:c><x:c r="B1" t="s"><x:v>1</x:v></x:c></x:row>` +
		`<x:row r="2"><x:c r="A2" t="s"><x:v>2</x:v></x:c><x:c r="B2" t="s"><x:v>3</x:v></x:c></x:row>` +
		`</x:sheetData></x:worksheet>`
	inlined, kept, err1, err2 := readBothWays(t, handMade(t, sheet, sst), XLSXOptions{})
	if err1 != nil || err2 != nil || len(inlined) != 1 || inlined[0].AccountNumber != "A-7" || inlined[0].Email != "ann@example.com" || !reflect.DeepEqual(inlined, kept) {
		t.Fatalf("inlined %+v %v; excelize %+v %v", inlined, err1, kept, err2)
	}
}

// A damaged sheet fails the file: excelize's Rows() ends at broken XML
// without a word, which would have completed the import without the rows
// after it. So it is with the text in a shared strings table and with the
// text in the cells (no table: nothing is rewritten, the sheet is checked).
func TestDamagedSheetFailsTheFile(t *testing.T) {
	t.Parallel()
	sst := `<sst xmlns="` + mainNS + `"><si><t>Account Number</t></si><si><t>Customer Email</t></si><si><t>7</t></si><si><t>a@example.com</t></si></sst>`
	noTable := workbook(t, func(f *excelize.File) { _ = f.SetCellInt("Sheet1", "A1", 1) })
	for _, layout := range []struct {
		name string
		// cells: the header's two cells and the row's; open: a cell cut
		// short
		header, row, open string
		make              func(sheet string) []byte
	}{
		{"shared strings",
			`<c t="s"><v>0</v></c><c t="s"><v>1</v></c>`, `<c t="s"><v>2</v></c><c t="s"><v>3</v></c>`, `<c t="s"><v>2</v>`,
			func(sheet string) []byte { return handMade(t, sheet, sst) }},
		{"inline strings",
			`<c t="inlineStr"><is><t>Account Number</t></is></c><c t="inlineStr"><is><t>Customer Email</t></is></c>`,
			`<c t="inlineStr"><is><t>7</t></is></c><c t="inlineStr"><is><t>a@example.com</t></is></c>`, `<c t="inlineStr"><is><t>7</t></is>`,
			func(sheet string) []byte {
				return withPart(t, noTable, "xl/worksheets/sheet1.xml", func(w io.Writer) { _, _ = io.WriteString(w, sheet) })
			}},
	} {
		header := `<worksheet xmlns="` + mainNS + `"><sheetData><row r="1">` + layout.header + `</row>`
		row := `<row r="2">` + layout.row + `</row>`
		for name, sheet := range map[string]string{
			"cut short":           header + row + `<row r="3">` + layout.open,
			"an end tag mismatch": header + row + `<row r="3">` + layout.open + `</row></c></sheetData></worksheet>`,
			"an extra end tag":    header + `</row>` + row + `</sheetData></worksheet>`,
		} {
			_, err := readXLSX(t, layout.make(sheet), XLSXOptions{})
			if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "XML") {
				t.Errorf("%s, %s: %v", layout.name, name, err)
			}
		}
		rows, err := readXLSX(t, layout.make(header+row+`</sheetData></worksheet>`), XLSXOptions{})
		if err != nil || len(rows) != 1 || rows[0].AccountNumber != "7" || rows[0].Email != "a@example.com" {
			t.Errorf("%s, undamaged: %+v %v", layout.name, rows, err)
		}
	}
}

// A cell whose index is not in the table reads empty, as excelize reads it
// (Rows drops the error); a row of nothing else is a blank row.
func TestInlinedSharedStringsIndexOutOfRange(t *testing.T) {
	t.Parallel()
	sst := `<sst xmlns="` + mainNS + `"><si><t>Account Number</t></si><si><t>Customer Email</t></si><si><t>7</t></si></sst>`
	sheet := `<worksheet xmlns="` + mainNS + `"><sheetData><row r="1"><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row><row r="2"><c t="s"><v>2</v></c><c t="s"><v>3</v></c></row><row r="3"><c t="s"><v>-1</v></c><c t="s"><v>99999999999999999999</v></c></row></sheetData></worksheet>`
	inlined, kept, err1, err2 := readBothWays(t, handMade(t, sheet, sst), XLSXOptions{})
	if err1 != nil || err2 != nil || len(inlined) != 1 || inlined[0].AccountNumber != "7" || inlined[0].Email != "" || !reflect.DeepEqual(inlined, kept) {
		t.Fatalf("inlined: %+v %v; excelize: %+v %v", inlined, err1, kept, err2)
	}
}

// The rewrite is what reads the workbooks spreadsheet programs save, and
// it leaves alone what it does not take apart.
func TestWhichWorkbooksAreRewritten(t *testing.T) {
	t.Parallel()
	saved := workbook(t, func(f *excelize.File) {
		_ = f.SetSheetRow("Sheet1", "A1", &[]any{"Account Number", "Customer Email"})
	})
	const sheet = `<worksheet xmlns="` + mainNS + `"><sheetData><row r="1"><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row></sheetData></worksheet>`
	const sst = `<sst xmlns="` + mainNS + `"><si><t>Account Number</t></si><si><t>Customer Email</t></si></sst>`
	for _, tc := range []struct {
		name      string
		data      []byte
		rewritten bool
	}{
		{"saved by excelize, text in the table", saved, true},
		{"a table in UTF-16", handMade(t, sheet, "\xFF\xFE<\x00s\x00s\x00t\x00/\x00>\x00"), false},
		{"a sheet declared in another encoding", handMade(t, `<?xml version="1.0" encoding="ISO-8859-1"?>`+sheet, sst), false},
		{"a document type declaration", handMade(t, `<!DOCTYPE worksheet>`+sheet, sst), false},
		{"no table", workbook(t, func(f *excelize.File) { _ = f.SetCellInt("Sheet1", "A1", 1) }), false},
		{"Strict Open XML", withPart(t, saved, "_rels/.rels", func(w io.Writer) {
			_, _ = io.WriteString(w, `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://purl.oclc.org/ooxml/officeDocument/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>`)
		}), true},
	} {
		path := writeTemp(t, tc.data)
		out, err := inlineSharedStrings(path, XLSXOptions{UnzipSizeLimit: 1 << 30, TempDir: t.TempDir()})
		if err != nil || (out != "") != tc.rewritten {
			t.Errorf("%s: rewritten to %q, %v; want rewritten %v", tc.name, out, err, tc.rewritten)
		}
		if inlined, kept, err1, err2 := readBothWays(t, tc.data, XLSXOptions{}); !reflect.DeepEqual(inlined, kept) || (err1 == nil) != (err2 == nil) {
			t.Errorf("%s: inlined %+v %v; excelize %+v %v", tc.name, inlined, err1, kept, err2)
		}
	}
}

func writeTemp(t testing.TB, data []byte) string {
	t.Helper()
	path := t.TempDir() + "/upload.xlsx"
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// One long text referenced by every cell of a small upload would be
// written out once a cell: the workbook fails as a zip bomb does.
func TestInlinedTextBoundedLikeAZipBomb(t *testing.T) {
	t.Parallel()
	var sheet strings.Builder
	sheet.WriteString(`<worksheet xmlns="` + mainNS + `"><sheetData><row r="1"><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row>`)
	for i := 2; i < 20_000; i++ {
		fmt.Fprintf(&sheet, `<row r="%d"><c t="s"><v>2</v></c><c t="s"><v>2</v></c><c t="s"><v>2</v></c></row>`, i)
	}
	sheet.WriteString(`</sheetData></worksheet>`)
	sst := `<sst xmlns="` + mainNS + `"><si><t>Account Number</t></si><si><t>Customer Email</t></si><si><t>` + strings.Repeat("x", 32_000) + `</t></si></sst>`
	data := handMade(t, sheet.String(), sst)
	if len(data) > 1<<20 {
		t.Fatalf("the upload weighs %d bytes; it should be small", len(data))
	}
	_, err := readXLSX(t, data, XLSXOptions{UnzipSizeLimit: 64 << 20, TempDir: t.TempDir()})
	if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), "text cells") {
		t.Fatalf("got %v", err)
	}
}

// The temporary files of a rewrite are gone once the workbook is open, and
// once it is closed nothing of the import is left.
func TestInlineLeavesNoTemporaryFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := workbook(t, func(f *excelize.File) {
		_ = f.SetSheetRow("Sheet1", "A1", &[]any{"Account Number", "Customer Email"})
		_ = f.SetSheetRow("Sheet1", "A2", &[]any{"1", "a@example.com"})
	})
	r, err := OpenXLSX(bytes.NewReader(data), XLSXOptions{TempDir: dir, UnzipXMLSizeLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// The shared strings of a workbook are read from disk: what it costs the
// worker does not grow with the table.
func TestSharedStringsTableOnDisk(t *testing.T) {
	t.Parallel()
	w, err := newSharedStringsWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const n = 100_000
	for i := range n {
		if err := w.add(fmt.Appendf(nil, "<t>%d-%s</t>", i, strings.Repeat("y", i%50))); err != nil {
			t.Fatal(err)
		}
		if err := w.end(); err != nil {
			t.Fatal(err)
		}
	}
	table, err := w.finish()
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	// Forwards, backwards and far apart, across the cache's blocks.
	for _, i := range []int{0, 1, n - 1, n / 2, 7, n - 2, 31_337, 2, n / 3} {
		var buf bytes.Buffer
		if err := table.writeTo(&buf, i); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("<t>%d-%s</t>", i, strings.Repeat("y", i%50)); buf.String() != want {
			t.Fatalf("string %d: %q, want %q", i, buf.String(), want)
		}
	}
}

func wellFormed(doc string) bool {
	d := xml.NewDecoder(strings.NewReader(doc))
	for {
		if _, err := d.Token(); errors.Is(err, io.EOF) {
			return true
		} else if err != nil {
			return false
		}
	}
}

// FuzzInlinedSharedStrings holds the rewrite to excelize's own reading: a
// sheet and a table that excelize reads read the same inlined.
func FuzzInlinedSharedStrings(f *testing.F) {
	f.Add(`<row r="2"><c r="A2" t="s"><v>2</v></c><c r="B2" t="s"><v>3</v></c></row>`, `<si><t>1</t></si><si><t>a@example.com</t></si>`)
	f.Add(`<row><c t="s"><v> 3</v></c><c t='s'><f>x</f><v>2</v></c><c t="s"><v/></c></row>`, `<si><r><t>a</t></r><r><t>@b.c</t></r></si><si/>`)
	f.Add(`<row r="2"><c t="s"><v><![CDATA[2]]></v></c><c t="s"><v>&#50;</v></c><!-- <c t="s"> --></row>`, `<si><t><![CDATA[</si>]]></t></si>`)
	f.Add(`<!--><c t="s"><v>2</v></c>--><row><c t="s"><x><v>2</v></x></c><c p:t="s" xmlns:p="p"><v>3</v></c></row>`, `<!--><si/>--><x><si><t>y</t></si></x><si><t>z</t></si>`)
	f.Fuzz(func(t *testing.T, rows, strs string) {
		sheet := `<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="` + mainNS + `"><sheetData>` +
			`<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>` + rows + `</sheetData></worksheet>`
		sst := `<sst xmlns="` + mainNS + `"><si><t>Account Number</t></si><si><t>Customer Email</t></si>` + strs + `</sst>`
		data := handMade(t, sheet, sst)
		o := XLSXOptions{UnzipSizeLimit: 16 << 20, TempDir: t.TempDir()}
		inlined, kept, err1, err2 := readBothWays(t, data, o)
		if err2 != nil {
			return // excelize refuses it; the rewrite need not read it
		}
		if !wellFormed(sheet) || !wellFormed(sst) {
			// excelize stops reading a sheet at broken XML without a word
			// (Rows ends), where the rewrite may fail the file or copy the
			// damage through for excelize to stop at; either way it must
			// not crash or hang, which the reading above has shown.
			return
		}
		if err1 != nil || !reflect.DeepEqual(inlined, kept) {
			t.Fatalf("inlined %+v %v\nexcelize %+v", inlined, err1, kept)
		}
	})
}

// excelLayout is a workbook of n rows laid out as Excel saves one: the
// account number a number, the other three columns text in the shared
// strings table (two distinct strings a row, one shared by all).
func excelLayout(b testing.TB, n int) []byte {
	b.Helper()
	var sheet, sst bytes.Buffer
	sheet.WriteString(`<worksheet xmlns="` + mainNS + `"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c r="C1" t="s"><v>2</v></c><c r="D1" t="s"><v>3</v></c></row>`)
	sst.WriteString(`<sst xmlns="` + mainNS + `"><si><t>Account Number</t></si><si><t>Customer Email</t></si><si><t>Customer First Name</t></si><si><t>Customer Last Name</t></si><si><t>Pat</t></si>`)
	for i := range n {
		r := i + 2
		fmt.Fprintf(&sheet, `<row r="%d"><c r="A%d"><v>%d</v></c><c r="B%d" t="s"><v>%d</v></c><c r="C%d" t="s"><v>4</v></c><c r="D%d" t="s"><v>%d</v></c></row>`, r, r, 1_000_000+i, r, 5+2*i, r, r, 6+2*i)
		fmt.Fprintf(&sst, `<si><t>contact%d@customer%d.example.com</t></si><si><t>Lee %d</t></si>`, i, i%977, i)
	}
	sheet.WriteString(`</sheetData></worksheet>`)
	sst.WriteString(`</sst>`)
	return handMade(b, sheet.String(), sst.String())
}

// BenchmarkXLSXSharedStrings reads an Excel-laid-out workbook with the
// shared strings written into the cells (inlined) and through excelize's own
// index of them (excelize), and prints the ratio:
//
//	go test -run '^$' -bench XLSXSharedStrings -benchtime 3x ./internal/importer
func BenchmarkXLSXSharedStrings(b *testing.B) {
	const n = 100_000
	data := excelLayout(b, n)
	var rates [2]float64
	for i, keep := range []bool{false, true} {
		start := time.Now()
		for range b.N {
			rows, err := readXLSX(b, data, XLSXOptions{keepSharedStrings: keep, TempDir: b.TempDir()})
			if err != nil || len(rows) != n {
				b.Fatalf("%d rows, %v", len(rows), err)
			}
		}
		rates[i] = float64(n*b.N) / time.Since(start).Seconds()
	}
	b.ReportMetric(rates[0], "inlined_rows/s")
	b.ReportMetric(rates[1], "excelize_rows/s")
	b.ReportMetric(rates[0]/rates[1], "inlined/excelize")
}

// The workbooks other programs wrote with a shared strings table are read
// through the rewrite, not left to excelize's index: their tests
// (TestWorkbooksOfOtherPrograms) test the rewrite.
func TestWorkbooksOfOtherProgramsAreRewritten(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"sheetjs-sst.xlsx", "exceljs.xlsx", "libreoffice.xlsx", "libreoffice-ooxml.xlsx"} {
		out, err := inlineSharedStrings(filepath.Join("testdata", "workbooks", name), XLSXOptions{UnzipSizeLimit: 1 << 30, TempDir: t.TempDir()})
		if err != nil || out == "" {
			t.Errorf("%s: rewritten to %q, %v", name, out, err)
		}
	}
}

// A failure of the worker's own temporary files is retried (not a file
// error); a zip whose entries point outside it is the upload's fault.
func TestInlineErrorsTellTheUploadFromTheDisk(t *testing.T) {
	t.Parallel()
	saved := writeTemp(t, workbook(t, func(f *excelize.File) {
		_ = f.SetSheetRow("Sheet1", "A1", &[]any{"Account Number", "Customer Email"})
	}))
	_, err := inlineSharedStrings(saved, XLSXOptions{UnzipSizeLimit: 1 << 30, TempDir: filepath.Join(t.TempDir(), "gone")})
	if err == nil || errors.Is(err, ErrFile) {
		t.Fatalf("temporary directory missing: %v, want an error to retry", err)
	}
}
