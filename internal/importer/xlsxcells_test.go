package importer

import (
	"io"
	"reflect"
	"testing"

	"github.com/xuri/excelize/v2"
)

// typedWorkbook is a workbook whose first sheet holds the header of the
// template and the rows given (XML), with these cell styles: 1 a built-in
// date (14), 2 the custom date yyyy-mm-dd, 3 sixteen zeros, 4 a time
// (h:mm), 5 the text format @.
func typedWorkbook(t testing.TB, rows string) []byte {
	t.Helper()
	base := workbook(t, func(f *excelize.File) {
		_ = f.SetSheetRow("Sheet1", "A1", &[]any{"Account Number", "Customer Email", "Customer First Name", "Customer Last Name"})
		date, sixteen, tm := "yyyy-mm-dd", "0000000000000000", "h:mm"
		for i, st := range []*excelize.Style{{NumFmt: 14}, {CustomNumFmt: &date}, {CustomNumFmt: &sixteen}, {CustomNumFmt: &tm}, {NumFmt: 49}} {
			if id, err := f.NewStyle(st); err != nil || id != i+1 {
				t.Fatalf("style %d: %d %v", i+1, id, err)
			}
		}
	})
	const header = `<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c r="C1" t="s"><v>2</v></c><c r="D1" t="s"><v>3</v></c></row>`
	sheet := `<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="` + mainNS + `"><sheetData>` + header + rows + `</sheetData></worksheet>`
	sst := `<sst xmlns="` + mainNS + `"><si><t>Account Number</t></si><si><t>Customer Email</t></si><si><t>Customer First Name</t></si><si><t>Customer Last Name</t></si>` +
		`<si><t>1234567890123456</t></si><si><t>45293</t></si></sst>`
	data := withPart(t, base, "xl/worksheets/sheet1.xml", func(w io.Writer) { _, _ = io.WriteString(w, sheet) })
	return withPart(t, data, "xl/sharedStrings.xml", func(w io.Writer) { _, _ = io.WriteString(w, sst) })
}

func inline(ref, text string) string {
	return `<c r="` + ref + `" t="inlineStr"><is><t>` + text + `</t></is></c>`
}

