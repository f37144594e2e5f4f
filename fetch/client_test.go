package fetch

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/hashfs/hashfs/internal/hfserr"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		plain    bool
		scheme   string
	}{
		{in: "127.0.0.1:5000/ns/repo", want: "127.0.0.1:5000/ns/repo", scheme: "http"},
		{in: "localhost:5000/repo", want: "localhost:5000/repo", scheme: "http"},
		{in: "busybox", want: "index.docker.io/library/busybox", scheme: "https"},
		{in: "docker.io/library/busybox", want: "index.docker.io/library/busybox", scheme: "https"},
		{in: "ghcr.io/owner/name", want: "ghcr.io/owner/name", scheme: "https"},
		{in: "registry.example:8443/a/b/c", want: "registry.example:8443/a/b/c", scheme: "https"},
		{in: "registry.example/a", want: "registry.example/a", plain: true, scheme: "http"},
	} {
		c, err := New(tc.in, Options{PlainHTTP: tc.plain})
		if err != nil {
			t.Errorf("New(%q): %v", tc.in, err)
			continue
		}
		if got := c.Repository(); got != tc.want {
			t.Errorf("New(%q).Repository() = %q, want %q", tc.in, got, tc.want)
		}
		if u := c.url("/tags/list"); !strings.HasPrefix(u, tc.scheme+"://") {
			t.Errorf("New(%q) URL %q, want scheme %s", tc.in, u, tc.scheme)
		}
	}
	for _, bad := range []string{
		"",
		"ghcr.io/Owner/name",
		"busybox:latest",
		"ghcr.io/a/b@sha256:9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37",
		"foo bar",
		"ghcr.io/",
		"a//b",
		"ghcr.io/a/b/",
	} {
		c, err := New(bad, Options{})
		if !errors.Is(err, hfserr.ErrInvalid) {
			t.Errorf("New(%q) = %v, %v; want ErrInvalid", bad, c, err)
		}
	}
}

func TestPing(t *testing.T) {
	f := newFixture(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedRepo := strings.TrimPrefix(closed.URL, "http://") + "/test/repo"
	closed.Close()
	for _, tc := range []struct {
		name string
		repo string
		hook hook
		want error
	}{
		{name: "reachable"},
		{name: "unknown repository", repo: strings.TrimSuffix(f.repo, "/test/repo") + "/no/such", want: hfserr.ErrNotFound},
		{name: "unreachable", repo: closedRepo, want: hfserr.ErrUnavailable},
		{name: "registry down", hook: status(503), want: hfserr.ErrUnavailable},
		{name: "registry denies", hook: status(403), want: hfserr.ErrDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.setHook(tc.hook)
			repo := tc.repo
			if repo == "" {
				repo = f.repo
			}
			c, err := New(repo, Options{Keychain: staticKeychain{auth: authn.Anonymous}, RetryBase: time.Millisecond, Retries: 2})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Ping(context.Background())
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Ping: %v, want %v", err, tc.want)
			}
			if c.Stats().Requests == 0 {
				t.Error("no requests counted")
			}
		})
	}
}

// A registry that is down when the client is first used must be picked up
// later without a new Client.
func TestTransportRebuiltAfterFailure(t *testing.T) {
	f := newFixture(t)
	f.setHook(status(503))
	c := f.client(t, func(o *Options) { o.Retries = 1 })
	if err := c.Ping(context.Background()); !errors.Is(err, hfserr.ErrUnavailable) {
		t.Fatalf("Ping while down: %v", err)
	}
	f.setHook(nil)
	f.resetCounts()
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("Ping after recovery: %v", err)
	}
	if _, err := c.FetchRange(context.Background(), f.blobDigest, 0, 1); err != nil {
		t.Fatal(err)
	}
	if p := f.count("GET ping"); p != 1 {
		t.Errorf("handshakes after recovery = %d, want 1 (transport cached)", p)
	}
}

// Concurrent first users share one handshake.
func TestConcurrentFirstUse(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			off := int64(i * 1000)
			got, err := c.FetchRange(context.Background(), f.blobDigest, off, 1000)
			if err == nil && !bytes.Equal(got, f.blob[off:off+1000]) {
				err = errors.New("wrong bytes")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if p := f.count("GET ping"); p != 1 {
		t.Errorf("handshakes = %d, want 1", p)
	}
	if s := c.Stats(); s.BlobBytes != 8000 || s.Requests < 9 {
		t.Errorf("Stats = %+v, want 8000 blob bytes and at least 9 requests", s)
	}
}
