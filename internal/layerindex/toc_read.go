package layerindex

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// chunkCache keeps the most recently decoded and checked chunks of
// layers read through their TOC, up to a byte budget, so that the
// kernel's 128 KiB reads of one chunk decode it once. Concurrent readers
// of one chunk share one decode, run without their cancellation.
type chunkCache struct {
	mu     sync.Mutex // guards bytes (the LRU calls onEvict under its own lock)
	bytes  int64
	max    int64
	lru    *lru.Cache[chunkKey, []byte]
	flight singleflight.Group
}

type chunkKey struct {
	d         digest.Digest
	in, inner int64
}

// defaultChunkBytes is the decoded chunks kept in memory.
const defaultChunkBytes = 64 << 20

func newChunkCache(max int64) *chunkCache {
	c := &chunkCache{max: max}
	l, err := lru.NewWithEvict[chunkKey, []byte](1024, func(_ chunkKey, b []byte) {
		c.mu.Lock()
		c.bytes -= int64(len(b))
		c.mu.Unlock()
	})
	if err != nil {
		panic(err) // only for a non-positive size
	}
	c.lru = l
	return c
}

func (c *chunkCache) add(k chunkKey, b []byte) {
	c.lru.Add(k, b)
	c.mu.Lock()
	c.bytes += int64(len(b))
	c.mu.Unlock()
	for {
		c.mu.Lock()
		over := c.bytes > c.max
		c.mu.Unlock()
		if !over || c.lru.Len() <= 1 {
			return
		}
		c.lru.RemoveOldest()
	}
}

// get returns chunk ch of l, decoded through blob and checked.
func (c *chunkCache) get(ctx context.Context, l *Layer, blob Blob, ch *Chunk) ([]byte, error) {
	k := chunkKey{l.Digest, ch.In, ch.Inner}
	if ch.Zeros {
		k = chunkKey{l.Digest, -1, ch.Size}
	}
	if b, ok := c.lru.Get(k); ok && int64(len(b)) == ch.Size {
		return b, nil
	}
	base := context.WithoutCancel(ctx)
	key := fmt.Sprintf("%s:%d:%d:%d", l.Digest.Hex(), k.in, k.inner, ch.Size) + ":" + strconv.FormatBool(ch.Zeros)
	res := c.flight.DoChan(key, func() (any, error) {
		b, err := l.decodeChunk(base, blob, ch)
		if err == nil {
			c.add(k, b)
		}
		return b, err
	})
	select {
	case r := <-res:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]byte), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// drop forgets every chunk of d.
func (c *chunkCache) drop(d digest.Digest) {
	for _, k := range c.lru.Keys() {
		if k.d == d {
			c.lru.Remove(k)
		}
	}
}

// decodeChunk decodes chunk ch from the layer's compressed bytes (read
// through blob, so verified or under the lazy rules like any read of
// the layer) and checks it against its digest from the TOC.
func (l *Layer) decodeChunk(ctx context.Context, blob Blob, ch *Chunk) ([]byte, error) {
	b := make([]byte, ch.Size)
	if !ch.Zeros {
		src := newSeqReader(ctx, blob, ch.End, ch.In, int(min(max(ch.End-ch.In, 4<<10), readBuffer)))
		var r io.Reader
		switch l.Format {
		case Gzip:
			z, err := resumeGzip(src, Checkpoint{In: ch.In * 8, Kind: MemberStart}, nil)
			if err != nil {
				return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
			}
			r = z
		case Zstd:
			z, err := newZstdReader(src, 0)
			if err != nil {
				return nil, err
			}
			defer z.Close()
			r = z
		default:
			return nil, fmt.Errorf("layer %s: chunks of a %s layer: %w", l.Digest, l.Format, hfserr.ErrInvalid)
		}
		_, err := io.CopyN(io.Discard, r, ch.Inner)
		if err == nil {
			_, err = io.ReadFull(r, b)
		}
		if err != nil {
			if err = streamErr(err); errors.Is(err, hfserr.ErrInvalid) {
				// The TOC, checked against the manifest, says a chunk is
				// there: bytes that do not decode are not the layer's.
				err = fmt.Errorf("%v: %w", err, hfserr.ErrIntegrity)
			}
			return nil, fmt.Errorf("layer %s: chunk at %d: %w", l.Digest, ch.In, err)
		}
	}
	if got := digest.Of(b); got != ch.Digest {
		return nil, fmt.Errorf("layer %s: chunk of %d bytes at %d (+%d) decodes to %s, its TOC says %s: %w",
			l.Digest, ch.Size, ch.In, ch.Inner, got, ch.Digest, hfserr.ErrIntegrity)
	}
	return b, nil
}

// readChunks fills p from offset off of file e of a layer with a TOC.
func (f *File) readChunks(ctx context.Context, p []byte, off int64) (int, error) {
	l, e := f.s.l, f.e
	if err := l.Check(); err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		i := sort.Search(len(e.Chunks), func(i int) bool { return e.Chunks[i].Off+e.Chunks[i].Size > pos })
		if i == len(e.Chunks) {
			return n, fmt.Errorf("%s: no chunk at %d: %w", e.Name, pos, hfserr.ErrIntegrity)
		}
		ch := &e.Chunks[i]
		b, err := l.chunks.get(ctx, l, f.s.blob, ch)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], b[pos-ch.Off:])
	}
	return n, nil
}
