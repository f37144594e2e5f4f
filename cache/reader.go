package cache

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Reader reads one blob through the cache. It pins the blob's chunks
// against eviction until Close. It is safe for concurrent use.
type Reader struct {
	c    *Cache
	d    digest.Digest
	size int64
	once sync.Once
	ra   readahead
}

// Open returns a Reader of d, which the caller's descriptor says is size
// bytes. Bytes are fetched on demand.
func (c *Cache) Open(d digest.Digest, size int64) *Reader {
	c.store.pin(d)
	return &Reader{c: c, d: d, size: size}
}

// Close unpins the blob, and stamps its file if the reads made it whole
// (stamp.go). It is safe to call more than once.
func (r *Reader) Close() error {
	r.once.Do(func() {
		r.c.stampIfWhole(blobKey{r.d, r.size})
		r.c.store.unpin(r.d)
	})
	return nil
}

// ReadAt reads like io.ReaderAt: io.EOF at or after the end, or with the
// bytes up to the end. Errors wrap hfserr kinds; ctx ends this read
// only, never a fetch that other readers share.
//
// Strict mode (and lazy mode for blobs up to LazyVerifyMax) returns only
// bytes of a blob verified whole or of chunks matching its trusted table.
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return r.ReadAtWithin(ctx, p, off, r.size)
}

// ReadAtWithin is ReadAt for a reader that will read nothing at or after
// byte limit (a span of a compressed layer, one file's chunks): a lazy
// read's readahead then fetches no chunk that starts there or later.
func (r *Reader) ReadAtWithin(ctx context.Context, p []byte, off, limit int64) (int, error) {
	c := r.c
	k := blobKey{r.d, r.size}
	switch {
	case off < 0 || r.size < 0:
		return 0, fmt.Errorf("read %s at %d (size %d): %w", r.d, off, r.size, hfserr.ErrInvalid)
	case r.size == 0 && r.d != emptyDigest:
		return 0, &IntegrityError{Digest: r.d, Size: 0, Got: emptyDigest}
	case off >= r.size:
		return 0, io.EOF
	case len(p) == 0:
		return 0, nil
	}
	c.life.Lock()
	closed := c.closed
	c.life.Unlock()
	if closed {
		return 0, errClosed
	}
	end := min(off+int64(len(p)), r.size)
	tab, err := c.prepare(ctx, k)
	if err != nil {
		return 0, err
	}
	if ahead := r.ra.advance(off, end, c.window); ahead > 0 && tab == nil {
		c.prefetch(k, end, ahead, limit)
	}
	n, err := c.readChunks(ctx, k, tab, p[:end-off], off)
	if err != nil {
		return n, err
	}
	if tab == nil {
		if end == r.size {
			c.settle(k) // the blob's last bytes: its chain may end here
		}
		// Unverified bytes: if verification failed meanwhile, they are void.
		if err := c.quarantineErr(k); err != nil {
			clear(p[:n])
			return 0, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// prepare returns k's trusted table, waiting for a whole-blob
// verification if k needs one first. It returns nil with no error when
// k may be read unverified (lazy mode), after starting its background
// verification.
func (c *Cache) prepare(ctx context.Context, k blobKey) (*table, error) {
	tab, _ := c.table(k.d)
	if tab != nil {
		if tab.size != k.size {
			return nil, fmt.Errorf("blob %s is %d bytes, not %d: %w", k.d, tab.size, k.size, hfserr.ErrIntegrity)
		}
		return tab, nil
	}
	if c.isLazy(k) {
		if err := c.quarantineErr(k); err != nil {
			return nil, err
		}
		c.startBackground(k)
		return nil, nil
	}
	return c.waitVerified(ctx, k)
}

// readChunks fills p with the blob's bytes from off. With a table every
// chunk is checked against it; without one (lazy) chunks are served as
// fetched.
func (c *Cache) readChunks(ctx context.Context, k blobKey, tab *table, p []byte, off int64) (int, error) {
	cs := c.o.ChunkSize
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		i := pos / cs
		coff, ln := chunkSpan(k.size, cs, i)
		lo := pos - coff
		hi := min(ln, lo+int64(len(p)-n))
		m, err := c.chunkRange(ctx, k, tab, i, ln, lo, p[n:n+int(hi-lo)])
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// chunkRange copies bytes [lo, lo+len(dst)) of chunk i (ln bytes long)
// into dst.
func (c *Cache) chunkRange(ctx context.Context, k blobKey, tab *table, i, ln, lo int64, dst []byte) (int, error) {
	ck := chunkKey{k.d, i}
	if m, ok := c.memGet(ck, ln, tab); ok {
		defer m.rb.release()
		return copy(dst, m.data[lo:]), nil
	}
	if c.store.readRange(ck, ln, tab, lo, dst) {
		return len(dst), nil
	}
	res, err := c.startChunk(k, i).wait(ctx)
	if err == nil && !res.rb.acquire() {
		// The read-ahead run's buffer went back to the pool: the chunk
		// comes again, from the disk or the source, in a buffer of its own.
		res, err = c.startChunk(k, i).wait(ctx)
		if err == nil && !res.rb.acquire() {
			err = fmt.Errorf("%s chunk %d: read-ahead buffer gone twice: %w", k.d, i, hfserr.ErrUnavailable)
		}
	}
	if err != nil {
		return 0, err
	}
	defer res.rb.release()
	if tab != nil && !res.verified && !tab.check(i, res.data) {
		return 0, fmt.Errorf("%s chunk %d does not match its verified table: %w", k.d, i, hfserr.ErrIntegrity)
	}
	return copy(dst, res.data[lo:]), nil
}
