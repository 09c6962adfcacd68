package importer

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestLibreOfficeWorkbooks reads workbooks LibreOffice Calc wrote
// (testdata/workbooks/make-libreoffice.sh makes them from libreoffice.fods),
// saved as "Excel 2007-365" and as "Office Open XML Spreadsheet". Both hold
// the same sheet: every text cell is a shared string (<c t="s">, the table's
// <t> all xml:space="preserve"), every number a <c t="n">, and the zero-padded
// account a number whose style has the custom format 000000 (numFmtId 165;
// LibreOffice also defines "General" as custom format 164 and gives it to
// every other cell). A second sheet, Notes, follows and is not read.
func TestLibreOfficeWorkbooks(t *testing.T) {
	t.Parallel()
	want := []Row{
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
	for _, file := range []string{"libreoffice.xlsx", "libreoffice-ooxml.xlsx"} {
		data, err := os.ReadFile(filepath.Join("testdata", "workbooks", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []struct {
			name string
			opts XLSXOptions
		}{
			{"in memory", XLSXOptions{}},
			// Every worksheet and the shared strings table are larger
			// than this: excelize streams them from temporary files.
			{"from temporary files", XLSXOptions{UnzipXMLSizeLimit: 1}},
		} {
			t.Run(file+"/"+o.name, func(t *testing.T) {
				t.Parallel()
				rows, err := readXLSX(t, data, o.opts)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < max(len(rows), len(want)); i++ {
					switch {
					case i >= len(rows):
						t.Errorf("row %d missing: want %+v", want[i].Number, want[i])
						continue
					case i >= len(want):
						t.Errorf("unexpected row %+v", rows[i])
						continue
					}
					got := rows[i]
					if got.Err != nil {
						t.Errorf("row %d: unexpected error %+v", got.Number, *got.Err)
					}
					got.Err = nil
					if got != want[i] {
						t.Errorf("row %d:\n got %+v\nwant %+v", want[i].Number, got, want[i])
					}
				}
				// The table inlined reads as excelize reads it.
				inlined, kept, err1, err2 := readBothWays(t, data, o.opts)
				if err1 != nil || err2 != nil || !reflect.DeepEqual(inlined, kept) {
					t.Errorf("inlined  %+v %v\nexcelize %+v %v", inlined, err1, kept, err2)
				}
			})
		}
	}
}
