package importer

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
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
	// UnzipXMLSizeLimit caps a worksheet or shared strings table held in
	// memory; larger ones excelize streams from a temporary file.
	UnzipXMLSizeLimit int64
	TempDir           string

	// keepSharedStrings leaves the shared strings table to excelize (see
	// inlineSharedStrings); tests compare the two readings.
	keepSharedStrings bool
}

// Defaults of XLSXOptions.
const (
	DefaultUnzipSizeLimit = 512 << 20
	// 1 MiB, not excelize's 16: a shared strings table held in memory is
	// parsed into about 260 bytes a string, one streamed from a temporary
	// file is indexed in about 41 (measured with excelize 2.11).
	DefaultUnzipXMLSizeLimit = 1 << 20
)

// XLSXReader streams the rows of one sheet with excelize's Rows iterator,
// and the types of its cells beside it (cellTypes).
type XLSXReader struct {
	f     *excelize.File
	sheet string
	rows  *excelize.Rows
	cols  columns
	n     int

	// upload is the spooled upload, kept open (and on disk) while the
	// sheet is read: cellTypes reads the sheet's XML from it.
	upload     *os.File
	parts      []namedPart // the upload's worksheets, by name
	dates      []bool      // by style: a date or time format (dateStyles)
	date1904   bool
	types      *cellTypes
	typed      []typedCell // the current row's cells with a value
	typesKnown bool        // typed holds what the current row's cells are
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
	keepUpload := false // until the reader's Close
	defer func() {
		if !keepUpload {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("spool workbook: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("spool workbook: %w", err)
	}
	sharedStrings, err := checkParts(tmp.Name(), o)
	if err != nil {
		return nil, err
	}
	workbook := tmp.Name()
	if !o.keepSharedStrings {
		inlined, err := inlineSharedStrings(workbook, o)
		if err != nil {
			return nil, err
		}
		if inlined != "" {
			defer os.Remove(inlined) // excelize has read what it needs once open
			workbook = inlined
		}
	}
	if workbook == tmp.Name() && sharedStrings > MaxIndexedSharedStrings {
		return nil, fileError("the workbook has more than %d shared strings (text cells) in a form onboard cannot stream; save it again as .xlsx, or split it into smaller files", MaxIndexedSharedStrings)
	}
	f, err := excelize.OpenFile(workbook, excelize.Options{
		UnzipSizeLimit: o.UnzipSizeLimit, UnzipXMLSizeLimit: o.UnzipXMLSizeLimit, TmpDir: o.TempDir,
	})
	if err != nil {
		if strings.Contains(err.Error(), "unzip size exceeds") {
			return nil, fileError("the workbook is larger than %d MiB when decompressed", o.UnzipSizeLimit>>20)
		}
		return nil, fileError("the workbook cannot be read (%v); save it again as .xlsx or .csv", err)
	}
	r := &XLSXReader{f: f}
	dates, err := showOnlyZeroPadding(f)
	if err != nil {
		f.Close()
		return nil, fileError("the workbook's styles cannot be read (%v); save it again as .xlsx or .csv", err)
	}
	r.dates = dates
	if props, err := f.GetWorkbookProps(); err == nil && props.Date1904 != nil {
		r.date1904 = *props.Date1904
	}
	if err := r.openUpload(tmp.Name()); err != nil {
		f.Close()
		return nil, err
	}
	keepUpload = true
	if o.Sheet != "" {
		err = r.openSheet(o.Sheet)
	} else {
		err = r.openFirstSheet()
	}
	if err != nil {
		r.Close()
		if others := r.otherSheets(); errors.Is(err, errNoHeader) && len(others) > 0 {
			return nil, fmt.Errorf("%w (read sheet %q; the workbook also has %s: name the sheet to read with the sheet field)", err, r.sheet, strings.Join(others, ", "))
		}
		return nil, err
	}
	return r, nil
}

// openUpload keeps the spooled upload open for cellTypes, and finds its
// worksheets. A workbook whose sheets cannot be found this way is read
// without its cells' types.
func (r *XLSXReader) openUpload(name string) error {
	upload, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("open spooled workbook: %w", err)
	}
	r.upload = upload
	info, err := upload.Stat()
	if err != nil {
		return nil
	}
	z, err := zip.NewReader(upload, info.Size())
	if err != nil {
		return nil
	}
	parts := map[string]*zip.File{}
	for _, f := range z.File {
		parts[partName(f.Name)] = f
	}
	r.parts, _ = namedWorksheetParts(parts)
	return nil
}

// sheetPart is the part excelize reads for a sheet (getSheetXMLPath: the
// name in any case), or nil when it is not one alone.
func (r *XLSXReader) sheetPart(sheet string) *zip.File {
	var found *zip.File
	for _, p := range r.parts {
		if strings.EqualFold(p.name, sheet) {
			if found != nil && found != p.part {
				return nil
			}
			found = p.part
		}
	}
	return found
}

// errNoHeader marks the error of a sheet whose first row is not a header
// (mapHeader's), whose message names the workbook's other sheets.
var errNoHeader = errors.New("no header")

type noHeaderError struct{ err error }

func (e noHeaderError) Error() string   { return e.err.Error() }
func (e noHeaderError) Unwrap() []error { return []error{e.err, errNoHeader} }

// openSheet starts reading the named sheet, past its header.
func (r *XLSXReader) openSheet(name string) error {
	idx, err := r.f.GetSheetIndex(name)
	if err != nil || idx < 0 {
		return fileError("the workbook has no sheet named %q (it has: %s)", name, strings.Join(r.f.GetSheetList(), ", "))
	}
	if err := r.startRows(r.f.GetSheetName(idx)); err != nil {
		return err
	}
	header, err := r.nextRecord()
	if errors.Is(err, io.EOF) {
		return fileError("sheet %q is empty", r.sheet)
	}
	if err != nil {
		return err
	}
	if r.cols, err = mapHeader(header); err != nil {
		return noHeaderError{err}
	}
	return nil
}

// openFirstSheet starts reading the first sheet the user can see whose
// first row is a header, past that row. Hidden sheets are where workbooks
// keep lists for drop-downs and lookups; an empty "Sheet1" left before the
// data is as common, and so is a cover sheet ("Instructions", "Export
// Summary") before it. When no sheet has a header, the error is the first
// sheet's with anything in it.
func (r *XLSXReader) openFirstSheet() error {
	var firstErr error
	first := ""
	for _, name := range r.f.GetSheetList() {
		if visible, err := r.f.GetSheetVisible(name); err != nil || !visible {
			continue
		}
		if err := r.startRows(name); err != nil {
			return err
		}
		header, err := r.nextRecord()
		if errors.Is(err, io.EOF) {
			continue
		}
		if err != nil {
			return err
		}
		cols, err := mapHeader(header)
		if err == nil {
			r.cols = cols
			return nil
		}
		if firstErr == nil {
			firstErr, first = err, name
		}
	}
	if firstErr == nil {
		return fileError("the file is empty")
	}
	r.sheet = first
	return noHeaderError{firstErr}
}

func (r *XLSXReader) startRows(sheet string) error {
	if r.rows != nil {
		if err := r.rows.Close(); err != nil {
			return fmt.Errorf("close sheet %q: %w", r.sheet, err)
		}
	}
	r.types.close()
	r.types = openCellTypes(r.sheetPart(sheet), r.dates)
	r.sheet, r.n = sheet, 0
	var err error
	if r.rows, err = r.f.Rows(sheet); err != nil {
		r.rows = nil
		return fileError("cannot read sheet %q: %v", sheet, err)
	}
	return nil
}

// otherSheets lists the workbook's sheets but the one read, quoted.
func (r *XLSXReader) otherSheets() []string {
	var others []string
	for _, name := range r.f.GetSheetList() {
		if name != r.sheet {
			others = append(others, strconv.Quote(name))
		}
	}
	return others
}

// showOnlyZeroPadding makes excelize give every cell its stored value, except
// that a number whose format pads it with zeros reads as shown: account
// numbers are often numbers formatted "000000" so that 123 shows as 000123,
// and 000123 is the account. Other formats would change the value ("#,##0"
// gives 145,722, a styled General cell 1.45722E+05, a date format a date),
// so they are switched off here: excelize's own formatting is applied only
// to the styles left with a format it knows.
//
// Numbers then read as Excel shows them in a General cell (145722, not the
// 145722.0 or 1.45722E+05 that programs store), as excelize formats numbers
// of unstyled cells; text cells keep what was typed ("4711.10", "00123").
//
// It returns which styles had a date or time format (dateStyles), which a
// number read as its serial here is.
func showOnlyZeroPadding(f *excelize.File) ([]bool, error) {
	// GetStyle loads the style sheet, which excelize then keeps in f.Styles:
	// the one place a cell format can be changed without writing the file.
	if _, err := f.GetStyle(0); err != nil && f.Styles == nil {
		return nil, err
	}
	if f.Styles == nil || f.Styles.CellXfs == nil {
		return nil, nil
	}
	dates := dateStyles(f)
	padding := map[int]bool{}
	if f.Styles.NumFmts != nil {
		for _, nf := range f.Styles.NumFmts.NumFmt {
			if nf != nil && zeroPadding(nf.FormatCode) {
				padding[nf.NumFmtID] = true
			}
		}
	}
	for i := range f.Styles.CellXfs.Xf {
		xf := &f.Styles.CellXfs.Xf[i]
		if xf.NumFmtID != nil && padding[*xf.NumFmtID] {
			continue
		}
		// An id that is neither built in nor defined: excelize returns
		// the cell's value as it does for an unstyled cell.
		noFormat := noNumFmt
		xf.NumFmtID = &noFormat
	}
	return dates, nil
}

// noNumFmt is a number format id no workbook defines (ids are not negative).
const noNumFmt = -1

// zeroPadding tells a number format that only pads an integer with zeros,
// "000000", from every other: the first section is zeros and nothing else.
func zeroPadding(code string) bool {
	section, _, _ := strings.Cut(code, ";")
	return section != "" && strings.Trim(section, "0") == ""
}

// nextRecord returns the next non-blank row's cells (leading blank rows
// before the header are skipped too).
func (r *XLSXReader) nextRecord() ([]string, error) {
	for r.rows.Next() {
		r.n++
		rec, err := r.rows.Columns()
		if err != nil {
			return nil, fileError("row %d: %v", r.n, err)
		}
		r.typed, r.typesKnown = r.types.row()
		if blank(rec) {
			continue
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
	// are simply not stored, and a cell right of the header's last column
	// (a note beside the row) is under no column, so it is ignored.
	for len(rec) < r.cols.nHeader {
		rec = append(rec, "")
	}
	rec = rec[:r.cols.nHeader]
	row := r.cols.row(r.n, rec)
	for field, col := range TemplateHeader {
		if i, ok := r.cols.index[col]; ok {
			r.checkCell(&row, field, col, rec[i], i+1)
		}
	}
	return row, nil
}

// checkCell fails a field whose cell is not what the column holds: a
// formula's error value, a date, or (as an account number) a number with
// more digits than a workbook number keeps. v is excelize's value of the
// cell, in column col (1 for A).
func (r *XLSXReader) checkCell(row *Row, field int, name, v string, col int) {
	cell, known := r.cellAt(col, v)
	switch {
	case known && cell == nil:
		return // text, a boolean, or nothing
	case known && cell.kind == kindUncalculated:
		row.cellErrs[field] = fmt.Sprintf("%s is a formula with no value saved in the file; open the file in Excel and save it again", name)
	case known && cell.kind == kindError:
		row.cellErrs[field] = formulaErrorMessage(name, v)
	case known && cell.kind == kindDate:
		if serial, err := strconv.ParseFloat(v, 64); err == nil {
			row.set(name, shownDate(serial, r.date1904))
		}
		row.cellErrs[field] = fmt.Sprintf("%s is a date in the file; format the column as text and enter it again", name)
	case known && name == ColAccountNumber && cell.roundedAccount():
		row.cellErrs[field] = MsgAccountRounded
	case known:
		return
	// The cell's type is unknown (see cellTypes): its value alone tells
	// what it may be, and text that looks like it is taken for it.
	case errorValues[trimBlank(v)]:
		row.cellErrs[field] = formulaErrorMessage(name, trimBlank(v))
	case name == ColAccountNumber && roundedNumber.MatchString(row.AccountNumber):
		row.cellErrs[field] = MsgAccountRounded
	}
}

// cellAt is the typed cell of the current row in column col, nil for a
// text cell; known is false when what it is cannot be told, or when the
// value read beside excelize is not excelize's (v), so the two may not
// name the same cell.
func (r *XLSXReader) cellAt(col int, v string) (cell *typedCell, known bool) {
	if !r.typesKnown {
		return nil, false
	}
	for i := range r.typed {
		if c := &r.typed[i]; c.col == col {
			switch c.kind {
			case kindUnknown:
				return nil, false
			case kindText:
				return nil, true
			}
			return c, c.agrees(v)
		}
	}
	return nil, true
}

func formulaErrorMessage(name, v string) string {
	if errorValues[v] {
		return fmt.Sprintf("%s is a formula error (%s) in the file", name, v)
	}
	return fmt.Sprintf("%s is a formula error in the file", name)
}

// MsgAccountRounded is the row error of an account number stored as a
// number with more digits than a workbook number keeps.
const MsgAccountRounded = "Account Number has more digits than a spreadsheet number keeps; format the column as text and enter the number again"

// roundedNumber is how excelize shows a number cell with more than 15
// significant digits (Excel keeps 15): rounded, in exponent form. It tells
// such a cell only where the cell's type cannot be read (cellTypes);
// elsewhere the type does, and text that looks like it ("1.5E+3") is text.
var roundedNumber = regexp.MustCompile(`^-?[0-9]\.[0-9]+E\+[0-9]+$`)

// Close releases the workbook and its temporary files.
func (r *XLSXReader) Close() error {
	var err error
	if r.rows != nil {
		err = r.rows.Close()
	}
	r.types.close()
	if r.upload != nil {
		r.upload.Close()
		os.Remove(r.upload.Name())
	}
	return errors.Join(err, r.f.Close())
}

// errOpenDocument fails an OpenDocument spreadsheet, which is a zip too.
var errOpenDocument = fileError("OpenDocument spreadsheets (.ods) are not supported; save the file as .xlsx or .csv")

// checkZipIsWorkbook fails a zip that holds no workbook: an OpenDocument
// file (told by the mimetype entry its format puts first), a Word or
// PowerPoint file, or an archive of other files (a CSV zipped to send it,
// say), which excelize would report as a workbook missing its parts.
func checkZipIsWorkbook(z *zip.Reader) error {
	for _, f := range z.File {
		if f.Name == "mimetype" && isOpenDocumentMimetype(f) {
			return errOpenDocument
		}
	}
	parts := map[string]*zip.File{}
	for _, f := range z.File {
		name := partName(f.Name)
		if strings.HasPrefix(strings.ToLower(name), "xl/") {
			return nil
		}
		parts[name] = f
	}
	// No xl/ folder: a workbook still, if the package's main part is one
	// (a Word or PowerPoint file's is a document or a presentation).
	rels, _ := readRels(parts["_rels/.rels"])
	for _, r := range rels {
		if (r.Type == officeDocumentRel || r.Type == strictOfficeDocumentRel) && strings.HasSuffix(strings.ToLower(r.Target), "workbook.xml") {
			return nil
		}
	}
	return fileError("the file is a zip archive or another Office document, not an XLSX workbook; upload the .xlsx or .csv file itself")
}

func isOpenDocumentMimetype(f *zip.File) bool {
	rc, err := f.Open()
	if err != nil {
		return false
	}
	defer rc.Close()
	head := make([]byte, 64)
	n, _ := io.ReadFull(rc, head)
	return bytes.HasPrefix(head[:n], []byte("application/vnd.oasis.opendocument"))
}
