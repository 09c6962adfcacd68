package importer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/xuri/excelize/v2"
)

// Format is the kind of an upload, told from its content.
type Format string

const (
	FormatCSV  Format = "csv"
	FormatXLSX Format = "xlsx"
)

// Detect tells CSV from XLSX by the first bytes of the file, never by its
// name: a zip is a workbook, an OLE2 compound file is a legacy .xls, anything
// else is read as CSV text.
func Detect(head []byte) (Format, error) {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return FormatXLSX, nil
	case bytes.HasPrefix(head, []byte{0xD0, 0xCF, 0x11, 0xE0}):
		return "", fileError("legacy .xls workbooks are not supported; save the file as .xlsx or .csv")
	}
	return FormatCSV, nil
}

// XLSXOptions bound what a workbook may cost to open.
type XLSXOptions struct {
	Sheet string // the sheet to read; the first sheet when empty
	// UnzipSizeLimit caps the whole workbook decompressed, so a zip bomb
	// fails the import instead of the worker.
	UnzipSizeLimit int64
	// UnzipXMLSizeLimit caps a worksheet held in memory; larger ones are
	// streamed from a temporary file by excelize.
	UnzipXMLSizeLimit int64
	TempDir           string
}

// Defaults of XLSXOptions.
const (
	DefaultUnzipSizeLimit    = 512 << 20
	DefaultUnzipXMLSizeLimit = 16 << 20
)

// XLSXReader streams the rows of one sheet with excelize's Rows iterator.
type XLSXReader struct {
	f    *excelize.File
	rows *excelize.Rows
	cols columns
	n    int
}

// OpenXLSX reads a workbook upload. excelize needs random access, so the
// stream is spooled to a temporary file first; the file is removed once the
// workbook is open.
func OpenXLSX(src io.Reader, o XLSXOptions) (*XLSXReader, error) {
	if o.UnzipSizeLimit <= 0 {
		o.UnzipSizeLimit = DefaultUnzipSizeLimit
	}
	if o.UnzipXMLSizeLimit <= 0 {
		o.UnzipXMLSizeLimit = min(DefaultUnzipXMLSizeLimit, o.UnzipSizeLimit)
	}
	tmp, err := os.CreateTemp(o.TempDir, "onboard-upload-*.xlsx")
	if err != nil {
		return nil, fmt.Errorf("spool workbook: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("spool workbook: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("spool workbook: %w", err)
	}
	f, err := excelize.OpenFile(tmp.Name(), excelize.Options{
		RawCellValue: true, UnzipSizeLimit: o.UnzipSizeLimit, UnzipXMLSizeLimit: o.UnzipXMLSizeLimit, TmpDir: o.TempDir,
	})
	if err != nil {
		if strings.Contains(err.Error(), "unzip size exceeds") {
			return nil, fileError("the workbook is larger than %d MiB when decompressed", o.UnzipSizeLimit>>20)
		}
		return nil, fileError("the workbook cannot be read (%v); save it again as .xlsx or .csv", err)
	}
	r := &XLSXReader{f: f}
	sheet := o.Sheet
	if sheet == "" {
		if list := f.GetSheetList(); len(list) > 0 {
			sheet = list[0]
		}
	}
	if idx, err := f.GetSheetIndex(sheet); err != nil || idx < 0 {
		f.Close()
		return nil, fileError("the workbook has no sheet named %q (it has: %s)", sheet, strings.Join(f.GetSheetList(), ", "))
	}
	if r.rows, err = f.Rows(sheet); err != nil {
		f.Close()
		return nil, fileError("cannot read sheet %q: %v", sheet, err)
	}
	header, err := r.nextRecord()
	if err != nil {
		r.Close()
		if errors.Is(err, io.EOF) {
			return nil, fileError("the file is empty")
		}
		return nil, err
	}
	if r.cols, err = mapHeader(header); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// nextRecord returns the next non-blank row's cells (leading blank rows
// before the header are skipped too).
func (r *XLSXReader) nextRecord() ([]string, error) {
	for r.rows.Next() {
		r.n++
		rec, err := r.rows.Columns(excelize.Options{RawCellValue: true})
		if err != nil {
			return nil, fileError("row %d: %v", r.n, err)
		}
		if blank(rec) {
			continue
		}
		for i, v := range rec {
			rec[i] = plainNumber(v)
		}
		return rec, nil
	}
	if err := r.rows.Error(); err != nil {
		return nil, fileError("the workbook cannot be read: %v", err)
	}
	return nil, io.EOF
}

// Next returns the next row, io.EOF at the end.
func (r *XLSXReader) Next() (Row, error) {
	rec, err := r.nextRecord()
	if err != nil {
		return Row{}, err
	}
	// A worksheet has no ragged rows: the empty cells at the end of a row
	// are simply not stored.
	for len(rec) < r.cols.nHeader {
		rec = append(rec, "")
	}
	return r.cols.row(r.n, rec), nil
}

// Close releases the workbook and its temporary files.
func (r *XLSXReader) Close() error {
	var err error
	if r.rows != nil {
		err = r.rows.Close()
	}
	return errors.Join(err, r.f.Close())
}

// plainNumber writes a raw numeric cell the way Excel shows an integer in a
// General cell (145722, not 145722.0 or 1.45722E+05). Only values with a
// decimal point or an exponent are touched: plain digits, such as a text
// cell "00123", are kept exactly as stored.
func plainNumber(v string) string {
	if v == "" || !strings.ContainsAny(v, ".eE") || strings.IndexFunc(v, func(r rune) bool { return !strings.ContainsRune("0123456789.eE+-", r) }) >= 0 {
		return v
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return v
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}
