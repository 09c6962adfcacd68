package importer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// sharedStrings is a workbook's shared strings table kept on disk: each
// string's raw XML (the content of its <si> element) in one temporary file,
// where each begins in another, read through a small cache of blocks. A
// table of millions of strings costs the worker the cache, not an index
// entry a string (excelize's own index takes about 41 bytes a string).
type sharedStrings struct {
	n       int
	data    *blockFile
	offsets *blockFile
}

// sharedStringsWriter builds a sharedStrings, one string after another.
type sharedStringsWriter struct {
	data, offsets       *os.File
	dataBuf, offsetsBuf *bufio.Writer
	size                uint64
	n                   int
	scratch             [8]byte
}

// newSharedStringsWriter creates the table's files in dir. Their names
// start as an upload spool's does (onboard-upload-), so that those a killed
// worker leaves behind, customers' emails among them, are removed with the
// spools when a worker or api starts.
func newSharedStringsWriter(dir string) (*sharedStringsWriter, error) {
	data, err := os.CreateTemp(dir, "onboard-upload-sst-*")
	if err != nil {
		return nil, err
	}
	offsets, err := os.CreateTemp(dir, "onboard-upload-sst-index-*")
	if err != nil {
		removeTemp(data)
		return nil, err
	}
	w := &sharedStringsWriter{data: data, offsets: offsets,
		dataBuf: bufio.NewWriterSize(data, 64<<10), offsetsBuf: bufio.NewWriterSize(offsets, 64<<10)}
	return w, w.writeOffset()
}

func (w *sharedStringsWriter) writeOffset() error {
	binary.LittleEndian.PutUint64(w.scratch[:], w.size)
	_, err := w.offsetsBuf.Write(w.scratch[:])
	return err
}

// add appends the next string, in pieces: part of a string is written, then
// end closes it.
func (w *sharedStringsWriter) add(raw []byte) error {
	n, err := w.dataBuf.Write(raw)
	w.size += uint64(n)
	return err
}

func (w *sharedStringsWriter) end() error {
	w.n++
	return w.writeOffset()
}

// finish returns the table to read; abort removes what was written (the
// caller aborts a writer that did not finish).
func (w *sharedStringsWriter) finish() (*sharedStrings, error) {
	if err := errors.Join(w.dataBuf.Flush(), w.offsetsBuf.Flush()); err != nil {
		return nil, err
	}
	return &sharedStrings{n: w.n, data: newBlockFile(w.data), offsets: newBlockFile(w.offsets)}, nil
}

func (w *sharedStringsWriter) abort() {
	removeTemp(w.data)
	removeTemp(w.offsets)
}

func removeTemp(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

// writeTo copies string i's raw XML to w.
func (t *sharedStrings) writeTo(w io.Writer, i int) error {
	var b [16]byte
	if err := t.offsets.readAt(b[:], int64(i)*8); err != nil {
		return err
	}
	start, end := binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])
	if end < start {
		return local(fmt.Errorf("shared string %d: damaged index", i))
	}
	return t.data.copyTo(w, int64(start), int64(end-start))
}

// Close removes the temporary files.
func (t *sharedStrings) Close() {
	removeTemp(t.data.f)
	removeTemp(t.offsets.f)
}

// blockFile reads a file through a direct-mapped cache of fixed blocks:
// reads that move forward, as a sheet's references into its table mostly
// do (spreadsheet programs number strings in the order they first appear),
// cost a system call a block, not one a string.
type blockFile struct {
	f      *os.File
	blocks [blockSlots]struct {
		n    int64 // block number, -1 when empty
		data []byte
	}
}

const (
	blockSize  = 32 << 10
	blockSlots = 32
)

func newBlockFile(f *os.File) *blockFile {
	b := &blockFile{f: f}
	for i := range b.blocks {
		b.blocks[i].n = -1
	}
	return b
}

// block returns block n's bytes, which may be fewer than blockSize at the
// end of the file.
func (b *blockFile) block(n int64) ([]byte, error) {
	slot := &b.blocks[n%blockSlots]
	if slot.n == n {
		return slot.data, nil
	}
	if slot.data == nil {
		slot.data = make([]byte, blockSize)
	}
	slot.data = slot.data[:blockSize]
	read, err := b.f.ReadAt(slot.data, n*blockSize)
	if err != nil && err != io.EOF {
		slot.n = -1
		return nil, local(err)
	}
	slot.n, slot.data = n, slot.data[:read]
	return slot.data, nil
}

// copyTo writes length bytes from offset off to w.
func (b *blockFile) copyTo(w io.Writer, off, length int64) error {
	for length > 0 {
		data, err := b.block(off / blockSize)
		if err != nil {
			return err
		}
		data = data[min(off%blockSize, int64(len(data))):]
		if len(data) == 0 {
			return local(io.ErrUnexpectedEOF) // the table's own file is short
		}
		data = data[:min(int64(len(data)), length)]
		if _, err := w.Write(data); err != nil {
			return err
		}
		off, length = off+int64(len(data)), length-int64(len(data))
	}
	return nil
}

// readAt fills p from offset off.
func (b *blockFile) readAt(p []byte, off int64) error {
	buf := sliceWriter(p[:0])
	return b.copyTo(&buf, off, int64(len(p)))
}

type sliceWriter []byte

func (s *sliceWriter) Write(p []byte) (int, error) {
	*s = append(*s, p...)
	return len(p), nil
}