// What a cell is (a number, text, a formula's error value, a date) is read
// from the sheet, not guessed from its value.
func TestCellTypesDecideTheRowRules(t *testing.T) {
	t.Parallel()
	const dateMsg = " is a date in the file; format the column as text and enter it again"
	for _, tc := range []struct {
		name, cells string
		want        Row // Number 2, Email a@example.com unless set
	}{
		{"formula errors in the account and a name",
			`<c r="A2" t="e"><f>VLOOKUP(X2,Y:Z,2,0)</f><v>#N/A</v></c>` + inline("B2", "a@example.com") + `<c r="C2" t="e"><v>#REF!</v></c><c r="D2" t="e"><v>#SPILL!</v></c>`,
			Row{AccountNumber: "#N/A", FirstName: "#REF!", LastName: "#SPILL!", cellErrs: [4]string{
				"Account Number is a formula error (#N/A) in the file", "", "Customer First Name is a formula error (#REF!) in the file", "Customer Last Name is a formula error (#SPILL!) in the file"}}},
		{"a formula error in the email",
			`<c r="A2"><v>100</v></c><c r="B2" t="e"><f>A1/0</f><v>#DIV/0!</v></c>`,
			Row{AccountNumber: "100", Email: "#DIV/0!", cellErrs: [4]string{1: "Customer Email is a formula error (#DIV/0!) in the file"}}},
		{"text that reads like an error value is text",
			inline("A2", "#N/A") + inline("B2", "a@example.com") + inline("C2", "#NAME?"),
			Row{AccountNumber: "#N/A", FirstName: "#NAME?"}},
		{"dates in the account and the first name",
			`<c r="A2" s="1"><v>45293</v></c>` + inline("B2", "a@example.com") + `<c r="C2" s="2"><v>32907</v></c>`,
			Row{AccountNumber: "2024-01-02", FirstName: "1990-02-03", cellErrs: [4]string{"Account Number" + dateMsg, "", "Customer First Name" + dateMsg}}},
		{"a time, and an ISO date cell",
			`<c r="A2"><v>100</v></c>` + inline("B2", "a@example.com") + `<c r="C2" t="d"><v>2024-01-02T00:00:00Z</v></c><c r="D2" s="4"><v>0.5</v></c>`,
			Row{AccountNumber: "100", FirstName: "2024-01-02", LastName: "12:00:00", cellErrs: [4]string{2: "Customer First Name" + dateMsg, 3: "Customer Last Name" + dateMsg}}},
		{"text in a date-formatted cell is text",
			`<c r="A2" s="1" t="s"><v>5</v></c>` + inline("B2", "a@example.com") + `<c r="C2" s="2" t="inlineStr"><is><t>Jan</t></is></c>`,
			Row{AccountNumber: "45293", FirstName: "Jan"}},
		{"a number of 16 digits, General",
			`<c r="A2"><v>1234567890123450</v></c>` + inline("B2", "a@example.com"),
			Row{AccountNumber: "1234567890123450", cellErrs: [4]string{MsgAccountRounded}}},
		{"a number of 17 digits, padded to 16",
			`<c r="A2" s="3"><v>12345678901234500</v></c>` + inline("B2", "a@example.com"),
			Row{AccountNumber: "12345678901234500", cellErrs: [4]string{MsgAccountRounded}}},
		{"a number of 16 digits, format 0",
			`<c r="A2" s="5"><v>1234567890123450</v></c>` + inline("B2", "a@example.com"),
			Row{AccountNumber: "1234567890123450", cellErrs: [4]string{MsgAccountRounded}}},
		{"a number of 16 digits written by a program",
			`<c r="A2" t="n"><v>1234567890123456</v></c>` + inline("B2", "a@example.com"),
			Row{AccountNumber: "1.23456789012346E+15", cellErrs: [4]string{MsgAccountRounded}}},
		{"a small number padded to 16 digits",
			`<c r="A2" s="3"><v>123</v></c>` + inline("B2", "a@example.com"),
			Row{AccountNumber: "0000000000000123"}},
		{"a number of 15 digits",
			`<c r="A2"><v>999999999999999</v></c>` + inline("B2", "a@example.com"),
			Row{AccountNumber: "999999999999999"}},
		{"text of 16 digits: inline, shared, a formula's",
			inline("A2", "1234567890123456") + inline("B2", "a@example.com") + `<c r="C2" t="s"><v>4</v></c><c r="D2" t="str"><f>TEXT(A2,"0")</f><v>1234567890123456</v></c>`,
			Row{AccountNumber: "1234567890123456", FirstName: "1234567890123456", LastName: "1234567890123456"}},
		{"text that reads like an exponent",
			inline("A2", "1.5E+3") + inline("B2", "a@example.com"),
			Row{AccountNumber: "1.5E+3"}},
		{"formulas with no value saved, in the account and a name",
			`<c r="A2" t="str"><f>TEXT(X2,"0")</f></c>` + inline("B2", "a@example.com") + `<c r="C2"><f>Y2</f></c>`,
			Row{cellErrs: [4]string{0: "Account Number is a formula with no value saved in the file; open the file in Excel and save it again", 2: "Customer First Name is a formula with no value saved in the file; open the file in Excel and save it again"}}},
		{"a formula whose result is empty text, as Excel saves it",
			`<c r="A2"><v>100</v></c>` + inline("B2", "a@example.com") + `<c r="C2" t="str"><f>IF(X2="","",X2)</f><v/></c><c r="D2" t="str"><f>IF(Y2="","",Y2)</f><v></v></c>`,
			Row{AccountNumber: "100"}},
		{"cells without r, an empty error cell",
			`<c><v>100</v></c>` + `<c t="inlineStr"><is><t>a@example.com</t></is></c><c t="e"></c><c s="1"><v>45293</v></c>`,
			Row{AccountNumber: "100", LastName: "2024-01-02", cellErrs: [4]string{3: "Customer Last Name" + dateMsg}}},
	} {
		data := typedWorkbook(t, `<row r="2">`+tc.cells+`</row>`)
		inlined, kept, err1, err2 := readBothWays(t, data, XLSXOptions{})
		if err1 != nil || err2 != nil || !reflect.DeepEqual(inlined, kept) {
			t.Errorf("%s:\ninlined  %+v %v\nexcelize %+v %v", tc.name, inlined, err1, kept, err2)
			continue
		}
		want := tc.want
		want.Number = 2
		if want.Email == "" {
			want.Email = "a@example.com"
		}
		if len(inlined) != 1 || inlined[0] != want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, inlined, want)
		}
	}
}

