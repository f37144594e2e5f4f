package layerindex

import (
	"context"
	"math"
	"strconv"

	"github.com/hashfs/hashfs/internal/digest"
)

// spanCache keeps the most recently decoded spans of all layers
// (decoded, by count).
type spanCache struct{ *decoded[spanKey] }

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
	return &spanCache{newDecoded(n, math.MaxInt64, func(k spanKey) digest.Digest { return k.d })}
}

// get returns span i of l, decoding it through blob if needed.
func (c *spanCache) get(ctx context.Context, l *Layer, blob Blob, i int) ([]byte, error) {
	return c.decoded.get(ctx, spanKey{l.Digest, i}, -1, l.Digest.Hex()+":"+strconv.Itoa(i),
		func(ctx context.Context) ([]byte, error) { return l.decodeSpan(ctx, blob, i) })
}
