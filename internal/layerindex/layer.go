package layerindex

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// Layer is an indexed layer: its tree of names and the means to read its
// uncompressed stream at any offset. It is immutable and safe for
// concurrent use.
type Layer struct {
	*Index
	Root *Node

	wins   windows
	spans  *spanCache
	chunks *chunkCache // decoded chunks (layers indexed from a TOC)
	// broken is called when a stored window fails its check, so that the
	// index is dropped and built again.
	broken func()
	// usable fails once the layer has failed verification (lazy mode), so
	// that decoded spans kept in memory are not served after that.
	usable func() error
	// open gives the Blob a cursor reads through (its own: a cursor
	// outlives the Stream that made it).
	open    func() BlobCloser
	cursors cursorPool
	dead    atomic.Bool // failed verification after it was indexed
	good    atomic.Bool // verified whole: usable need not ask again
}

const (
	// maxCachedSpan is the largest span decoded whole into the span
	// cache; longer ones (a zstd layer of one frame) are read through a
	// cursor that decodes forward.
	maxCachedSpan = 8 << 20
	// readBuffer is how much compressed data one read of a span asks for.
	readBuffer = 256 << 10
)

// Dead reports whether l was dropped after it was handed out (its layer
// failed verification, or its stored index was damaged): every read
// fails, and Indexer.Layer gives a new one (entries keep their numbers).
func (l *Layer) Dead() bool { return l.dead.Load() }

// Check fails if l can no longer be read (see Dead). Until the layer is
// known verified it asks the cache again, which also stores an index kept
// waiting for the layer's verification (lazy mode) once it verified.
func (l *Layer) Check() error {
	if l.usable == nil {
		return nil
	}
	return l.usable()
}

// openAt starts decoding the stream at checkpoint i. close releases the
// decoder.
func (l *Layer) openAt(ctx context.Context, blob Blob, i int) (r io.Reader, src *seqReader, close func(), err error) {
	cp := l.Checkpoints[i]
	// The span's compressed bytes end at the next checkpoint (plus the
	// byte it starts in); do not ask for much more than that.
	need := l.Size - cp.In/8
	if i+1 < len(l.Checkpoints) {
		need = l.Checkpoints[i+1].In/8 + 1 - cp.In/8
	}
	src = newSeqReader(ctx, blob, l.Size, cp.In/8, int(min(max(need, 4<<10), readBuffer))).within(cp.In/8 + need)
	switch l.Format {
	case Tar:
		return src, src, func() {}, nil
	case Zstd:
		z, err := newZstdReader(src, cp.Out)
		if err != nil {
			return nil, nil, nil, err
		}
		return z, src, z.Close, nil
	}
	var win []byte
	if cp.Kind == BlockStart {
		if win, err = l.wins.get(cp.Window); err != nil {
			if errors.Is(err, hfserr.ErrIntegrity) && l.broken != nil {
				l.broken()
			}
			return nil, nil, nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
	}
	z, err := resumeGzip(src, cp, win)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	return z, src, func() {}, nil
}

// decodeSpan returns the uncompressed bytes of the span starting at
// checkpoint i.
func (l *Layer) decodeSpan(ctx context.Context, blob Blob, i int) ([]byte, error) {
	r, _, closeDec, err := l.openAt(ctx, blob, i)
	if err != nil {
		return nil, err
	}
	defer closeDec()
	b := make([]byte, l.spanEnd(i)-l.Checkpoints[i].Out)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("layer %s: span at %d: %w", l.Digest, l.Checkpoints[i].Out, streamErr(err))
	}
	return b, nil
}

// compressedEnd is where the compressed bytes needed to decode the
// stream up to out end: the byte holding the first checkpoint at or after
// out (the layer's end if none).
func (l *Layer) compressedEnd(out int64) int64 {
	if l.Format == Tar {
		return min(out, l.Size)
	}
	i := sort.Search(len(l.Checkpoints), func(i int) bool { return l.Checkpoints[i].Out >= out })
	if i == len(l.Checkpoints) {
		return l.Size
	}
	return min(l.Checkpoints[i].In/8+1, l.Size)
}

// streamErr turns a stream that ended early into an integrity error: the
// index said it was longer.
func streamErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("stream shorter than indexed: %w", hfserr.ErrIntegrity)
	}
	return err
}

// Stream reads a layer's uncompressed tar stream at any offset, through
// one Blob. Spans up to 8 MiB are decoded whole and shared (see
// spanCache); longer ones (a zstd layer of one frame) are decoded forward
// by the layer's cursors (see cursorPool). It is safe for concurrent use.
type Stream struct {
	l    *Layer
	blob Blob
}

