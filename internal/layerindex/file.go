package layerindex

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// File reads the bytes of one regular file of a layer. It is safe for
// concurrent use.
type File struct {
	s *Stream
	e *Entry

	mu     sync.Mutex
	sparse *sparseCursor
}

// OpenFile returns a File reading entry e of l (a regular file of l's
// tree) from its own Stream over s.
func OpenFile(s *Stream, e *Entry) *File { return &File{s: s, e: e} }

// Size is the file's size.
func (f *File) Size() int64 { return f.e.Size }

// ReadAt reads like io.ReaderAt (io.EOF at the end).
func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	e := f.e
	if off < 0 {
		return 0, fmt.Errorf("read at %d: %w", off, hfserr.ErrInvalid)
	}
	if off >= e.Size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), e.Size-off)
	var n int
	var err error
	switch {
	case f.s.l.TOC.Kind != NoTOC:
		if len(e.Chunks) > 0 {
			ctx = readingUpTo(ctx, e.Chunks[len(e.Chunks)-1].End)
		}
		n, err = f.readChunks(ctx, p[:want], off)
	case e.Sparse:
		n, err = f.readSparse(ctx, p[:want], off)
	default:
		n, err = f.s.ReadAt(readingUpTo(ctx, f.s.l.compressedEnd(e.Offset+e.Size)), p[:want], e.Offset+off)
	}
	if err == io.EOF && int64(n) < want {
		err = fmt.Errorf("%s: data past the end of the layer's stream: %w", e.Name, hfserr.ErrIntegrity)
	}
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

// sparseCursor reads a sparse entry by decoding it with archive/tar from
// its header, forward.
type sparseCursor struct {
	in  *streamReader
	tr  *tar.Reader
	pos int64 // file offset of tr's next byte
}

// streamReader reads a Stream in order from an offset.
type streamReader struct {
	ctx context.Context
	s   *Stream
	off int64
}

func (r *streamReader) Read(p []byte) (int, error) {
	n, err := r.s.ReadAt(r.ctx, p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *File) readSparse(ctx context.Context, p []byte, off int64) (int, error) {
	if f.e.HeaderOffset < 0 {
		return 0, fmt.Errorf("%s: a sparse file after another sparse file cannot be located: %w", f.e.Name, hfserr.ErrInvalid)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.sparse
	if c == nil || c.pos > off {
		in := &streamReader{ctx: ctx, s: f.s, off: f.e.HeaderOffset}
		tr := tar.NewReader(in)
		if _, err := tr.Next(); err != nil {
			return 0, fmt.Errorf("%s: reading its header again: %v: %w", f.e.Name, err, hfserr.ErrIntegrity)
		}
		c = &sparseCursor{in: in, tr: tr}
		f.sparse = c
	}
	c.in.ctx = ctx
	if skip := off - c.pos; skip > 0 {
		m, err := io.CopyN(io.Discard, c.tr, skip)
		c.pos += m
		if err != nil {
			f.sparse = nil
			return 0, streamErr(err)
		}
	}
	n, err := io.ReadFull(c.tr, p)
	c.pos += int64(n)
	if err != nil {
		f.sparse = nil
		return n, streamErr(err)
	}
	return n, nil
}
