// Package importer reads the customer files vendors upload, as people make
// them: CSV in the encodings and dialects spreadsheet programs write, with
// the columns found by name. It streams: one row at a time, whatever the
// size of the file. It also owns the per-row rules and their messages.
package importer

import (
	"archive/zip"
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/onboard-dev/onboard/internal/csvsafe"
	"github.com/onboard-dev/onboard/internal/emailaddr"
)

// The columns of the template, also the field names of row errors.
const (
	ColAccountNumber = "Account Number"
	ColEmail         = "Customer Email"
	ColFirstName     = "Customer First Name"
	ColLastName      = "Customer Last Name"
)

// TemplateHeader is the header of the downloadable template, and the column
// order of every file onboard writes back (error logs, failed rows).
var TemplateHeader = []string{ColAccountNumber, ColEmail, ColFirstName, ColLastName}

// TemplateCSV is the downloadable template: the header and one example row.
func TemplateCSV() []byte {
	return []byte(strings.Join(TemplateHeader, ",") + "\r\n100234,jane.doe@example.com,Jane,Doe\r\n")
}

// The row messages of the product, word for word.
const (
	MsgEmailEmpty   = "Customer Email field must not be empty"
	MsgEmailInvalid = "Customer Email must be valid"
	MsgAccountEmpty = "Account Number field must not be empty"
	MsgEmailInUse   = "Provided email address is already in use"
)

// The row messages onboard adds for what the product's four do not cover.
const (
	MsgAccountBlacklisted = "Account Number belongs to a blacklisted customer"
	MsgAccountInactive    = "Account Number belongs to an inactive customer"
	MsgAccountInvited     = "Account Number belongs to a customer who is already invited"
	MsgAccountRepeated    = "Account Number appears on an earlier row of this file"
	MsgAccountNotInERP    = "Account Number was not found in the ERP"
)

// Longest values accepted, as in the API: longer ones are not what anyone
// meant, and the account number is part of a database key.
const (
	MaxAccountLen = 64
	MaxNameLen    = 100
)

// MaxValueRunes is where a cell's value is cut off when the row is read. A
// longer value fails its row anyway (every limit above is shorter, and so is
// an email address's 254), but kept whole, a quoted CSV field spanning
// thousands of lines, or a crafted workbook cell, would be stored in the
// error log and sent back in every download and attachment.
const MaxValueRunes = 1000

// FieldError is one problem of one row.
type FieldError struct {
	Field   string // a template column, or "" for the row as a whole
	Message string
}

// Row is one data row of the file.
type Row struct {
	// Number is the row as a spreadsheet shows it: the header is row 1.
	Number int

	AccountNumber string
	Email         string
	FirstName     string
	LastName      string

	// Err is a problem with the row's shape (a ragged row); the row is still
	// returned so that it is logged, never silently dropped.
	Err *FieldError

	// cellErrs are problems of a field's cell in a workbook, by template
	// column (a formula's error value, a date, an account number that lost
	// digits as a number): such a field is not judged by its value too.
	cellErrs [4]string
}

// set sets the field of a template column.
func (r *Row) set(col, v string) {
	switch col {
	case ColAccountNumber:
		r.AccountNumber = v
	case ColEmail:
		r.Email = v
	case ColFirstName:
		r.FirstName = v
	case ColLastName:
		r.LastName = v
	}
}

// Values are the row's values in template column order.
func (r Row) Values() []string {
	return []string{r.AccountNumber, r.Email, r.FirstName, r.LastName}
}