// NewStream returns a Stream of l reading compressed bytes from blob.
func (l *Layer) NewStream(blob Blob) *Stream { return &Stream{l: l, blob: blob} }

// Close is for symmetry: a Stream holds nothing (cursors belong to the
// layer).
func (s *Stream) Close() {}

// ReadAt reads like io.ReaderAt (io.EOF at the end).
func (s *Stream) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	l := s.l
	if off < 0 {
		return 0, fmt.Errorf("read at %d: %w", off, hfserr.ErrInvalid)
	}
	if l.TOC.Kind != NoTOC {
		return 0, fmt.Errorf("layer %s was indexed from its %s TOC: its tar stream is not indexed: %w", l.Digest, l.TOC.Kind, hfserr.ErrInvalid)
	}
	if off >= l.TarSize {
		return 0, io.EOF
	}
	if l.usable != nil {
		if err := l.usable(); err != nil {
			return 0, err
		}
	}
	want := int(min(int64(len(p)), l.TarSize-off))
	if l.Format == Tar {
		n, err := readBlob(ctx, s.blob, p[:want], off, off+int64(want))
		if err == nil && n < len(p) {
			err = io.EOF
		}
		return n, err
	}
	n := 0
	for n < want {
		pos := off + int64(n)
		i := l.checkpointFor(pos)
		start, end := l.Checkpoints[i].Out, l.spanEnd(i)
		part := p[n:min(want, n+int(end-pos))]
		var m int
		var err error
		if end-start <= maxCachedSpan {
			var b []byte
			if b, err = l.spans.get(ctx, l, s.blob, i); err == nil {
				m = copy(part, b[pos-start:])
			}
		} else {
			m, err = l.readCursor(ctx, s.blob, i, part, pos)
		}
		n += m
		if err != nil {
			return n, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// cursor decodes one long span forward, through its own Blob.
type cursor struct {
	span  int
	pos   int64 // stream offset of r's next byte
	r     io.Reader
	src   *seqReader
	close func()
}

// cursorPool keeps a layer's idle cursors, so that readers going through
// a long span in order (one file after the next, as tar order and most
// walks go) continue decoding where the last read stopped instead of
// starting the span again: each reader takes the cursor furthest along
// that is not past where it reads. Reading backwards, or far apart,
// decodes from the span's start.
type cursorPool struct {
	mu   sync.Mutex
	idle []*cursor // oldest first
}

const maxIdleCursors = 2

func (p *cursorPool) take(span int, pos int64) *cursor {
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	for i, c := range p.idle {
		if c.span == span && c.pos <= pos && (best < 0 || c.pos > p.idle[best].pos) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	c := p.idle[best]
	p.idle = append(p.idle[:best], p.idle[best+1:]...)
	return c
}

func (p *cursorPool) put(c *cursor) {
	p.mu.Lock()
	var old *cursor
	if len(p.idle) == maxIdleCursors {
		old, p.idle = p.idle[0], p.idle[1:]
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
	if old != nil {
		old.close()
	}
}

// closeAll releases the idle cursors.
func (p *cursorPool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// readCursor fills p from stream offset pos inside long span i.
func (l *Layer) readCursor(ctx context.Context, blob Blob, i int, p []byte, pos int64) (int, error) {
	c := l.cursors.take(i, pos)
	if c == nil {
		var closeBlob func()
		if l.open != nil {
			b := l.open()
			blob, closeBlob = b, func() { b.Close() }
		}
		r, src, closeDec, err := l.openAt(ctx, blob, i)
		if err != nil {
			if closeBlob != nil {
				closeBlob()
			}
			return 0, err
		}
		c = &cursor{span: i, pos: l.Checkpoints[i].Out, r: r, src: src, close: func() {
			closeDec()
			if closeBlob != nil {
				closeBlob()
			}
		}}
	}
	c.src.ctx = ctx
	if skip := pos - c.pos; skip > 0 {
		m, err := io.CopyN(io.Discard, c.r, skip)
		c.pos += m
		if err != nil {
			c.close()
			return 0, streamErr(err)
		}
	}
	n, err := io.ReadFull(c.r, p)
	c.pos += int64(n)
	if err != nil {
		c.close()
		return n, streamErr(err)
	}
	c.src.ctx = context.Background() // not the finished caller's
	l.cursors.put(c)
	return n, nil
}
