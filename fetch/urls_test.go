package fetch

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// blobHost serves one blob at every path, with Range support, behind a
// swappable hook; it counts requests by method and fails the test if it
// ever sees an Authorization header.
type blobHost struct {
	t    *testing.T
	srv  *httptest.Server
	blob []byte

	mu     sync.Mutex
	hook   hook
	counts map[string]int
}

func newBlobHost(t *testing.T, blob []byte) *blobHost {
	h := &blobHost{t: t, blob: blob, counts: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			t.Errorf("blob host got Authorization %q", a)
		}
		h.mu.Lock()
		h.counts[r.Method]++
		hk := h.hook
		h.mu.Unlock()
		serve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(h.blob))
		})
		if hk != nil {
			hk(w, r, serve)
			return
		}
		serve(w, r)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *blobHost) setHook(k hook) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hook = k
	clear(h.counts)
}

func (h *blobHost) count(method string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[method]
}

func urlOpts(t *testing.T) Options {
	return Options{
		RetryBase: time.Millisecond,
		Retries:   2,
		// A keychain with credentials, which a URLSource must never use.
		Keychain: staticKeychain{auth: &authn.Basic{Username: testUser, Password: testPass}},
		Logger:   testLogger(t),
	}
}

func TestNewURLSource(t *testing.T) {
	for _, tc := range []struct {
		urls []string
		want error // nil: accepted
		name string
	}{
		{urls: []string{"https://cdn.example/layer.tar.gz"}, name: "https://cdn.example/layer.tar.gz"},
		{urls: []string{"http://u:secret@cdn.example:8080/l?sig=secret#frag"}, name: "http://cdn.example:8080/l?REDACTED"},
		{urls: []string{"HTTPS://cdn.example/x", "http://other/y"}, name: "https://cdn.example/x"},
		{urls: nil, want: hfserr.ErrInvalid},
		{urls: []string{"ftp://cdn.example/x"}, want: hfserr.ErrInvalid},
		{urls: []string{"file:///etc/passwd"}, want: hfserr.ErrInvalid},
		{urls: []string{"https://ok.example/x", "/relative"}, want: hfserr.ErrInvalid},
		{urls: []string{"http://"}, want: hfserr.ErrInvalid},
		{urls: []string{"http:opaque"}, want: hfserr.ErrInvalid},
		{urls: []string{"http://bad host/"}, want: hfserr.ErrInvalid},
	} {
		s, err := NewURLSource(tc.urls, Options{})
		if tc.want != nil {
			if !errors.Is(err, tc.want) {
				t.Errorf("NewURLSource(%q) = %v, want %v", tc.urls, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks a secret: %v", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("NewURLSource(%q): %v", tc.urls, err)
			continue
		}
		if s.Name() != tc.name {
			t.Errorf("Name() = %q, want %q", s.Name(), tc.name)
		}
	}
}

func TestURLSourceStatBlob(t *testing.T) {
	blob := bytes.Repeat([]byte("0123456789"), 1000)
	h := newBlobHost(t, blob)
	gone := newBlobHost(t, nil)
	gone.setHook(status(404))
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	noLength := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	}
	for _, tc := range []struct {
		name       string
		hook       hook
		urls       []string
		want       error
		heads, get int // at h
	}{
		{name: "HEAD", heads: 1},
		{name: "HEAD without length falls back to GET", hook: noLength, heads: 1, get: 1},
		{name: "HEAD refused falls back to GET", hook: failFirst(1, "other", status(405)), heads: 1, get: 1},
		{name: "HEAD forbidden falls back to GET", hook: failFirst(1, "other", status(403)), heads: 1, get: 1},
		{name: "not found", hook: status(404), want: hfserr.ErrNotFound, heads: 1},
		{name: "down", hook: status(503), want: hfserr.ErrUnavailable, heads: 3},
		{name: "second URL after a 404", urls: []string{gone.srv.URL + "/x", ""}, heads: 1},
		{name: "second URL after a dead host", urls: []string{closed.URL + "/x", ""}, heads: 1},
		{name: "all missing", urls: []string{gone.srv.URL + "/x", gone.srv.URL + "/y"}, want: hfserr.ErrNotFound},
		{name: "one missing, one down", hook: status(503), urls: []string{gone.srv.URL + "/x", ""}, want: hfserr.ErrUnavailable, heads: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.setHook(tc.hook)
			urls := tc.urls
			if urls == nil {
				urls = []string{""}
			}
			urls = append([]string(nil), urls...)
			for i, u := range urls {
				if u == "" {
					urls[i] = h.srv.URL + "/layer"
				}
			}
			s, err := NewURLSource(urls, urlOpts(t))
			if err != nil {
				t.Fatal(err)
			}
			size, err := s.StatBlob(context.Background(), digest.Of(blob))
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			} else if err != nil || size != int64(len(blob)) {
				t.Fatalf("StatBlob = %d, %v", size, err)
			}
			if hd, g := h.count(http.MethodHead), h.count(http.MethodGet); hd != tc.heads || g != tc.get {
				t.Errorf("HEADs, GETs = %d, %d; want %d, %d", hd, g, tc.heads, tc.get)
			}
		})
	}
}

