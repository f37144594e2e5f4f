package layerindex

import (
	"context"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/hashfs/hashfs/internal/digest"
)

// decoded keeps the most recently decoded pieces of layers (gzip or zstd
// spans, TOC chunks), within a count and a byte budget, so that the
// kernel's 128 KiB reads of one piece, and readers of the same file
// through layers/, rootfs/ and the diff_id tar, decode it once.
// Concurrent readers of one piece share one decode, which runs without
// their cancellation (like the cache's shared fetches).
type decoded[K comparable] struct {
	mu     sync.Mutex // guards bytes (the LRU calls onEvict under its own lock)
	bytes  int64
	max    int64 // bytes
	lru    *lru.Cache[K, []byte]
	flight singleflight.Group
	layer  func(K) digest.Digest // the layer a key belongs to, for drop
}

func newDecoded[K comparable](entries int, maxBytes int64, layer func(K) digest.Digest) *decoded[K] {
	c := &decoded[K]{max: maxBytes, layer: layer}
	l, err := lru.NewWithEvict[K, []byte](entries, func(_ K, b []byte) {
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

// get returns the piece k, of n bytes (any length if n < 0), running
// decode once for all who ask at the same time (named by flightKey) if
// it is not kept.
func (c *decoded[K]) get(ctx context.Context, k K, n int64, flightKey string, decode func(context.Context) ([]byte, error)) ([]byte, error) {
	if b, ok := c.lru.Get(k); ok && (n < 0 || int64(len(b)) == n) {
		return b, nil
	}
	base := context.WithoutCancel(ctx)
	res := c.flight.DoChan(flightKey, func() (any, error) {
		b, err := decode(base)
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

func (c *decoded[K]) add(k K, b []byte) {
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

// drop forgets every piece of layer d.
func (c *decoded[K]) drop(d digest.Digest) {
	for _, k := range c.lru.Keys() {
		if c.layer(k) == d {
			c.lru.Remove(k)
		}
	}
}
