package cache

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mode
		ok   bool
	}{
		{"strict", Strict, true},
		{"lazy", Lazy, true},
		{"Strict", 0, false},
		{"", 0, false},
	} {
		m, err := ParseMode(tc.in)
		if tc.ok && (err != nil || m != tc.want || m.String() != tc.in) {
			t.Errorf("ParseMode(%q) = %v, %v", tc.in, m, err)
		}
		if !tc.ok && !errors.Is(err, hfserr.ErrInvalid) {
			t.Errorf("ParseMode(%q) err = %v, want ErrInvalid", tc.in, err)
		}
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"smallest chunk", Options{ChunkSize: 64 << 10}, true},
		{"largest chunk", Options{ChunkSize: 64 << 20}, true},
		{"chunk too small", Options{ChunkSize: 64<<10 - 1}, false},
		{"chunk too big", Options{ChunkSize: 64<<20 + 1}, false},
		{"negative budget", Options{MaxSize: -1}, false},
		{"negative parallel", Options{Parallel: -1}, false},
		{"bad mode", Options{Mode: 7}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Dir = t.TempDir()
			c, err := Open(context.Background(), newFake(), tc.o)
			if tc.ok != (err == nil) {
				t.Fatalf("Open = %v", err)
			}
			if err != nil {
				if !errors.Is(err, hfserr.ErrInvalid) {
					t.Fatalf("Open err = %v, want ErrInvalid", err)
				}
				return
			}
			defer c.Close()
			if tc.o.ChunkSize == 0 && (c.o.ChunkSize != 1<<20 || c.o.MaxSize != 10<<30 || c.o.Parallel != 8 ||
				c.o.LazyVerifyMax != 16<<20 || c.o.QuarantineTime.Seconds() != 30 || c.Mode() != Strict) {
				t.Fatalf("defaults = %+v", c.o)
			}
		})
	}
	if _, err := Open(context.Background(), newFake(), Options{}); !errors.Is(err, hfserr.ErrInvalid) {
		t.Fatalf("Open without Dir = %v", err)
	}
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := blob(30, 2*cs+1)
	c := openCache(t, dir, newFake(b), Options{})
	readAll(t, c, b, cs)
	body := []byte("{}")
	if err := c.PutDoc(digest.Of(body), "application/json", body); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = fs.ModeDir | 0o700
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"chunks", "tables", "docs"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		if len(ents) == 0 {
			t.Errorf("%s is empty", sub)
		}
	}
}

// One process owns a cache directory; a second Open fails clearly until
// the first closes.
func TestOpenLocksDir(t *testing.T) {
	dir := t.TempDir()
	src := newFake()
	first, err := Open(context.Background(), src, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), src, Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use by another hashfs process") {
		t.Fatalf("second Open of a locked cache dir: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	again, err := Open(context.Background(), src, Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	again.Close()
}
