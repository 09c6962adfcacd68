package importer

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWorkbooksOfOtherPrograms reads workbooks written by spreadsheet
// libraries other than excelize (testdata/workbooks; make.mjs there makes
// them again). They differ in how they store text: SheetJS with bookSST puts
// it in xl/sharedStrings.xml, SheetJS by default has no shared strings table
// and writes text as t="str" cells (<v>text</v>, no formula), and exceljs
// uses shared strings, rich text (<si><r>…</r></si>) and formula cells with
// a cached string.
func TestWorkbooksOfOtherPrograms(t *testing.T) {
	t.Parallel()
	// The rows all three hold; row 5 is blank and skipped, row numbers stay
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
	for _, tc := range []struct {
		file string
		want []Row
	}{
		{"sheetjs-sst.xlsx", common},
		{"sheetjs-inline.xlsx", common},
		{"exceljs.xlsx", exceljsRows},
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
			})
		}
	}
}