// Validate applies the rules that need nothing but the row itself. The
// caller adds MsgEmailInUse, which needs the database and the earlier rows.
func Validate(r Row) []FieldError {
	var errs []FieldError
	if r.Err != nil {
		errs = append(errs, *r.Err)
	}
	for i, m := range r.cellErrs {
		if m != "" {
			errs = append(errs, FieldError{TemplateHeader[i], m})
		}
	}
	switch {
	case r.cellErrs[0] != "":
	case r.AccountNumber == "":
		errs = append(errs, FieldError{ColAccountNumber, MsgAccountEmpty})
	case utf8.RuneCountInString(r.AccountNumber) > MaxAccountLen:
		errs = append(errs, FieldError{ColAccountNumber, fmt.Sprintf("Account Number must be at most %d characters", MaxAccountLen)})
	}
	switch {
	case r.cellErrs[1] != "":
	case r.Email == "":
		errs = append(errs, FieldError{ColEmail, MsgEmailEmpty})
	case emailaddr.Validate(r.Email) != nil:
		errs = append(errs, FieldError{ColEmail, MsgEmailInvalid})
	}
	for i, f := range [...]struct{ col, v string }{{ColFirstName, r.FirstName}, {ColLastName, r.LastName}} {
		if r.cellErrs[2+i] == "" && utf8.RuneCountInString(f.v) > MaxNameLen {
			errs = append(errs, FieldError{f.col, fmt.Sprintf("%s must be at most %d characters", f.col, MaxNameLen)})
		}
	}
	return errs
}

// Reader streams the data rows of a file: io.EOF after the last one.
type Reader interface {
	Next() (Row, error)
	Close() error
}

// Open tells the file's format from its first bytes and opens a reader of
// its rows.
func Open(src io.Reader, o XLSXOptions) (Reader, Format, error) {
	br := bufio.NewReader(src)
	head, err := br.Peek(8)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", fmt.Errorf("read the file: %w", err)
	}
	format, err := Detect(head)
	if err != nil {
		return nil, format, err
	}
	if format == FormatXLSX {
		r, err := OpenXLSX(br, o)
		if err != nil {
			return nil, format, err
		}
		return r, format, nil
	}
	r, err := OpenCSV(br)
	if err != nil {
		return nil, format, err
	}
	return r, format, nil
}

// Sniff tells the format of an upload on disk, for its history: CSV, XLSX,
// or "" for a file that is neither (a legacy .xls, an OpenDocument file, a
// zip of other files, a PDF or another binary file, HTML or XML), whose
// import fails
// saying which. It reads what Open would, and no more than a zip's
// directory.
func Sniff(r io.ReaderAt, size int64) Format {
	head := make([]byte, min(size, sniffSize))
	n, _ := r.ReadAt(head, 0)
	head = head[:n]
	format, err := Detect(head)
	switch {
	case err != nil:
		return ""
	case format == FormatXLSX:
		z, err := zip.NewReader(r, size)
		if err != nil || checkZipIsWorkbook(z) != nil {
			return ""
		}
	case binaryHead(head), markupHead(head):
		return ""
	}
	return format
}

// ErrFile marks a problem with the file as a whole: the import fails with
// its message and no row is processed.
var ErrFile = errors.New("the file cannot be imported")

func fileError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFile, fmt.Sprintf(format, args...))
}

// aliases maps a header, folded (see fold), to its column.
var aliases = func() map[string]string {
	m := map[string]string{}
	for col, names := range map[string][]string{
		ColAccountNumber: {"Account Number", "Account #", "Account No", "Account No.", "Acct #", "Acct No", "account_number", "AccountNumber", "Account", "Customer Account Number", "Customer Account", "ERP Account", "Account ID"},
		ColEmail:         {"Customer Email", "Email", "E-mail", "Email Address", "E-mail Address", "customer_email", "Contact Email", "Customer E-mail"},
		ColFirstName:     {"Customer First Name", "First Name", "firstname", "first_name", "Given Name", "Contact First Name"},
		ColLastName:      {"Customer Last Name", "Last Name", "lastname", "last_name", "Surname", "Family Name", "Contact Last Name"},
	} {
		for _, n := range names {
			m[fold(n)] = col
		}
	}
	return m
}()