func TestURLSourceFetchRange(t *testing.T) {
	blob := bytes.Repeat([]byte("abcdefghij"), 1000)
	size := int64(len(blob))
	h := newBlobHost(t, blob)
	down := newBlobHost(t, nil)
	down.setHook(status(500))
	stripRange := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		r.Header.Del("Range")
		next.ServeHTTP(w, r)
	}
	for _, tc := range []struct {
		name      string
		hook      hook
		first     string // URL tried before h
		off, n    int64
		want      error
		gets      int // at h
		blobBytes int64
	}{
		{name: "middle", off: 1234, n: 100, gets: 1, blobBytes: 100},
		{name: "empty", off: 5, n: 0, gets: 0},
		{name: "past the end", off: size - 1, n: 2, want: hfserr.ErrInvalid, gets: 1},
		{name: "bad range", off: -1, n: 2, want: hfserr.ErrInvalid},
		{name: "ignored Range is skipped forward", hook: stripRange, off: 5000, n: 10, gets: 1, blobBytes: 5010},
		{name: "wrong Content-Range is retried", hook: failFirst(1, "other", status(206, "Content-Range", "bytes 0-9/10000")), off: 10, n: 10, gets: 2, blobBytes: 10},
		{name: "expired signature from the origin is final", hook: status(403), off: 0, n: 1, want: hfserr.ErrDenied, gets: 1},
		{name: "falls through a down URL", first: down.srv.URL + "/x", off: 0, n: 10, gets: 1, blobBytes: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.setHook(tc.hook)
			urls := []string{h.srv.URL + "/layer?sig=s3cret"}
			if tc.first != "" {
				urls = append([]string{tc.first}, urls...)
			}
			s, err := NewURLSource(urls, urlOpts(t))
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.FetchRange(context.Background(), digest.Of(blob), tc.off, tc.n)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error leaks the signature: %v", err)
				}
			} else if err != nil || !bytes.Equal(got, blob[tc.off:tc.off+tc.n]) {
				t.Fatalf("FetchRange = %d bytes, %v", len(got), err)
			}
			if g := h.count(http.MethodGet); g != tc.gets {
				t.Errorf("GETs = %d, want %d", g, tc.gets)
			}
			if tc.want == nil && s.Stats().BlobBytes != tc.blobBytes {
				t.Errorf("BlobBytes = %d, want %d", s.Stats().BlobBytes, tc.blobBytes)
			}
		})
	}
}

// A URLSource learnt for its digest serves a Set.
func TestURLSourceInSet(t *testing.T) {
	blob := []byte("foreign layer bytes")
	h := newBlobHost(t, blob)
	src, err := NewURLSource([]string{h.srv.URL + "/foreign"}, urlOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSet(nil, newFake("registry"))
	s.Learn(digest.Of(blob), src)
	got, err := s.FetchRange(context.Background(), digest.Of(blob), 0, int64(len(blob)))
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("FetchRange = %q, %v", got, err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
