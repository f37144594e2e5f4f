package layerindex

import (
	"context"
	"strconv"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/hashfs/hashfs/internal/digest"
)

// spanCache keeps the most recently decoded spans of all layers, so that
// the kernel's 128 KiB reads of one file, and readers of the same file
// through layers/, rootfs/ and the diff_id tar, decode each span once.
// Concurrent readers of one span share one decode, which runs without
// their cancellation (like the cache's shared fetches).
type spanCache struct {
	lru    *lru.Cache[spanKey, []byte]
	flight singleflight.Group
}

type spanKey struct {
	d digest.Digest
	i int
}

// defaultSpans is how many decoded spans are kept: about 16 MiB at the
// default span.
const defaultSpans = 8

func newSpanCache(n int) *spanCache {
	if n <= 0 {
		n = defaultSpans
	}
	c, err := lru.New[spanKey, []byte](n)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &spanCache{lru: c}
}

// get returns span i of l, decoding it through blob if needed.
func (c *spanCache) get(ctx context.Context, l *Layer, blob Blob, i int) ([]byte, error) {
	k := spanKey{l.Digest, i}
	if b, ok := c.lru.Get(k); ok {
		return b, nil
	}
	base := context.WithoutCancel(ctx)
	ch := c.flight.DoChan(l.Digest.Hex()+":"+strconv.Itoa(i), func() (any, error) {
		b, err := l.decodeSpan(base, blob, i)
		if err == nil {
			c.lru.Add(k, b)
		}
		return b, err
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.([]byte), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// drop forgets every span of d.
func (c *spanCache) drop(d digest.Digest) {
	for _, k := range c.lru.Keys() {
		if k.d == d {
			c.lru.Remove(k)
		}
	}
}
