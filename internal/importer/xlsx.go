package importer

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
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
		// An OLE2 file is a legacy .xls, or an .xlsx encrypted with a password.
		return "", fileError("legacy .xls workbooks and password-protected workbooks are not supported; save the file as .xlsx without a password, or as .csv")
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
		if isOpenDocument(tmp.Name()) {
			return nil, fileError("OpenDocument spreadsheets (.ods) are not supported; save the file as .xlsx or .csv")
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

// plainNumber writes a number as Excel shows it in a General cell:
// 145722, not the 145722.0, 1.45722E+05 or 145722.00000000001 that programs
// store. excelize's streaming reader does not say whether a cell holds a
// number or text, so only the forms programs store numbers in are rewritten:
// a fraction of a single zero, an exponent with a decimal mantissa or a sign,
// or more significant digits than Excel keeps (15). Text that merely looks
// numeric keeps what was typed: "4711.10", "0012.5" and "12E4" are account
// numbers, not quantities.
func plainNumber(v string) string {
	if v == "" || !strings.ContainsAny(v, ".eE") || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return v // the common cases, text and integers, without the regexp
	}
	m := numberForm.FindStringSubmatch(v)
	if m == nil {
		return v
	}
	intPart, frac, exp := m[1], m[2], m[3]
	if len(intPart) > 1 && intPart[0] == '0' {
		return v // leading zeros: typed text
	}
	switch {
	case exp != "":
		if frac == "" && !strings.ContainsAny(exp, "+-") {
			return v
		}
	case frac == ".0":
	case len(strings.TrimLeft(intPart+frac[min(1, len(frac)):], "0")) > 15:
	default:
		return v
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return v
	}
	// Excel keeps 15 significant digits; the rest is binary noise.
	f, _ = strconv.ParseFloat(strconv.FormatFloat(f, 'g', 15, 64), 64)
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// isOpenDocument tells an OpenDocument file (also a zip) by the mimetype
// entry the format puts first.
func isOpenDocument(path string) bool {
	z, err := zip.OpenReader(path)
	if err != nil {
		return false
	}
	defer z.Close()
	for _, f := range z.File {
		if f.Name != "mimetype" {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return false
		}
		defer rc.Close()
		head := make([]byte, 64)
		n, _ := io.ReadFull(rc, head)
		return bytes.HasPrefix(head[:n], []byte("application/vnd.oasis.opendocument"))
	}
	return false
}

// numberForm is a stored number: integer part, fraction, exponent.
var numberForm = regexp.MustCompile(`^-?([0-9]+)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)
