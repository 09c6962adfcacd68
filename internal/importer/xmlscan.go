package importer

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// xmlScanner splits an XML stream into its tokens as raw bytes, so that a
// part can be copied through with a few elements changed and everything
// else (declarations, namespaces, whitespace, attribute order) left byte for
// byte as it was. It checks no more of XML than it needs to find where
// tokens begin and end; what it copies is read later by excelize, which
// checks the rest.
type xmlScanner struct {
	r *bufio.Reader
	// buf holds the current tag, comment or processing instruction; text is
	// returned in the reader's own buffer, a chunk at a time.
	buf []byte
	// inTag: the '<' of the next token has been read.
	inTag bool
	// maxToken bounds one tag or comment.
	maxToken int
}

type xmlToken int

const (
	tokText  xmlToken = iota // character data, perhaps one of several chunks
	tokStart                 // <name …>
	tokEmpty                 // <name …/>
	tokEnd                   // </name>
	tokCDATA                 // <![CDATA[…]]>
	tokOther                 // a comment or a processing instruction
)

// errUnsupportedXML is markup the scanner does not take apart (a document
// type declaration); the caller leaves such a part to excelize.
var errUnsupportedXML = errors.New("unsupported XML markup")

// errTokenTooLong is a tag or comment longer than maxToken.
var errTokenTooLong = errors.New("an XML tag is too long")

func newXMLScanner(r io.Reader, maxToken int) *xmlScanner {
	return &xmlScanner{r: bufio.NewReaderSize(r, 64<<10), maxToken: maxToken}
}

// next returns the next token and its raw bytes, valid until the following
// call; io.EOF at the end.
func (s *xmlScanner) next() (xmlToken, []byte, error) {
	if !s.inTag {
		chunk, err := s.r.ReadSlice('<')
		switch {
		case err == nil:
			s.inTag = true
			if len(chunk) > 1 {
				return tokText, chunk[:len(chunk)-1], nil
			}
		case errors.Is(err, bufio.ErrBufferFull):
			return tokText, chunk, nil
		case errors.Is(err, io.EOF) && len(chunk) > 0:
			return tokText, chunk, nil
		default:
			return 0, nil, err
		}
	}
	s.inTag = false
	s.buf = append(s.buf[:0], '<')
	head, err := s.r.Peek(1)
	if err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	switch head[0] {
	case '/':
		return tokEnd, s.buf, s.readTag()
	case '?':
		return tokOther, s.buf, s.readUntil("<?", "?>")
	case '!':
		switch head, _ := s.r.Peek(8); {
		case bytes.HasPrefix(head, []byte("!--")):
			return tokOther, s.buf, s.readUntil("<!--", "-->")
		case bytes.HasPrefix(head, []byte("![CDATA[")):
			return tokCDATA, s.buf, s.readUntil("<![CDATA[", "]]>")
		}
		return 0, nil, errUnsupportedXML
	}
	if err := s.readTag(); err != nil {
		return 0, nil, err
	}
	if s.buf[len(s.buf)-2] == '/' {
		return tokEmpty, s.buf, nil
	}
	return tokStart, s.buf, nil
}

// readTag reads to the '>' that ends a tag, which is not one inside a
// quoted attribute value.
func (s *xmlScanner) readTag() error {
	var quote byte
	for {
		chunk, err := s.r.ReadSlice('>')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return unexpectedEOF(err)
		}
		for _, c := range chunk {
			switch {
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
			case c == quote:
				quote = 0
			}
		}
		if s.buf = append(s.buf, chunk...); len(s.buf) > s.maxToken {
			return errTokenTooLong
		}
		if err == nil && quote == 0 {
			return nil
		}
	}
}

// readUntil reads to the end of a comment, CDATA section or processing
// instruction. The end is not found inside the opening: "<!-->" is the
// start of a comment, not all of one. Such a token is held whole, so a
// comment or CDATA section longer than maxToken fails the part (none that
// a spreadsheet program writes comes near it: a cell holds at most 32,767
// characters).
func (s *xmlScanner) readUntil(open, end string) error {
	last := end[len(end)-1]
	for {
		chunk, err := s.r.ReadSlice(last)
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return unexpectedEOF(err)
		}
		if s.buf = append(s.buf, chunk...); len(s.buf) > s.maxToken {
			return errTokenTooLong
		}
		if err == nil && len(s.buf) >= len(open)+len(end) && bytes.HasSuffix(s.buf, []byte(end)) {
			return nil
		}
	}
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// tagName is the qualified name of a start, empty or end tag's raw bytes.
func tagName(tag []byte) []byte {
	tag = tag[1:]
	if len(tag) > 0 && tag[0] == '/' {
		tag = tag[1:]
	}
	end := bytes.IndexAny(tag, " \t\r\n/>")
	if end < 0 {
		return tag
	}
	return tag[:end]
}

// prefixOf is the "x:" of a qualified name x:c, "" for c.
func prefixOf(name []byte) []byte {
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		return name[:i+1]
	}
	return nil
}

// eachAttr calls fn with each attribute of a start or empty tag: its
// qualified name and where its value lies in tag (between the quotes). It
// stops when fn returns false or at anything that is not an attribute.
func eachAttr(tag []byte, fn func(name []byte, start, end int) bool) {
	i := 1 + len(tagName(tag))
	for i < len(tag) {
		for i < len(tag) && isXMLSpace(tag[i]) {
			i++
		}
		nameStart := i
		for i < len(tag) && tag[i] != '=' && !isXMLSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' {
			i++
		}
		name := tag[nameStart:i]
		for i < len(tag) && isXMLSpace(tag[i]) {
			i++
		}
		if len(name) == 0 || i >= len(tag) || tag[i] != '=' {
			return // the end of the tag, or not an attribute
		}
		i++
		for i < len(tag) && isXMLSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || (tag[i] != '"' && tag[i] != '\'') {
			return
		}
		quote := tag[i]
		i++
		n := bytes.IndexByte(tag[i:], quote)
		if n < 0 || !fn(name, i, i+n) {
			return
		}
		i += n + 1
	}
}

// tagAttr finds an attribute of a start or empty tag by its qualified name
// and returns where its value lies in tag (between the quotes).
func tagAttr(tag []byte, name string) (start, end int, ok bool) {
	eachAttr(tag, func(attr []byte, s, e int) bool {
		if string(attr) == name {
			start, end, ok = s, e, true
			return false
		}
		return true
	})
	return start, end, ok
}

func isXMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// namespaceDecls returns a start tag's xmlns and xmlns:… attributes, each
// with a leading space, ready to be put on another element.
func namespaceDecls(tag []byte) []byte {
	var out []byte
	eachAttr(tag, func(name []byte, start, end int) bool {
		if string(name) == "xmlns" || bytes.HasPrefix(name, []byte("xmlns:")) {
			quote := tag[start-1]
			out = append(out, ' ')
			out = append(out, name...)
			out = append(out, '=', quote)
			out = append(out, tag[start:end]...)
			out = append(out, quote)
		}
		return true
	})
	return out
}
