package cache

import (
	"context"
	"fmt"
	"io"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Peek returns bytes [off, off+n) of blob d (size bytes) WITHOUT the
// blob's verification: for a caller that checks them against another
// digest it trusts before using them (the table of contents of an
// eStargz or zstd:chunked layer, whose sha256 the verified manifest
// names). A blob that verified already is read from disk through a
// Reader (its chunks checked against the trusted table); otherwise the
// bytes come straight from the Source under ctx and are neither stored
// nor counted as the blob's. Peek never serves bytes to a reader of d.
func (c *Cache) Peek(ctx context.Context, d digest.Digest, size, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off+n > size {
		return nil, fmt.Errorf("peek %s bytes %d+%d of %d: %w", d, off, n, size, hfserr.ErrInvalid)
	}
	if n == 0 {
		return nil, nil
	}
	if c.Status(d, size).Verified {
		r := c.Open(d, size)
		defer r.Close()
		b := make([]byte, n)
		if m, err := r.ReadAt(ctx, b, off); int64(m) < n {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("short read: %w", hfserr.ErrIntegrity)
			}
			return nil, fmt.Errorf("peek %s bytes %d+%d: %w", d, off, n, err)
		}
		return b, nil
	}
	b, err := c.src.FetchRange(ctx, d, off, n)
	if err != nil {
		return nil, fmt.Errorf("peek %s bytes %d+%d: %w", d, off, n, err)
	}
	if int64(len(b)) != n {
		return nil, fmt.Errorf("peek %s bytes %d+%d: got %d bytes: %w", d, off, n, len(b), hfserr.ErrIntegrity)
	}
	return b, nil
}
