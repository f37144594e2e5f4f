package fetch

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

func TestFetchRange(t *testing.T) {
	f := newFixture(t)
	size := int64(len(f.blob))
	stripRange := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		r.Header.Del("Range")
		next.ServeHTTP(w, r)
	}
	for _, tc := range []struct {
		name      string
		hook      hook
		d         digest.Digest
		off, n    int64
		want      error // nil: expect f.blob[off:off+n]
		requests  int   // blob GETs expected
		blobBytes int64 // -1: don't check
	}{
		{name: "first byte", off: 0, n: 1, requests: 1, blobBytes: 1},
		{name: "whole blob", off: 0, n: size, requests: 1, blobBytes: size},
		{name: "middle", off: 12345, n: 4096, requests: 1, blobBytes: 4096},
		{name: "last byte", off: size - 1, n: 1, requests: 1, blobBytes: 1},
		{name: "empty range makes no request", off: 77, n: 0, requests: 0, blobBytes: 0},
		{name: "past the end", off: size - 10, n: 11, want: hfserr.ErrInvalid, requests: 1, blobBytes: 0},
		{name: "starts after the end", off: size, n: 1, want: hfserr.ErrInvalid, requests: 1, blobBytes: 0},
		{name: "negative offset", off: -1, n: 1, want: hfserr.ErrInvalid, blobBytes: 0},
		{name: "negative length", off: 0, n: -1, want: hfserr.ErrInvalid, blobBytes: 0},
		{name: "overflowing range", off: 1 << 62, n: 1 << 62, want: hfserr.ErrInvalid, blobBytes: 0},
		{name: "unknown blob", d: digest.Of([]byte("nope")), off: 0, n: 1, want: hfserr.ErrNotFound, requests: 1, blobBytes: 0},
		// Server ignores Range and sends 200 with the whole blob: one request,
		// skipped bytes counted, nothing read past the range.
		{name: "ignored range at start", hook: stripRange, off: 0, n: 100, requests: 1, blobBytes: 100},
		{name: "ignored range in middle", hook: stripRange, off: 50_000, n: 1000, requests: 1, blobBytes: 51_000},
		{name: "ignored range at end", hook: stripRange, off: size - 7, n: 7, requests: 1, blobBytes: size},
		{name: "ignored range past end", hook: stripRange, off: size - 7, n: 8, want: hfserr.ErrInvalid, requests: 1, blobBytes: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.setHook(tc.hook)
			f.resetCounts()
			c := f.client(t)
			d := tc.d
			if d.IsZero() {
				d = f.blobDigest
			}
			got, err := c.FetchRange(context.Background(), d, tc.off, tc.n)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if want := f.blob[tc.off : tc.off+tc.n]; !bytes.Equal(got, want) || int64(len(got)) != tc.n {
					t.Fatalf("got %d bytes, want %d matching bytes", len(got), len(want))
				}
			}
			if n := f.count("GET blob"); n != tc.requests {
				t.Errorf("blob GETs = %d, want %d", n, tc.requests)
			}
			if tc.blobBytes >= 0 && c.Stats().BlobBytes != tc.blobBytes {
				t.Errorf("BlobBytes = %d, want %d", c.Stats().BlobBytes, tc.blobBytes)
			}
		})
	}
}

func TestStatBlob(t *testing.T) {
	f := newFixture(t)
	headWithoutLength := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodHead && kind(r) == "blob" {
			w.WriteHeader(http.StatusOK) // no Content-Length on a HEAD
			return
		}
		next.ServeHTTP(w, r)
	}
	for _, tc := range []struct {
		name  string
		hook  hook
		d     digest.Digest
		want  error
		heads int
		gets  int
	}{
		{name: "known", heads: 1},
		{name: "unknown", d: digest.Of([]byte("nope")), want: hfserr.ErrNotFound, heads: 1},
		{name: "no content-length falls back to a ranged GET", hook: headWithoutLength, heads: 1, gets: 1},
		{name: "wrong digest header", hook: func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			w.Header().Set("Docker-Content-Digest", digest.Of(nil).String())
			w.Header().Set("Content-Length", "5")
		}, want: hfserr.ErrIntegrity, heads: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.setHook(tc.hook)
			f.resetCounts()
			d := tc.d
			if d.IsZero() {
				d = f.blobDigest
			}
			size, err := f.client(t).StatBlob(context.Background(), d)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			} else if err != nil || size != int64(len(f.blob)) {
				t.Fatalf("StatBlob = %d, %v; want %d", size, err, len(f.blob))
			}
			if h, g := f.count("HEAD blob"), f.count("GET blob"); h != tc.heads || g != tc.gets {
				t.Errorf("HEADs, GETs = %d, %d; want %d, %d", h, g, tc.heads, tc.gets)
			}
		})
	}
}

// A server that ignores Range answers with the whole blob; a reader going
// through the blob in order continues that one response instead of
// downloading from byte 0 for every range. A range behind the kept
// response asks again.
func TestFetchRangeContinuesAFullBody(t *testing.T) {
	f := newFixture(t)
	f.setHook(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		r.Header.Del("Range")
		next.ServeHTTP(w, r)
	})
	c := f.client(t)
	ctx := context.Background()
	const step = 10_000
	for off := int64(0); off+step <= int64(len(f.blob)); off += 2 * step { // every other range: skips too
		got, err := c.FetchRange(ctx, f.blobDigest, off, step)
		if err != nil || !bytes.Equal(got, f.blob[off:off+step]) {
			t.Fatalf("range at %d: %d bytes, %v", off, len(got), err)
		}
	}
	if n := f.count("GET blob"); n != 1 {
		t.Errorf("%d blob GETs for ranges in order, want 1", n)
	}
	if b := c.Stats().BlobBytes; b > int64(len(f.blob)) {
		t.Errorf("%d blob bytes read for a %d-byte blob", b, len(f.blob))
	}
	got, err := c.FetchRange(ctx, f.blobDigest, 5, 10)
	if err != nil || !bytes.Equal(got, f.blob[5:15]) {
		t.Fatalf("range behind the kept response: %q, %v", got, err)
	}
	if n := f.count("GET blob"); n != 2 {
		t.Errorf("%d blob GETs after a range behind the kept response, want 2", n)
	}
}
