package fetch

import (
	"bytes"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hashfs/hashfs/internal/digest"
)

// hook intercepts a request to the test registry; next is the real registry.
type hook func(w http.ResponseWriter, r *http.Request, next http.Handler)

// fixture is an in-process registry holding one blob and one tagged image,
// with a swappable hook in front and per-kind request counters.
type fixture struct {
	srv  *httptest.Server
	reg  http.Handler
	repo string // "127.0.0.1:port/test/repo"

	blob       []byte
	blobDigest digest.Digest
	img        v1.Image
	manDigest  digest.Digest
	manBody    []byte
	manType    string

	mu     sync.Mutex
	hook   hook
	counts map[string]int // "GET blob", "HEAD manifest", "GET tags", "GET ping", ...
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		reg:    registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		counts: map[string]int{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.repo = strings.TrimPrefix(f.srv.URL, "http://") + "/test/repo"

	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	f.blob = make([]byte, 100_000)
	for i := range f.blob {
		f.blob[i] = byte(rng.Uint32())
	}
	f.blobDigest = digest.Of(f.blob)
	repo, err := name.NewRepository(f.repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(repo, static.NewLayer(f.blob, types.OCILayer)); err != nil {
		t.Fatal(err)
	}
	f.img, err = random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag("latest"), f.img); err != nil {
		t.Fatal(err)
	}
	f.manBody, _ = f.img.RawManifest()
	f.manDigest = digest.Of(f.manBody)
	mt, _ := f.img.MediaType()
	f.manType = string(mt)
	f.resetCounts()
	return f
}

func (f *fixture) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.counts[r.Method+" "+kind(r)]++
	h := f.hook
	f.mu.Unlock()
	if h != nil {
		h(w, r, f.reg)
		return
	}
	f.reg.ServeHTTP(w, r)
}

func kind(r *http.Request) string {
	p := r.URL.Path
	switch {
	case p == "/v2/":
		return "ping"
	case strings.Contains(p, "/blobs/"):
		return "blob"
	case strings.Contains(p, "/manifests/"):
		return "manifest"
	case strings.HasSuffix(p, "/tags/list"):
		return "tags"
	}
	return "other"
}

func (f *fixture) setHook(h hook) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = h
}

func (f *fixture) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[key]
}

func (f *fixture) resetCounts() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.counts)
}

// client returns a Client on the fixture with fast retries and anonymous auth.
func (f *fixture) client(t *testing.T, mod ...func(*Options)) *Client {
	t.Helper()
	o := Options{
		Keychain:  staticKeychain{auth: authn.Anonymous},
		RetryBase: time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mod {
		m(&o)
	}
	c, err := New(f.repo, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// failFirst returns a hook that lets fail handle the first n requests of the
// given kind and passes everything else to the registry.
func failFirst(n int, k string, fail hook) hook {
	var mu sync.Mutex
	seen := 0
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if kind(r) == k {
			mu.Lock()
			seen++
			mine := seen <= n
			mu.Unlock()
			if mine {
				fail(w, r, next)
				return
			}
		}
		next.ServeHTTP(w, r)
	}
}

func status(code int, hdr ...string) hook {
	return func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
	}
}

// record runs next on r and captures the response.
func record(next http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	return rec
}

// replay writes a recorded response with a replacement body.
func replay(w http.ResponseWriter, rec *httptest.ResponseRecorder, body []byte) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

type staticKeychain struct {
	auth authn.Authenticator
	err  error
}

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.auth, k.err }

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// syncBuffer collects log output from concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
