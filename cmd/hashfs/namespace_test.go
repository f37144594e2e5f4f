package main

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/hashfs/hashfs/fetch"
	"github.com/hashfs/hashfs/manifestview"
)

// testParts are parts with no network and no cache, for namespace tests.
func testParts(t *testing.T, paths ...string) *parts {
	t.Helper()
	p := &parts{o: &options{cacheDir: t.TempDir()}, log: slog.New(slog.DiscardHandler),
		set: fetch.NewSet(nil), union: manifestview.NewUnion(), offline: &offlineSource{},
		members: map[string]*member{}}
	for _, path := range paths {
		p.add(path, path, nil)
	}
	return p
}

func TestNamespaceLookup(t *testing.T) {
	ctx := context.Background()
	p := testParts(t, "127.0.0.1:5000/lab/raw", "127.0.0.1:5000/lab/raw/sub", "oci/srv/refs")
	n := newNamespace(p, nil, time.Minute, false)
	if got, want := n.Paths(ctx), []string{"127.0.0.1:5000/lab/raw", "127.0.0.1:5000/lab/raw/sub", "oci/srv/refs"}; !slices.Equal(got, want) {
		t.Errorf("Paths = %q, want %q", got, want)
	}
	tests := []struct {
		path      string
		repo, dir bool
	}{
		{"127.0.0.1:5000", false, true},
		{"127.0.0.1:5000/lab", false, true},
		{"127.0.0.1:5000/lab/raw", true, true},
		{"127.0.0.1:5000/lab/raw/sub", true, false},
		{"oci/srv/refs", true, false},
		{"oci/srv/ref", false, false},
		{"nope", false, false},
	}
	for _, tt := range tests {
		e, err := n.Lookup(ctx, tt.path)
		if err != nil || (e.Repo != nil) != tt.repo || e.Dir != tt.dir || (e.Repo != nil) != (e.Stater != nil) {
			t.Errorf("Lookup(%q) = repo %v dir %v stater %v, %v; want repo %v dir %v", tt.path, e.Repo != nil, e.Dir, e.Stater != nil, err, tt.repo, tt.dir)
		}
	}
}

// With a whole registry as the only source, paths are relative to it, and
// offline nothing below it is probed.
func TestNamespaceWholeRegistryBase(t *testing.T) {
	ctx := context.Background()
	p := testParts(t, "reg.example/lab/raw")
	n := newNamespace(p, []string{"reg.example"}, time.Minute, true)
	if got := n.Paths(ctx); !slices.Equal(got, []string{"lab/raw"}) {
		t.Errorf("Paths = %q, want [lab/raw]", got)
	}
	for path, wantRepo := range map[string]bool{"lab/raw": true, "lab": false, "lab/other": false} {
		e, err := n.Lookup(ctx, path)
		if err != nil || (e.Repo != nil) != wantRepo || !e.Dir && !wantRepo {
			t.Errorf("Lookup(%q) = repo %v dir %v, %v; want repo %v", path, e.Repo != nil, e.Dir, err, wantRepo)
		}
	}
}
