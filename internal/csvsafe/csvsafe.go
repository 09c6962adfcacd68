// Package csvsafe writes CSV that spreadsheet programs open without running
// anything: a cell that starts like a formula is prefixed with a quote, as
// OWASP recommends against CSV injection. Every CSV onboard writes (error
// logs, email attachments, the pending list) goes through it.
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
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
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
