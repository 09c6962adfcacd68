// Package csvsafe writes CSV that spreadsheet programs open without running
// anything: a cell that starts like a formula is prefixed with a quote, as
// OWASP recommends against CSV injection. Every CSV onboard writes (error
// logs, email attachments, the pending list) goes through it, and the
// importer reads uploads through Uncell, so those files can come back.
package csvsafe

import (
	"encoding/csv"
	"io"
)

// Cell neutralises one value: a leading =, +, -, @, tab or CR gets a '
// in front, so Excel, LibreOffice and Google Sheets show it as text.
func Cell(s string) string {
	if s == "" {
		return s
	}
	if guarded(s) || (s[0] == '\'' && guarded(s[1:])) {
		// The second case keeps a value that already starts with the quote
		// apart from a guarded one, so that Uncell gives it back whole.
		return "'" + s
	}
	return s
}

func guarded(s string) bool {
	if s == "" {
		return false
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

// Uncell undoes Cell: a file onboard wrote (the failed rows, to be fixed
// and uploaded again) reads back as the values that went in. A quote is
// dropped only before a character Cell would have guarded; "'quoted'" and
// "O'Neil" keep theirs.
func Uncell(s string) string {
	if len(s) > 1 && s[0] == '\'' && (guarded(s[1:]) || (s[1] == '\'' && guarded(s[2:]))) {
		return s[1:]
	}
	return s
}

// Writer is a csv.Writer that neutralises every cell.
type Writer struct {
	w   *csv.Writer
	buf []string
}

// NewWriter writes CSV to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: csv.NewWriter(w)} }

// Write writes one record.
func (w *Writer) Write(record []string) error {
	w.buf = w.buf[:0]
	for _, c := range record {
		w.buf = append(w.buf, Cell(c))
	}
	return w.w.Write(w.buf)
}

// Flush writes buffered data and returns any error of the writes so far.
func (w *Writer) Flush() error {
	w.w.Flush()
	return w.w.Error()
}
