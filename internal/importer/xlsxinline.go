package importer

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
)

// Excel, and most programs that write workbooks, keep every text cell as a
// number: its index in the shared strings table, xl/sharedStrings.xml.
// excelize resolves such a cell through an index of the whole table that it
// builds in memory, about 41 bytes a string, so a worker reading a workbook
// of a million rows held a quarter of a gigabyte for it (BENCHMARKS.md).
//
// inlineSharedStrings rewrites the workbook before excelize opens it: every
// worksheet's shared string cells become inline string cells holding the
// same text (the content of <si> and of <is> is the same XML type, so it is
// copied as it was, rich text runs included), and the table is left empty.
// excelize then reads each row's text from the row itself. The table is
// looked up from a temporary file through a small cache (sharedStrings), so
// the worker's memory does not grow with it.
//
// It returns the rewritten workbook's path, or "" when there is nothing to
// rewrite (the sheets' XML is then checked, as rewriting checks it) or the workbook is one the rewrite leaves to excelize as it is
// (parts in another encoding than UTF-8, a document type declaration, a
// worksheet that cannot be found): those read as they always did. A
// workbook whose inlined text would pass o.UnzipSizeLimit fails as a zip
// bomb would.
func inlineSharedStrings(src string, o XLSXOptions) (string, error) {
	z, err := zip.OpenReader(src)
	if err != nil {
		return "", nil // excelize says what is wrong with it
	}
	defer z.Close()
	parts := map[string]*zip.File{}
	for _, f := range z.File {
		parts[partName(f.Name)] = f
	}
	sheets, ok := worksheetParts(parts)
	if !ok {
		return "", nil
	}
	sstPart := parts[sharedStringsPart]
	if sstPart == nil {
		// Nothing to rewrite, but the sheets are read through all the
		// same, so that damage fails this workbook as it fails one with a
		// table (elementStack).
		return "", checkSheetsXML(sheets)
	}
	for _, f := range append([]*zip.File{sstPart}, sheets...) {
		if utf8, err := isUTF8Part(f); err != nil || !utf8 {
			return "", nil
		}
	}
	sst, err := readSharedStrings(sstPart, o.TempDir)
	if errors.Is(err, errUnsupportedXML) {
		return "", nil
	}
	if err != nil {
		return "", inlineError(err)
	}
	defer sst.table.Close()

	out, err := os.CreateTemp(o.TempDir, "onboard-upload-inlined-*.xlsx")
	if err != nil {
		return "", local(err)
	}
	done := false
	defer func() {
		if !done {
			removeTemp(out)
		}
	}()
	rewrite := map[*zip.File]bool{}
	for _, f := range sheets {
		rewrite[f] = true
	}
	// The inlined sheets may be larger than the originals; the rest is as
	// it was.
	budget := o.UnzipSizeLimit
	for _, f := range z.File {
		if !rewrite[f] && f != sstPart {
			budget -= int64(f.UncompressedSize64)
		}
	}
	zw := zip.NewWriter(out) // buffered inside
	for _, f := range z.File {
		switch {
		case f == sstPart:
			w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: f.Modified})
			if err == nil {
				_, err = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>`+"\n"+
					`<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="0" uniqueCount="0"/>`)
			}
			if err != nil {
				return "", local(err)
			}
		case rewrite[f]:
			// Stored, not compressed: the file lives only until excelize
			// has read it.
			w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Store, Modified: f.Modified})
			if err != nil {
				return "", local(err)
			}
			if err := inlineSheet(&budgetWriter{w: localWriter{w}, left: &budget}, f, sst); err != nil {
				if errors.Is(err, errUnsupportedXML) {
					return "", nil
				}
				return "", inlineError(err)
			}
		default:
			if err := copyPart(zw, f); err != nil {
				return "", inlineError(err)
			}
		}
	}
	if err := zw.Close(); err != nil {
		return "", local(err)
	}
	if err := out.Close(); err != nil {
		return "", local(err)
	}
	done = true
	return out.Name(), nil
}

// inlineError tells a workbook that cannot be read (a file error for the
// import) from a failure of the worker's own temporary files (retried).
// What reading the upload fails with is the upload's: archive/zip reads at
// the offsets the zip claims, so a damaged one fails with an *os.PathError
// ("negative offset") as a disk would.
func inlineError(err error) error {
	var l localError
	if errors.As(err, &l) || errors.Is(err, ErrFile) {
		return err
	}
	return fileError("the workbook cannot be read (%v); save it again as .xlsx or .csv", err)
}

// localError is a failure of the worker's own temporary files: its disk,
// not the upload.
type localError struct{ err error }

func (e localError) Error() string { return "rewrite workbook: " + e.err.Error() }
func (e localError) Unwrap() error { return e.err }

func local(err error) error {
	if err == nil {
		return nil
	}
	return localError{err}
}

// localWriter marks what writing into the rewritten workbook fails with as
// local when the file system said it; zip.Writer's own refusals (of a
// header the upload brought) are the upload's.
type localWriter struct{ w io.Writer }

func (l localWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	return n, localIfFS(err)
}

func localIfFS(err error) error {
	var pathErr *os.PathError
	if errors.As(err, &pathErr) {
		return local(err)
	}
	return err
}

// copyPart copies a part of the upload as it is, compressed: zip.Writer's
// Copy would not say which side failed. A directory entry is left out
// (excelize reads none; one carrying data zip.Writer refuses).
func copyPart(zw *zip.Writer, f *zip.File) error {
	if strings.HasSuffix(f.Name, "/") {
		return nil
	}
	r, err := f.OpenRaw()
	if err != nil {
		return err
	}
	header := f.FileHeader
	w, err := zw.CreateRaw(&header)
	if err != nil {
		return localIfFS(err)
	}
	_, err = io.Copy(localWriter{w}, r)
	return err
}

const (
	sharedStringsPart = "xl/sharedStrings.xml"
	officeDocumentRel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
	// Strict Open XML (one of Excel's "Save as" types) names it so;
	// excelize translates it to the other.
	strictOfficeDocumentRel = "http://purl.oclc.org/ooxml/officeDocument/relationships/officeDocument"
)

// partName is a part's name as excelize keys it: forward slashes, and any
// case for the two parts whose case it ignores.
func partName(name string) string {
	name = strings.ReplaceAll(name, "\\", "/")
	switch strings.ToLower(name) {
	case "xl/sharedstrings.xml":
		return sharedStringsPart
	case "[content_types].xml":
		return "[Content_Types].xml"
	}
	return name
}

// worksheetParts finds the workbook's sheets as excelize does (getSheetMap):
// the workbook is the package's first officeDocument, and each <sheet> of it
// is the part its relationship id names, whatever the relationship's type.
// ok is false when they cannot be read; excelize then reports the workbook.
func worksheetParts(parts map[string]*zip.File) ([]*zip.File, bool) {
	named, ok := namedWorksheetParts(parts)
	sheets := make([]*zip.File, len(named))
	for i, n := range named {
		sheets[i] = n.part
	}
	return sheets, ok
}

// namedPart is a worksheet part and the name the workbook gives it.
type namedPart struct {
	name string
	part *zip.File
}

// namedWorksheetParts is worksheetParts with each sheet's name.
func namedWorksheetParts(parts map[string]*zip.File) ([]namedPart, bool) {
	rootRels, ok := readRels(parts["_rels/.rels"])
	if !ok {
		return nil, false
	}
	workbook := ""
	for _, r := range rootRels {
		if r.Type == officeDocumentRel || r.Type == strictOfficeDocumentRel {
			workbook = strings.TrimPrefix(r.Target, "/")
			break
		}
	}
	refs, ok := sheetRefs(parts[workbook])
	if workbook == "" || !ok {
		return nil, false
	}
	dir := path.Dir(workbook)
	rels, ok := readRels(parts[strings.TrimPrefix(path.Join(dir, "_rels", path.Base(workbook)+".rels"), "/")])
	if !ok {
		return nil, false
	}
	var sheets []namedPart
	for _, ref := range refs {
		for _, r := range rels {
			if r.ID != ref.ID {
				continue
			}
			name := dir + "/" + r.Target
			if strings.HasPrefix(r.Target, "/") {
				name = r.Target
			}
			if f := parts[strings.TrimPrefix(strings.ReplaceAll(path.Clean(name), "\\", "/"), "/")]; f != nil {
				sheets = append(sheets, namedPart{ref.Name, f})
			}
		}
	}
	return sheets, true
}

type relationship struct {
	ID         string `xml:"Id,attr"`
	Type       string `xml:"Type,attr"`
	Target     string `xml:"Target,attr"`
	TargetMode string `xml:"TargetMode,attr"`
}

// readRels reads a relationships part; checkParts has bounded its size.
func readRels(f *zip.File) ([]relationship, bool) {
	var rels struct {
		Relationships []relationship `xml:"Relationship"`
	}
	return rels.Relationships, decodePart(f, &rels)
}

// sheetRef is a <sheet> of the workbook: its name and relationship id.
type sheetRef struct {
	Name string `xml:"name,attr"`
	ID   string `xml:"id,attr"` // r:id
}

// sheetRefs reads the workbook's sheets.
func sheetRefs(f *zip.File) ([]sheetRef, bool) {
	var wb struct {
		Sheets []sheetRef `xml:"sheets>sheet"`
	}
	ok := decodePart(f, &wb)
	return wb.Sheets, ok
}

func decodePart(f *zip.File, v any) bool {
	if f == nil {
		return false
	}
	rc, err := f.Open()
	if err != nil {
		return false
	}
	defer rc.Close()
	return xml.NewDecoder(rc).Decode(v) == nil
}

// isUTF8Part tells a part in UTF-8 (the scanner's bytes are ASCII's) from
// one in UTF-16 or declared in another encoding.
func isUTF8Part(f *zip.File) (bool, error) {
	rc, err := f.Open()
	if err != nil {
		return false, err
	}
	defer rc.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(rc, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, err
	}
	head = bytes.TrimPrefix(head[:n], []byte("\xEF\xBB\xBF"))
	if bytes.HasPrefix(head, []byte{0xFE, 0xFF}) || bytes.HasPrefix(head, []byte{0xFF, 0xFE}) {
		return false, nil
	}
	if !bytes.HasPrefix(head, []byte("<?xml")) {
		return !bytes.HasPrefix(head, []byte{0, '<'}) && !bytes.HasPrefix(head, []byte{'<', 0}), nil
	}
	end := bytes.Index(head, []byte("?>"))
	if end < 0 {
		return false, nil
	}
	start, stop, ok := tagAttr(head[:end], "encoding")
	if !ok {
		return true, nil
	}
	enc := strings.ToLower(string(head[start:stop]))
	return enc == "utf-8" || enc == "utf8", nil
}

// sstInfo is the shared strings table with what the rewritten cells need
// to know of its XML: the namespaces its root declares, and whether its
// elements carry a prefix (x:si), so that copied content keeps its meaning.
type sstInfo struct {
	table    *sharedStrings
	nsDecls  []byte
	prefixed bool
}

// readSharedStrings copies the raw content of each <si> of the table to a
// sharedStrings.
func readSharedStrings(f *zip.File, dir string) (*sstInfo, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	w, err := newSharedStringsWriter(dir)
	if err != nil {
		return nil, local(err)
	}
	finished := false
	defer func() {
		if !finished {
			w.abort()
		}
	}()
	info := &sstInfo{}
	s := newXMLScanner(rc, maxTagBytes)
	// outside: the depth of elements outside any <si> (the root's children
	// are at 1); depth: inside the <si> being read.
	outside, depth, inSI := 0, 0, false
	for {
		tok, raw, err := s.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if !inSI {
			switch tok {
			case tokEnd:
				outside--
				continue
			case tokStart, tokEmpty:
			default:
				continue
			}
			name := tagName(raw)
			switch string(localName(name)) {
			case "sst":
				if outside == 0 {
					info.nsDecls = namespaceDecls(raw)
				}
			case "si":
				// excelize reads the table's direct children only.
				if outside != 1 {
					break
				}
				info.prefixed = info.prefixed || len(prefixOf(name)) > 0
				if tok == tokEmpty {
					if err := w.end(); err != nil {
						return nil, local(err)
					}
				} else {
					inSI, depth = true, 0
				}
				continue
			}
			if tok == tokStart {
				outside++
			}
			continue
		}
		switch tok {
		case tokStart:
			depth++
		case tokEnd:
			if depth == 0 { // </si>
				inSI = false
				if err := w.end(); err != nil {
					return nil, local(err)
				}
				continue
			}
			depth--
		}
		if err := w.add(raw); err != nil {
			return nil, local(err)
		}
	}
	if inSI {
		return nil, io.ErrUnexpectedEOF
	}
	if info.table, err = w.finish(); err != nil {
		return nil, local(err)
	}
	finished = true
	return info, nil
}

// maxTagBytes bounds one tag, comment or cell of a part being rewritten:
// a real one is a few hundred bytes.
const maxTagBytes = 1 << 20

// inlineSheet copies a worksheet, each cell of type s (a shared string)
// turned into one of type inlineStr with the string's XML in <is>:
//
//	<c r="B2" s="3" t="s"><v>12</v></c>
//	<c r="B2" s="3" t="inlineStr"><is><t>jane@example.com</t></is></c>
//
// A cell whose index is not in the table is copied as it was: excelize
// reports it as it would have.
func inlineSheet(w io.Writer, f *zip.File, sst *sstInfo) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var c sheetCell
	err := scanSheet(f, func(tok xmlToken, raw []byte) error {
		if c.open {
			if err := c.take(tok, raw); err != nil {
				return err
			}
			if !c.open {
				return c.write(bw, sst)
			}
			return nil
		}
		if tok == tokStart && bytes.Equal(localName(tagName(raw)), []byte("c")) {
			if start, end, ok := cellType(raw); ok && start >= 0 {
				c.start(raw, start, end)
				return nil
			} else if !ok {
				return errUnsupportedXML
			}
		}
		_, err := bw.Write(raw)
		return err
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// scanSheet passes each token of a worksheet to take, and fails a sheet
// whose XML is damaged (elementStack).
func scanSheet(f *zip.File, take func(tok xmlToken, raw []byte) error) error {
	rc, err := f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	s := newXMLScanner(rc, maxTagBytes)
	var open elementStack
	for {
		tok, raw, err := s.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := open.take(tok, raw); err != nil {
			return err
		}
		if err := take(tok, raw); err != nil {
			return err
		}
	}
	if len(open.ends) > 0 {
		return fmt.Errorf("the sheet's XML ends inside <%s>", open.top())
	}
	return nil
}

// checkSheetsXML reads each worksheet of a workbook without a shared
// strings table to its end, as inlineSheet does, and fails one whose XML is
// damaged. A sheet inlineSharedStrings would leave to excelize (in another
// encoding than UTF-8, with a document type declaration) is left to it.
func checkSheetsXML(sheets []*zip.File) error {
	for _, f := range sheets {
		if utf8, err := isUTF8Part(f); err != nil || !utf8 {
			continue
		}
		if err := scanSheet(f, func(xmlToken, []byte) error { return nil }); err != nil && !errors.Is(err, errUnsupportedXML) {
			return inlineError(err)
		}
	}
	return nil
}

// cellType finds where a cell's type lies in its start tag when the type is
// s (start is -1 for any other), as excelize reads it: the last attribute
// whose local name is t, its value decoded. ok is false for a value the
// rewrite does not decode.
func cellType(tag []byte) (start, end int, ok bool) {
	start, end = -1, -1
	eachAttr(tag, func(name []byte, s, e int) bool {
		if bytes.Equal(localName(name), []byte("t")) {
			start, end = s, e
		}
		return true
	})
	switch {
	case start < 0:
		return -1, -1, true
	case bytes.IndexByte(tag[start:end], '&') >= 0:
		return -1, -1, false // t="&#115;": nobody writes it; excelize reads it
	case string(tag[start:end]) != "s":
		return -1, -1, true
	}
	return start, end, true
}

// elementStack holds the names of the elements open at a point of a part,
// so that a damaged sheet (an end tag that closes another element, a part
// that ends early) fails the import with a message: excelize's Rows() ends
// at broken XML without saying so, and the rows after it would be left out
// of a "completed" import.
type elementStack struct {
	names []byte
	ends  []int
}

// maxDepth bounds how deep a sheet's elements nest: a real one goes about
// eight deep, and each level costs the stack memory.
const maxDepth = 1000

func (st *elementStack) take(tok xmlToken, raw []byte) error {
	switch tok {
	case tokStart:
		if len(st.ends) == maxDepth {
			return fmt.Errorf("the sheet's XML nests elements more than %d deep", maxDepth)
		}
		st.names = append(st.names, tagName(raw)...)
		st.ends = append(st.ends, len(st.names))
	case tokEnd:
		name := tagName(raw)
		if len(st.ends) == 0 {
			return fmt.Errorf("the sheet's XML closes <%s>, which is not open", name)
		}
		if top := st.top(); !bytes.Equal(top, name) {
			return fmt.Errorf("the sheet's XML closes <%s> inside <%s>", name, top)
		}
		st.names = st.names[:st.start()]
		st.ends = st.ends[:len(st.ends)-1]
	}
	return nil
}

func (st *elementStack) start() int {
	if len(st.ends) < 2 {
		return 0
	}
	return st.ends[len(st.ends)-2]
}

func (st *elementStack) top() []byte { return st.names[st.start():st.ends[len(st.ends)-1]] }

// sheetCell is a shared string cell being read: its start tag, its content
// as it came, and where in the content the <v>…</v> that excelize takes for
// its value lies: the last one, at any depth except inside <f> or <is>
// (cellXMLHandler decodes those whole), its text the character data
// directly inside it.
type sheetCell struct {
	open         bool
	tag          []byte
	tStart, tEnd int // the type's value in tag
	body         []byte
	depth        int // of the element being read; the cell's children are at 1
	skipDepth    int // inside an <f> or <is> opened at this depth, or 0
	vDepth       int // inside the <v> opened at this depth, or 0
	hasV, hasIS  bool
	hasF         bool   // a formula: cellTypes tells one with no saved value
	vStart, vEnd int    // the last <v>…</v> in body
	value        []byte // its text, undecoded
	// noBody: the cell is read for its value only (cellTypes), not copied.
	noBody bool
}

func (c *sheetCell) start(tag []byte, tStart, tEnd int) {
	*c = sheetCell{open: true, tag: append(c.tag[:0], tag...), tStart: tStart, tEnd: tEnd, body: c.body[:0], value: c.value[:0]}
}

// take adds a token of the cell's content; the cell's end tag closes it.
func (c *sheetCell) take(tok xmlToken, raw []byte) error {
	switch tok {
	case tokStart, tokEmpty:
		if tok == tokStart {
			c.depth++
		}
		if c.skipDepth > 0 || c.vDepth > 0 {
			break // inside an element decoded whole
		}
		switch string(localName(tagName(raw))) {
		case "v":
			c.hasV, c.vStart, c.value = true, len(c.body), c.value[:0]
			if tok == tokStart {
				c.vDepth = c.depth
			} else {
				c.vEnd = len(c.body) + len(raw)
			}
		case "is":
			c.hasIS = true
			if tok == tokStart {
				c.skipDepth = c.depth
			}
		case "f":
			c.hasF = true
			if tok == tokStart {
				c.skipDepth = c.depth
			}
		}
	case tokEnd:
		// excelize ends the cell at the first end tag of its name outside
		// what it decodes whole, however deep (<c><x><c></c>… ends there).
		if c.depth == 0 || (c.skipDepth == 0 && c.vDepth == 0 && bytes.Equal(tagName(raw), tagName(c.tag))) {
			c.open = false
			if !c.noBody {
				c.body = append(c.body, raw...) // </c>, kept at the end of body
			}
			return nil
		}
		switch c.depth {
		case c.vDepth:
			c.vDepth, c.vEnd = 0, len(c.body)+len(raw)
		case c.skipDepth:
			c.skipDepth = 0
		}
		c.depth--
	case tokText, tokCDATA:
		if c.vDepth > 0 && c.depth == c.vDepth {
			c.value = append(c.value, raw...) // decoded with the rest
		}
	}
	if c.noBody {
		if len(c.value) > maxTagBytes {
			return errTokenTooLong
		}
		return nil
	}
	if c.body = append(c.body, raw...); len(c.body) > maxTagBytes {
		return errTokenTooLong
	}
	return nil
}

// write writes the cell, inlined when its index is in the table.
func (c *sheetCell) write(w *bufio.Writer, sst *sstInfo) error {
	if c.hasIS {
		// A shared string cell with an inline string as well: excelize
		// would read the table; two <is> it would merge.
		return errUnsupportedXML
	}
	index, ok := c.index()
	if !ok || index < 0 || index >= sst.table.n {
		_, _ = w.Write(c.tag)
		_, err := w.Write(c.body)
		return err
	}
	prefix := prefixOf(tagName(c.tag))
	_, _ = w.Write(c.tag[:c.tStart])
	_, _ = w.WriteString("inlineStr")
	_, _ = w.Write(c.tag[c.tEnd:])
	_, _ = w.Write(c.body[:c.vStart])
	_ = w.WriteByte('<')
	_, _ = w.Write(prefix)
	_, _ = w.WriteString("is")
	if sst.prefixed || len(prefix) > 0 {
		// The string's XML was written under the table's namespace
		// declarations; it keeps them.
		_, _ = w.Write(sst.nsDecls)
	}
	_ = w.WriteByte('>')
	if err := sst.table.writeTo(w, index); err != nil {
		return err
	}
	_, _ = w.WriteString("</")
	_, _ = w.Write(prefix)
	_, _ = w.WriteString("is>")
	_, err := w.Write(c.body[c.vEnd:])
	return err
}

// index is the cell's shared string index as excelize reads it: the text of
// <v>, decoded and trimmed, and 0 when it is not a number; ok is false for
// a cell without a value, which excelize reads as empty.
func (c *sheetCell) index() (int, bool) {
	v, ok := c.text()
	if !ok || v == "" {
		return 0, false
	}
	n, _ := strconv.Atoi(strings.TrimSpace(v))
	return n, true
}

// text is the cell's value as excelize reads it into the cell's V, decoded;
// ok is false for a cell without one, or one that cannot be decoded.
func (c *sheetCell) text() (string, bool) {
	if !c.hasV || c.vDepth > 0 {
		return "", false
	}
	v := string(c.value)
	if strings.ContainsAny(v, "&<") {
		var decoded string
		if err := xml.Unmarshal([]byte("<v>"+v+"</v>"), &decoded); err != nil {
			return "", false
		}
		v = decoded
	}
	return v, true
}

// errTooLargeInlined fails a workbook whose text, written into its cells,
// passes the size limit of a decompressed workbook.
var errTooLargeInlined = fmt.Errorf("%w: the workbook is larger than its size limit when its text cells are read out (one long text repeated in many cells?); save it as .csv", ErrFile)

// budgetWriter fails once more than the bytes left are written.
type budgetWriter struct {
	w    io.Writer
	left *int64
}

func (b *budgetWriter) Write(p []byte) (int, error) {
	if *b.left -= int64(len(p)); *b.left < 0 {
		return 0, errTooLargeInlined
	}
	return b.w.Write(p)
}