// A field whose cell is wrong gets that one entry: its value is not judged
// too (a date in the email column is not also an invalid email).
func TestACellErrorIsTheFieldsOnlyError(t *testing.T) {
	t.Parallel()
	rows, err := readXLSX(t, typedWorkbook(t, `<row r="2"><c r="A2" t="e"><v>#N/A</v></c><c r="B2" s="1"><v>45293</v></c></row>`), XLSXOptions{})
	if err != nil || len(rows) != 1 {
		t.Fatalf("%+v %v", rows, err)
	}
	want := []FieldError{
		{ColAccountNumber, "Account Number is a formula error (#N/A) in the file"},
		{ColEmail, "Customer Email is a date in the file; format the column as text and enter it again"},
	}
	if got := Validate(rows[0]); !reflect.DeepEqual(got, want) {
		t.Fatalf("%+v", got)
	}
}

// The cells of rows excelize numbers itself (no r), rows out of order,
// blank rows and cells far right are matched to the right row and column.
func TestCellTypesFollowExcelizesRows(t *testing.T) {
	t.Parallel()
	rows := `<row><c><v>1234567890123450</v></c>` + inline("B2", "a@example.com") + `</row>` + // row 2
		`<row r="5">` + inline("A5", "1234567890123456") + inline("B5", "b@example.com") + `<c r="C5" t="e"><v>#N/A</v></c></row>` +
		`<row>` + inline("A6", "100") + inline("B6", "c@example.com") + `<c r="D6" s="1"><v>45293</v></c><c r="Z6" t="e"><v>#N/A</v></c></row>` +
		`<row r="8" spans="1:2"><c r="B8" t="inlineStr"><is><t>d@example.com</t></is></c><c r="A8"><v>12345678901234500</v></c></row>`
	inlined, kept, err1, err2 := readBothWays(t, typedWorkbook(t, rows), XLSXOptions{})
	if err1 != nil || err2 != nil || !reflect.DeepEqual(inlined, kept) || len(inlined) != 4 {
		t.Fatalf("inlined  %+v %v\nexcelize %+v %v", inlined, err1, kept, err2)
	}
	var got [][]FieldError
	for _, r := range inlined {
		got = append(got, Validate(r))
	}
	want := [][]FieldError{
		{{ColAccountNumber, MsgAccountRounded}},
		{{ColFirstName, "Customer First Name is a formula error (#N/A) in the file"}},
		{{ColLastName, "Customer Last Name is a date in the file; format the column as text and enter it again"}},
		// Cells out of column order: excelize puts A8 after B8, in the
		// third place (the first name), and leaves the account empty. The
		// number read beside it, in column A, does not agree with
		// excelize's A8 (empty), so it is not taken for the account's.
		{{ColAccountNumber, MsgAccountEmpty}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%+v\nrows %+v", got, inlined)
	}
}

// Where the cells' types cannot be read (here a sheet with a document
// type declaration, which the scanner does not take apart; no program
// writes one), a value is judged alone, as before: an error value is an
// error even as text, an exponent is a rounded number even as text, and a
// number of 16 digits that excelize shows whole passes.
func TestUnknownCellTypesFallBackToValues(t *testing.T) {
	t.Parallel()
	sheet := `<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE worksheet><worksheet xmlns="` + mainNS + `"><sheetData>` +
		`<row r="1"><c r="A1" t="inlineStr"><is><t>Account Number</t></is></c><c r="B1" t="inlineStr"><is><t>Customer Email</t></is></c><c r="C1" t="inlineStr"><is><t>First Name</t></is></c></row>` +
		`<row r="2"><c r="A2"><v>1234567890123456</v></c>` + inline("B2", "a@example.com") + inline("C2", "#N/A") + `</row>` +
		`<row r="3">` + inline("A3", "1.5E+3") + inline("B3", "b@example.com") + `</row>` +
		`<row r="4"><c r="A4"><v>1234567890123450</v></c>` + inline("B4", "c@example.com") + `</row>` +
		`</sheetData></worksheet>`
	data := withPart(t, workbook(t, func(*excelize.File) {}), "xl/worksheets/sheet1.xml", func(w io.Writer) { _, _ = io.WriteString(w, sheet) })
	rows, err := readXLSX(t, data, XLSXOptions{})
	if err != nil || len(rows) != 3 {
		t.Fatalf("%+v %v", rows, err)
	}
	want := [][4]string{
		{MsgAccountRounded, "", "Customer First Name is a formula error (#N/A) in the file"},
		{MsgAccountRounded},
		{},
	}
	for i, r := range rows {
		if r.cellErrs != want[i] {
			t.Errorf("row %d: %q, want %q", r.Number, r.cellErrs, want[i])
		}
	}
}
