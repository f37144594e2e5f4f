package fetch

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"

	"github.com/hashfs/hashfs/internal/bufpool"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// FetchRange returns exactly bytes [off, off+n) of blob d. It does not verify
// them against d: only a whole blob can be checked, which is the cache's job.
//
// A 206 must start where asked; a 200 (the server ignored Range) is consumed
// by skipping off bytes, and kept for the next range (see rangeless.go). A range past the end of the blob
// wraps hfserr.ErrInvalid; a missing blob ErrNotFound; a registry refusal
// ErrDenied; transient failures are retried and then wrap ErrUnavailable.
func (c *Client) FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	what := fmt.Sprintf("fetch %s [%d, %d+%d)", d, off, off, n)
	if err := checkRange(off, n); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return []byte{}, nil
	}
	if b := c.full.take(d, off); b != nil {
		// The server ignored Range before: continue that response.
		if out, err := b.read(off, n, c.bufs); err == nil {
			c.full.put(d, b)
			return out, nil
		}
		b.body.Close() // and ask again
	}
	u := c.url("/blobs/" + d.String())
	hdr := rangeHeader(off, n)
	var out []byte
	err := c.retry(ctx, what, func(ctx context.Context, hc *http.Client) error {
		resp, err := c.do(ctx, hc, http.MethodGet, u, hdr, true)
		if err != nil {
			return err
		}
		if isFullBody(resp) {
			b := &fullBody{body: resp.Body, size: resp.ContentLength}
			if out, err = b.read(off, n, c.bufs); err != nil {
				resp.Body.Close()
				return err
			}
			c.full.put(d, b) // kept for the next range of d (see rangeless.go)
			return nil
		}
		defer resp.Body.Close()
		out, err = readRange(resp, off, n, c.bufs, c.statusError)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// checkRange refuses negative or overflowing ranges with hfserr.ErrInvalid.
func checkRange(off, n int64) error {
	if off < 0 || n < 0 || off > math.MaxInt64-n || n > math.MaxInt {
		return fmt.Errorf("bad range: %w", hfserr.ErrInvalid)
	}
	return nil
}

// rangeHeader asks for bytes [off, off+n), n > 0.
func rangeHeader(off, n int64) http.Header {
	return http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", off, off+n-1)}}
}

// readRange returns bytes [off, off+n) from the response to a ranged GET:
// a 206 must start where asked; a 200 (the server ignored Range) is
// consumed by skipping off bytes. Any other status goes to unwanted.
func readRange(resp *http.Response, off, n int64, bufs *bufpool.Pool, unwanted func(*http.Response) error) ([]byte, error) {
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if err := checkContentRange(resp.Header.Get("Content-Range"), off, n); err != nil {
			return nil, err
		}
	case http.StatusOK:
		if resp.ContentLength >= 0 && resp.ContentLength < off+n {
			return nil, fmt.Errorf("range beyond end of %d-byte blob: %w", resp.ContentLength, hfserr.ErrInvalid)
		}
		if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
			return nil, transient(fmt.Errorf("skip %d bytes of full-blob response: %w", off, err))
		}
	default:
		return nil, unwanted(resp)
	}
	buf := bufs.Get(int(n))
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		bufs.Put(buf)
		return nil, transient(fmt.Errorf("read body: %w", err))
	}
	if resp.StatusCode == http.StatusPartialContent {
		// Reach EOF so the connection can be reused.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	}
	return buf, nil
}

// checkContentRange accepts a 206's Content-Range if it covers [off, off+n).
func checkContentRange(cr string, off, n int64) error {
	start, end, total, err := parseContentRange(cr)
	if err != nil {
		return transient(err)
	}
	if start != off {
		return transient(fmt.Errorf("server sent range from %d, asked for %d", start, off))
	}
	if end < off+n-1 {
		if total >= 0 && end == total-1 {
			return fmt.Errorf("range beyond end of %d-byte blob: %w", total, hfserr.ErrInvalid)
		}
		return transient(fmt.Errorf("server sent range to %d, asked for %d", end, off+n-1))
	}
	return nil
}

// StatBlob returns the size of blob d from a HEAD request. If the server
// sends no Content-Length it asks for the first byte and reads the total
// from Content-Range.
func (c *Client) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	what := "stat " + d.String()
	u := c.url("/blobs/" + d.String())
	size := int64(-1)
	err := c.retry(ctx, what, func(ctx context.Context, hc *http.Client) error {
		resp, err := c.do(ctx, hc, http.MethodHead, u, nil, false)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return c.statusError(resp)
		}
		if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
			return fmt.Errorf("registry reports digest %s: %w", clip(got), hfserr.ErrIntegrity)
		}
		size = resp.ContentLength
		return nil
	})
	if err != nil {
		return 0, err
	}
	if size >= 0 {
		return size, nil
	}
	return c.statBlobByGet(ctx, what, u)
}

// statBlobByGet learns a blob's size from a one-byte ranged GET.
func (c *Client) statBlobByGet(ctx context.Context, what, u string) (int64, error) {
	var size int64
	err := c.retry(ctx, what, func(ctx context.Context, hc *http.Client) error {
		resp, err := c.do(ctx, hc, http.MethodGet, u, rangeHeader(0, 1), true)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		size, err = sizeFromRange(resp, c.statusError)
		return err
	})
	if err != nil {
		return 0, err
	}
	return size, nil
}

// sizeFromRange reads a blob's total size from the response to a one-byte
// ranged GET. Any status but 206 and 200 goes to unwanted.
func sizeFromRange(resp *http.Response, unwanted func(*http.Response) error) (int64, error) {
	size := int64(-1)
	switch resp.StatusCode {
	case http.StatusPartialContent:
		_, _, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return 0, transient(err)
		}
		size = total
	case http.StatusOK:
		size = resp.ContentLength
	default:
		return 0, unwanted(resp)
	}
	if size < 0 {
		return 0, fmt.Errorf("server did not say how big the blob is: %w", hfserr.ErrUnavailable)
	}
	return size, nil
}
