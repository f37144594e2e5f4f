package layerindex

import (
	"context"
	"fmt"
	"io"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// Blob is a compressed layer as the cache serves it: cache.Reader has
// this ReadAt. Every compressed byte hashfs decodes comes through it, so
// it is verified (strict) or served under the lazy rules exactly like a
// read of the blob itself.
type Blob interface {
	// ReadAt reads like io.ReaderAt; ctx ends this read only.
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
}

// withinReader is a Blob that can be told where a reader's bytes end, so
// that it fetches nothing past them ahead of time (cache.Reader).
type withinReader interface {
	ReadAtWithin(ctx context.Context, p []byte, off, limit int64) (int, error)
}

// seqReader reads a Blob forward from an offset through a buffer. It is
// the ByteReader the decompressors need; pos is the offset of the next
// byte it returns, which is how input offsets are measured. ctx is the
// context of the current caller, set before each use.
type seqReader struct {
	ctx   context.Context
	blob  Blob
	size  int64
	limit int64  // the blob's readahead stops here (see within)
	pos   int64  // blob offset of buf[r]
	buf   []byte // buf[r:w] is read but not yet returned
	r, w  int
}

func newSeqReader(ctx context.Context, blob Blob, size, off int64, bufSize int) *seqReader {
	return &seqReader{ctx: ctx, blob: blob, size: size, limit: size, pos: off, buf: make([]byte, bufSize)}
}

// within says that the decoder will need no byte at or after limit (a
// span ends there; a decoder may still read a little past it, which is
// fetched on demand).
func (s *seqReader) within(limit int64) *seqReader {
	s.limit = min(limit, s.size)
	return s
}

// readAt reads the blob up to the decoder's limit (see readBlob).
func (s *seqReader) readAt(p []byte, off int64) (int, error) {
	return readBlob(s.ctx, s.blob, p, off, s.limit)
}

// readBlob reads blob at off by a reader that needs nothing at or after
// limit, or after the end of the file being read (readingUpTo) if that
// is further: a withinReader fetches nothing past that ahead of time.
func readBlob(ctx context.Context, blob Blob, p []byte, off, limit int64) (int, error) {
	if w, ok := blob.(withinReader); ok {
		if end, ok := ctx.Value(readingKey{}).(int64); ok {
			limit = max(limit, end)
		}
		return w.ReadAtWithin(ctx, p, off, limit)
	}
	return blob.ReadAt(ctx, p, off)
}

type readingKey struct{}

// readingUpTo returns ctx saying that its reader (one file of the layer)
// needs no compressed byte at or after end: the blob's readahead may go
// that far while a span or chunk of the file is decoded, and no further.
func readingUpTo(ctx context.Context, end int64) context.Context {
	return context.WithValue(ctx, readingKey{}, end)
}

// fill reads the next piece of the blob into the empty buffer.
func (s *seqReader) fill() error {
	if s.r < s.w {
		return nil
	}
	s.r, s.w = 0, 0
	if s.pos >= s.size {
		return io.EOF
	}
	want := min(int64(len(s.buf)), s.size-s.pos)
	n, err := s.readAt(s.buf[:want], s.pos)
	s.w = n
	switch {
	case n == int(want):
		return nil
	case err == nil || err == io.EOF: // a bare EOF: a transport error may wrap one
		// The descriptor promised more bytes than the blob has: a
		// verifying source never gets here, but never loop on it.
		return fmt.Errorf("layer ends at %d, before its size %d: %w", s.pos+int64(n), s.size, hfserr.ErrIntegrity)
	case n > 0:
		return nil // serve what came; the error repeats on the next fill
	}
	return err
}

func (s *seqReader) ReadByte() (byte, error) {
	if err := s.fill(); err != nil {
		return 0, err
	}
	c := s.buf[s.r]
	s.r++
	s.pos++
	return c, nil
}

func (s *seqReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := s.fill(); err != nil {
		return 0, err
	}
	n := copy(p, s.buf[s.r:s.w])
	s.r += n
	s.pos += int64(n)
	return n, nil
}

// peek returns the next n bytes (fewer at the end of the blob) without
// consuming them. n must not exceed the buffer size.
func (s *seqReader) peek(n int) ([]byte, error) {
	if s.w-s.r < n && s.pos+int64(s.w-s.r) < s.size {
		// Move what is left to the front and read more after it.
		left := copy(s.buf, s.buf[s.r:s.w])
		s.r, s.w = 0, left
		want := min(int64(len(s.buf)-left), s.size-s.pos-int64(left))
		m, err := s.readAt(s.buf[left:int64(left)+want], s.pos+int64(left))
		s.w += m
		if err != nil && err != io.EOF && m == 0 {
			return nil, err
		}
	}
	return s.buf[s.r:min(s.w, s.r+n)], nil
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
