package importer

import (
	"archive/zip"
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// What excelize holds in memory of a workbook, besides the sheet being read.
// It streams a worksheet or the shared strings from a temporary file only
// when the part is larger than UnzipXMLSizeLimit; every other part (styles,
// the workbook, relationships, themes, images) it reads whole into memory,
// and the XML parts it needs it parses into structs of a few hundred bytes
// an element. UnzipSizeLimit bounds only the bytes inflated, so a workbook
// of under 1 MB (50 MB of empty <xf/> styles) could take the worker to
// gigabytes; these limits stop it before excelize opens it. The shared
// strings excelize would index in memory at about 41 bytes a string; they
// are written into the cells before it opens the workbook
// (inlineSharedStrings), except in the rare workbook the rewrite leaves as
// it is, for which MaxIndexedSharedStrings holds.
const (
	// MaxHeldBytes caps the decompressed parts excelize keeps in memory.
	MaxHeldBytes = 64 << 20
	// MaxParsedElements caps the XML elements of the parts excelize parses
	// whole (styles, workbook, relationships): Excel itself allows 64,000
	// cell formats, and a workbook with that many has about 200,000.
	MaxParsedElements = 300_000
	// MaxSharedStrings caps the shared strings table: sixteen distinct
	// texts a row on every row Excel allows (1,048,576). The table is read
	// from a temporary file; this bounds that file's index (128 MiB) and
	// the time spent on it.
	MaxSharedStrings = 16 << 20
	// MaxIndexedSharedStrings caps a table that excelize indexes in memory
	// itself (a workbook the rewrite leaves as it is): four text cells a
	// row on every row, about 170 MiB of index.
	MaxIndexedSharedStrings = 4 << 20
)

// checkParts refuses a workbook whose parts would take excelize's memory
// beyond the limits above, reading the zip directory and scanning the XML
// parts excelize would hold; it leaves anything it cannot read to excelize
// to report. It returns how many shared strings the workbook has.
func checkParts(path string, o XLSXOptions) (sharedStrings int, err error) {
	z, err := zip.OpenReader(path)
	if err != nil {
		return 0, nil
	}
	defer z.Close()
	if err := checkZipIsWorkbook(&z.Reader); err != nil {
		return 0, err
	}
	var total, held uint64
	for _, f := range z.File {
		total += f.UncompressedSize64
	}
	if total > uint64(o.UnzipSizeLimit) {
		return 0, fileError("the workbook is larger than %d MiB when decompressed", o.UnzipSizeLimit>>20)
	}
	elements := 0
	for _, f := range z.File {
		if f.FileInfo().IsDir() {
			continue
		}
		// excelize's own normalisation of part names.
		name := strings.ToLower(strings.ReplaceAll(f.Name, "\\", "/"))
		sheet := strings.HasPrefix(name, "xl/worksheets/sheet")
		table := name == "xl/sharedstrings.xml"
		if !(sheet || table) || f.UncompressedSize64 <= uint64(o.UnzipXMLSizeLimit) {
			held += f.UncompressedSize64
		}
		switch {
		case sheet:
			// Streamed by Rows() token by token, never parsed whole.
		case table:
			n, err := countTags(f, func(name []byte) bool { return bytes.Equal(localName(name), []byte("si")) }, MaxSharedStrings)
			if err != nil {
				return 0, fileError("the workbook's shared strings cannot be read (%v); save it again as .xlsx or .csv", err)
			}
			sharedStrings = n
			if n > MaxSharedStrings {
				return 0, fileError("the workbook has more than %d shared strings (text cells); split it into smaller files", MaxSharedStrings)
			}
		case parsedWhole(name):
			n, err := countTags(f, func([]byte) bool { return true }, MaxParsedElements-elements)
			if err != nil {
				return 0, fileError("the workbook's part %s cannot be read (%v); save it again as .xlsx or .csv", f.Name, err)
			}
			if elements += n; elements > MaxParsedElements {
				return 0, fileError("the workbook's styles and settings have more than %d XML elements (%s among them); copy the rows into a new workbook, or save them as .csv", MaxParsedElements, f.Name)
			}
		}
	}
	if held > MaxHeldBytes {
		return 0, fileError("the workbook's parts besides its sheets take %d MiB decompressed, at most %d (embedded images or other content?); copy the rows into a new workbook, or save them as .csv", held>>20, MaxHeldBytes>>20)
	}
	return sharedStrings, nil
}

// parsedWhole tells the parts excelize parses into structs when it opens a
// workbook and reads its styles; the rest (drawings, themes, charts) it only
// holds as bytes, counted by size.
func parsedWhole(name string) bool {
	switch name {
	case "[content_types].xml", "xl/workbook.xml", "xl/styles.xml":
		return true
	}
	return strings.HasSuffix(name, ".rels")
}

// countTags counts the start tags of a part for which match says yes,
// stopping once the count passes limit.
func countTags(f *zip.File, match func(name []byte) bool, limit int) (int, error) {
	rc, err := f.Open()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64<<10)
	n := 0
	for n <= limit {
		if _, err := br.ReadSlice('<'); err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		head, _ := br.Peek(64)
		if len(head) == 0 || head[0] == '/' || head[0] == '?' || head[0] == '!' {
			continue
		}
		end := bytes.IndexAny(head, " \t\r\n/>")
		if end >= 0 {
			head = head[:end]
		}
		// A name longer than the look-ahead is counted whatever it is: this
		// counts toward limits, and x:si with a long enough prefix x is a
		// shared string all the same.
		if end < 0 || match(head) {
			n++
		}
	}
	return n, nil
}

// localName is an XML name without its namespace prefix (x:si is si).
func localName(name []byte) []byte {
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		return name[i+1:]
	}
	return name
}
