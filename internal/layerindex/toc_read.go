package layerindex

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// chunkCache keeps the most recently decoded and checked chunks of
// layers read through their TOC (decoded, by bytes).
type chunkCache struct{ *decoded[chunkKey] }

type chunkKey struct {
	d         digest.Digest
	in, inner int64
}

// defaultChunkBytes is the decoded chunks kept in memory.
const defaultChunkBytes = 64 << 20

func newChunkCache(max int64) *chunkCache {
	return &chunkCache{newDecoded(1024, max, func(k chunkKey) digest.Digest { return k.d })}
}

// get returns chunk ch of l, decoded through blob and checked.
func (c *chunkCache) get(ctx context.Context, l *Layer, blob Blob, ch *Chunk) ([]byte, error) {
	k := chunkKey{l.Digest, ch.In, ch.Inner}
	if ch.Zeros {
		k = chunkKey{l.Digest, -1, ch.Size}
	}
	key := fmt.Sprintf("%s:%d:%d:%d", l.Digest.Hex(), k.in, k.inner, ch.Size) + ":" + strconv.FormatBool(ch.Zeros)
	return c.decoded.get(ctx, k, ch.Size, key,
		func(ctx context.Context) ([]byte, error) { return l.decodeChunk(ctx, blob, ch) })
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