// fold makes headers comparable: case, spaces, line breaks (a header
// wrapped in its cell), underscores, hyphens, dots and the asterisk that
// marks a required column do not matter, nor do "(required)",
// "(optional)" and "(mandatory)" at the end; "#" reads as "number". Other
// remarks in parentheses make another column ("Email (home)" is not the
// email).
func fold(h string) string {
	h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
	for _, remark := range []string{"(required)", "(optional)", "(mandatory)"} {
		h = strings.TrimSuffix(h, remark)
	}
	h = strings.ReplaceAll(h, "#", "number")
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n', '_', '-', '.', '*', '\u00a0':
			return -1
		}
		return r
	}, h)
}

// columns maps a header row to the index of each known column.
type columns struct {
	index   map[string]int
	nHeader int
}

// nameOf is the template column of field i, or "" for another column.
func (c columns) nameOf(i int) string {
	for col, j := range c.index {
		if j == i {
			return col
		}
	}
	return ""
}

func mapHeader(header []string) (columns, error) {
	// Empty names at the end of the header (a trailing delimiter, a column
	// once formatted) are not columns: a row need not reach them.
	n := len(header)
	for n > 0 && strings.TrimSpace(strings.TrimPrefix(header[n-1], "\ufeff")) == "" {
		n--
	}
	c := columns{index: map[string]int{}, nHeader: n}
	for i, h := range header {
		col, ok := aliases[fold(h)]
		if !ok {
			continue // unknown columns are ignored
		}
		if j, dup := c.index[col]; dup {
			return c, fileError("columns %d and %d are both %q", j+1, i+1, col)
		}
		c.index[col] = i
	}
	var missing []string
	for _, col := range []string{ColAccountNumber, ColEmail} {
		if _, ok := c.index[col]; !ok {
			missing = append(missing, fmt.Sprintf("%q", col))
		}
	}
	if len(missing) > 0 {
		return c, fileError("missing required column %s (the first row must be the header: %s)", strings.Join(missing, " and "), strings.Join(TemplateHeader, ", "))
	}
	return c, nil
}

// trimBlank drops what surrounds a value without being part of it: spaces,
// including no-break ones, and the zero-width characters that text copied
// from web pages and emails carries along.
func trimBlank(v string) string {
	return strings.TrimFunc(v, func(r rune) bool {
		return unicode.IsSpace(r) || r == '\u200b' || r == '\u200c' || r == '\u200d' || r == '\u2060' || r == '\ufeff'
	})
}

// clip cuts v to MaxValueRunes, marking the cut with "…".
func clip(v string) string {
	if len(v) <= MaxValueRunes {
		return v
	}
	n := 0
	for i := range v {
		if n == MaxValueRunes {
			return v[:i] + "…"
		}
		n++
	}
	return v
}

// row builds a Row from a record.
func (c columns) row(number int, rec []string) Row {
	r := Row{Number: number}
	get := func(col string) string {
		i, ok := c.index[col]
		if !ok || i >= len(rec) {
			return ""
		}
		// A file onboard wrote (failed rows sent back to be fixed) has
		// formula-like cells quoted; they read back as they went out.
		return clip(trimBlank(csvsafe.Uncell(rec[i])))
	}
	r.AccountNumber, r.Email = get(ColAccountNumber), get(ColEmail)
	r.FirstName, r.LastName = get(ColFirstName), get(ColLastName)
	// A row with fewer fields than the header has its last cells empty:
	// Excel writes no delimiters for empty cells at the end of a row after
	// the first few rows of a CSV. One with more, not empty, has cells
	// that belong to no column: its values may be in the wrong columns.
	for i := c.nHeader; i < len(rec); i++ {
		if strings.TrimSpace(rec[i]) != "" {
			r.Err = &FieldError{Message: fmt.Sprintf("the row has %d fields; the header has %d", len(rec), c.nHeader)}
			break
		}
	}
	return r
}
