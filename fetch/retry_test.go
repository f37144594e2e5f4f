package fetch

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// dropAfter sends the real response's headers and the first k body bytes,
// then kills the connection.
func dropAfter(k int) hook {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		rec := record(next, r)
		for key, v := range rec.Header() {
			w.Header()[key] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(rec.Body.Len()))
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes()[:k])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
}

func TestRetryPolicy(t *testing.T) {
	f := newFixture(t)
	const off, n = 1000, 5000
	for _, tc := range []struct {
		name     string
		hook     hook
		want     error // nil: success
		requests int   // blob GETs
	}{
		{name: "503 burst then success", hook: failFirst(3, "blob", status(503)), requests: 4},
		{name: "502 twice then success", hook: failFirst(2, "blob", status(502)), requests: 3},
		{name: "429 then success", hook: failFirst(1, "blob", status(429)), requests: 2},
		{name: "503 until exhausted", hook: failFirst(100, "blob", status(503)), want: hfserr.ErrUnavailable, requests: 5},
		{name: "connection dropped mid-body", hook: failFirst(2, "blob", dropAfter(100)), requests: 3},
		{name: "connection dropped before body", hook: failFirst(1, "blob", dropAfter(0)), requests: 2},
		{name: "wrong Content-Range start", hook: failFirst(1, "blob", status(206, "Content-Range", "bytes 0-4999/100000")), requests: 2},
		{name: "garbled Content-Range", hook: failFirst(1, "blob", status(206, "Content-Range", "bytes x")), requests: 2},
		{name: "403 from registry is final", hook: failFirst(100, "blob", status(403)), want: hfserr.ErrDenied, requests: 1},
		{name: "401 from registry is final", hook: failFirst(100, "blob", status(401)), want: hfserr.ErrDenied, requests: 1},
		{name: "404 is final", hook: failFirst(100, "blob", status(404)), want: hfserr.ErrNotFound, requests: 1},
		{name: "400 is final", hook: failFirst(100, "blob", status(400)), want: hfserr.ErrInvalid, requests: 1},
		{name: "501 is final", hook: failFirst(100, "blob", status(501)), want: hfserr.ErrUnavailable, requests: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.setHook(tc.hook)
			f.resetCounts()
			start := time.Now()
			got, err := f.client(t).FetchRange(context.Background(), f.blobDigest, off, n)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			} else if err != nil || !bytes.Equal(got, f.blob[off:off+n]) {
				t.Fatalf("FetchRange: %d bytes, %v", len(got), err)
			}
			if r := f.count("GET blob"); r != tc.requests {
				t.Errorf("blob GETs = %d, want %d", r, tc.requests)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("took %v with a 1ms retry base", el)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	f := newFixture(t)
	f.setHook(failFirst(1, "blob", status(429, "Retry-After", "1")))
	start := time.Now()
	got, err := f.client(t).FetchRange(context.Background(), f.blobDigest, 0, 10)
	if err != nil || !bytes.Equal(got, f.blob[:10]) {
		t.Fatalf("FetchRange: %v", err)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Errorf("retried after %v, server asked for 1s", el)
	}
	if r := f.count("GET blob"); r != 2 {
		t.Errorf("blob GETs = %d, want 2", r)
	}
}

func TestRetryStopsOnCancel(t *testing.T) {
	f := newFixture(t)
	f.setHook(failFirst(100, "blob", status(503, "Retry-After", "8")))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.client(t).FetchRange(ctx, f.blobDigest, 0, 10)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, hfserr.ErrUnavailable) {
		t.Fatalf("err = %v, want DeadlineExceeded only", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("cancel took %v", el)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := f.client(t).Manifest(ctx, "latest"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: err = %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"3", 3 * time.Second},
		{" 2 ", 2 * time.Second},
		{"10", 10 * time.Second},
		{"3600", maxRetryAfter},
		{"99999999999999999999", maxRetryAfter},
		{"-99999999999999999999", 0},
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
		{now.Add(4 * time.Second).Format(http.TimeFormat), 4 * time.Second},
		{now.Add(time.Hour).Format(http.TimeFormat), maxRetryAfter},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	c := &meter{retryBase: 200 * time.Millisecond}
	for _, tc := range []struct {
		i        int
		lo, hi   time.Duration
		retryAft time.Duration
	}{
		{i: 0, lo: 100 * time.Millisecond, hi: 200 * time.Millisecond},
		{i: 1, lo: 200 * time.Millisecond, hi: 400 * time.Millisecond},
		{i: 3, lo: 800 * time.Millisecond, hi: 1600 * time.Millisecond},
		{i: 10, lo: 2 * time.Second, hi: 4 * time.Second},
		{i: 1000, lo: 2 * time.Second, hi: 4 * time.Second},
		{i: 0, retryAft: 7 * time.Second, lo: 7 * time.Second, hi: 7 * time.Second},
	} {
		for range 20 {
			if d := c.backoff(tc.i, tc.retryAft); d < tc.lo || d > tc.hi {
				t.Fatalf("backoff(%d, %v) = %v, want in [%v, %v]", tc.i, tc.retryAft, d, tc.lo, tc.hi)
			}
		}
	}
}
