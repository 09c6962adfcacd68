package importer

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestWorkbooksOfOtherPrograms reads workbooks written by spreadsheet
// programs and libraries other than excelize (testdata/workbooks; make.mjs
// and make-libreoffice.sh there make them again). They differ in how they store text: SheetJS with bookSST puts
// it in xl/sharedStrings.xml, SheetJS by default has no shared strings table
// and writes text as t="str" cells (<v>text</v>, no formula), and exceljs
// uses shared strings, rich text (<si><r>…</r></si>) and formula cells with
// a cached string. LibreOffice Calc's are described below.
func TestWorkbooksOfOtherPrograms(t *testing.T) {
	t.Parallel()
	// The rows SheetJS's and exceljs's hold; row 5 is blank and skipped, row numbers stay
	// as the spreadsheet shows them.
	common := []Row{
		// A2 is the number 145722: <c r="A2"><v>145722</v></c>.
		{Number: 2, AccountNumber: "145722", Email: "jane+news@example.com", FirstName: "Jane", LastName: "Smith"},
		// A3 is the text 00123.
		{Number: 3, AccountNumber: "00123", Email: "zoe@example.com", FirstName: "Zoë", LastName: "日本"},
		// Stored as Ann &amp; &quot;Jo&quot; and Lee &lt;Jr&gt;.
		{Number: 4, AccountNumber: "4711", Email: "ann@example.com", FirstName: `Ann & "Jo"`, LastName: "Lee <Jr>"},
		// Stored with xml:space="preserve" as "  spaced@example.com ",
		// "  Max  " and " Smith": the importer trims every value.
		{Number: 6, AccountNumber: "4712", Email: "spaced@example.com", FirstName: "Max", LastName: "Smith"},
		// No C7 cell at all.
		{Number: 7, AccountNumber: "4713", Email: "nofirst@example.com", LastName: "Smith"},
		// A C8 cell holding "" (<si><t></t></si>, or <v></v>).
		{Number: 8, AccountNumber: "4714", Email: "emptyfirst@example.com", LastName: "Smith"},
	}
	exceljsRows := append(append([]Row(nil), common...),
		// D9 is rich text: <si><r><rPr><b/></rPr><t>Mü</t></r><r><t>ller</t></r></si>.
		Row{Number: 9, AccountNumber: "4715", Email: "muller@example.com", FirstName: "Hans", LastName: "Müller"},
		// B10 is <c t="str"><f>LOWER("Formula@Example.com")</f><v>formula@example.com</v></c>.
		Row{Number: 10, AccountNumber: "4716", Email: "formula@example.com", FirstName: "Fay", LastName: "Smith"},
	)
	// LibreOffice Calc's workbooks (make-libreoffice.sh makes them from
	// libreoffice.fods), saved as "Excel 2007-365" and as "Office Open XML
	// Spreadsheet", hold the same sheet: every text cell a shared string
	// (<c t="s">, the table's <t> all xml:space="preserve"), every number a
	// <c t="n">, and the zero-padded account a number whose style has the
	// custom format 000000 (numFmtId 165; LibreOffice also defines "General"
	// as custom format 164 and gives it to every other cell). A second
	// sheet, Notes, follows and is not read.
	libreOfficeRows := []Row{
		// A2 is <c r="A2" s="0" t="n"><v>145722</v></c>.
		{Number: 2, AccountNumber: "145722", Email: "jane+news@example.com", FirstName: "Jane", LastName: "Smith"},
		// A3 is <c r="A3" s="1" t="n"><v>123</v></c>, style 1 format 000000:
		// read as shown. D3 has a style of its own (a fallback font).
		{Number: 3, AccountNumber: "000123", Email: "zoe@example.com", FirstName: "Zoë", LastName: "日本"},
		// A4 is the text 00123; C4 and D4 are stored as
		// Ann &amp; &quot;Jo&quot; and Lee &lt;Jr&gt;.
		{Number: 4, AccountNumber: "00123", Email: "ann@example.com", FirstName: `Ann & "Jo"`, LastName: "Lee <Jr>"},
		// Row 5 is blank: LibreOffice writes no <row r="5"> at all.
		// No C6 cell; D6 is the same shared string as D2.
		{Number: 6, AccountNumber: "4712", Email: "nofirst@example.com", LastName: "Smith"},
		// C7 is stored as Seán &apos;Jo&apos;.
		{Number: 7, AccountNumber: "4713", Email: "obrien@example.com", FirstName: "Seán 'Jo'", LastName: "Smith"},
	}
	for _, tc := range []struct {
		file string
		want []Row
	}{
		{"sheetjs-sst.xlsx", common},
		{"sheetjs-inline.xlsx", common},
		{"exceljs.xlsx", exceljsRows},
		{"libreoffice.xlsx", libreOfficeRows},
		{"libreoffice-ooxml.xlsx", libreOfficeRows},
	} {
		data, err := os.ReadFile(filepath.Join("testdata", "workbooks", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []struct {
			name string
			opts XLSXOptions
		}{
			{"in memory", XLSXOptions{}},
			// Every worksheet and shared strings table is larger than
			// this: excelize streams them from temporary files.
			{"from temporary files", XLSXOptions{UnzipXMLSizeLimit: 1}},
		} {
			t.Run(tc.file+"/"+o.name, func(t *testing.T) {
				t.Parallel()
				rows, err := readXLSX(t, data, o.opts)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < max(len(rows), len(tc.want)); i++ {
					switch {
					case i >= len(rows):
						t.Errorf("row %d missing: want %+v", tc.want[i].Number, tc.want[i])
						continue
					case i >= len(tc.want):
						t.Errorf("unexpected row %+v", rows[i])
						continue
					}
					got, want := rows[i], tc.want[i]
					if got.Err != nil {
						t.Errorf("row %d: unexpected error %+v", got.Number, *got.Err)
					}
					got.Err = nil
					if got != want {
						t.Errorf("row %d:\n got %+v\nwant %+v", want.Number, got, want)
					}
				}
				// With the shared strings written into the cells, as
				// through excelize's own index of them.
				inlined, kept, err1, err2 := readBothWays(t, data, o.opts)
				if err1 != nil || err2 != nil || !reflect.DeepEqual(inlined, kept) {
					t.Errorf("inlined  %+v %v\nexcelize %+v %v", inlined, err1, kept, err2)
				}
			})
		}
	}
}
