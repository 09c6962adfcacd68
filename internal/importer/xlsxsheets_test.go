package importer

import (
	"errors"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
)

// A cover sheet ("Instructions", "Export Summary") before the data is
// passed over when no sheet is named: the first visible sheet whose first
// row is a header is read.
func TestCoverSheetBeforeTheData(t *testing.T) {
	t.Parallel()
	data := workbook(t, func(f *excelize.File) {
		_ = f.SetSheetName("Sheet1", "Instructions")
		_ = f.SetSheetRow("Instructions", "A1", &[]any{"How to fill in this file"})
		_ = f.SetSheetRow("Instructions", "A2", &[]any{"One customer a row; Account Number and Customer Email are required."})
		_, _ = f.NewSheet("Export Summary")
		_ = f.SetSheetRow("Export Summary", "A1", &[]any{"Exported", "2024-01-02"})
		_, _ = f.NewSheet("Lookups")
		_ = f.SetSheetRow("Lookups", "A1", &[]any{"Account Number", "Customer Email"}) // hidden: never read
		_ = f.SetSheetRow("Lookups", "A2", &[]any{"9", "hidden@example.com"})
		_ = f.SetSheetVisible("Lookups", false)
		_, _ = f.NewSheet("Customers")
		_ = f.SetSheetRow("Customers", "A1", &[]any{"Account Number", "Customer Email"})
		_ = f.SetSheetRow("Customers", "A2", &[]any{"1", "a@example.com"})
	})
	rows, err := readXLSX(t, data, XLSXOptions{})
	if err != nil || len(rows) != 1 || rows[0].Email != "a@example.com" || rows[0].Number != 2 {
		t.Fatalf("cover sheets first: %+v %v", rows, err)
	}
	// A named sheet is read as it always was, header or not.
	_, err = readXLSX(t, data, XLSXOptions{Sheet: "Instructions"})
	if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), `missing required column`) || !strings.Contains(err.Error(), `read sheet "Instructions"; the workbook also has "Export Summary", "Lookups", "Customers"`) {
		t.Fatalf("named cover sheet: %v", err)
	}
	// No visible sheet has a header: the first one's error, as before.
	data = workbook(t, func(f *excelize.File) {
		_ = f.SetSheetName("Sheet1", "Instructions")
		_ = f.SetSheetRow("Instructions", "A1", &[]any{"How to fill in this file"})
		_, _ = f.NewSheet("Customers")
		_ = f.SetSheetRow("Customers", "A1", &[]any{"Account", "Name"})
	})
	_, err = readXLSX(t, data, XLSXOptions{})
	if !errors.Is(err, ErrFile) || !strings.Contains(err.Error(), `missing required column "Account Number" and "Customer Email"`) || !strings.Contains(err.Error(), `read sheet "Instructions"; the workbook also has "Customers"`) {
		t.Fatalf("no header anywhere: %v", err)
	}
}
