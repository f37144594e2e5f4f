package cache

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
)

// backing calls Backing on a fresh Reader of b and returns the file's
// bytes (nil without a file) and the Reader, still open.
func backing(t *testing.T, c *Cache, b []byte) ([]byte, *Reader) {
	t.Helper()
	r := c.Open(digest.Of(b), int64(len(b)))
	t.Cleanup(func() { r.Close() })
	f, err := r.Backing(context.Background())
	if err != nil {
		t.Fatalf("Backing: %v", err)
	}
	if f == nil {
		return nil, r
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return got, r
}

func TestBackingStrictWaitsForVerification(t *testing.T) {
	b := blob(40, 5*cs+77)
	src := newFake(b)
	c := openCache(t, t.TempDir(), src, Options{})
	got, _ := backing(t, c, b)
	if !bytes.Equal(got, b) {
		t.Fatalf("backing file holds %d bytes, not the blob's %d", len(got), len(b))
	}
	if n := src.totalCalls(digest.Of(b)); n != 6 {
		t.Fatalf("%d chunks fetched, want 6", n)
	}
	// Whole now: a second open needs no hashing and no fetch.
	if got, _ := backing(t, c, b); !bytes.Equal(got, b) || src.totalCalls(digest.Of(b)) != 6 {
		t.Fatalf("second Backing: %d bytes, %d fetches", len(got), src.totalCalls(digest.Of(b)))
	}
}

func TestBackingRefusals(t *testing.T) {
	t.Run("lazy before verification", func(t *testing.T) {
		b := blob(41, 8*cs)
		src := newFake(b)
		release := make(chan struct{})
		defer close(release)
		src.setHook(gate(release, func(_ digest.Digest, off int64) bool { return off != 0 }))
		c := openCache(t, t.TempDir(), src, Options{Mode: Lazy, LazyVerifyMax: cs, BackgroundDelay: -1})
		if got, r := backing(t, c, b); got != nil {
			t.Fatal("a lazy blob that is not verified got a backing file")
		} else if _, err := r.ReadAt(context.Background(), make([]byte, 10), 0); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("failed verification", func(t *testing.T) {
		b := blob(42, 3*cs)
		src := newFake(b)
		src.setFlip(digest.Of(b), cs+1)
		c := openCache(t, t.TempDir(), src, Options{})
		if got, r := backing(t, c, b); got != nil {
			t.Fatal("a blob that failed verification got a backing file")
		} else if _, err := r.ReadAt(context.Background(), make([]byte, 10), 0); !isIntegrity(err) {
			t.Fatalf("ReadAt after the failed Backing = %v, want an integrity error", err)
		}
	})
	t.Run("not all on disk", func(t *testing.T) {
		b := blob(43, 6*cs)
		c := openCache(t, t.TempDir(), newFake(b), Options{MaxSize: 3 * cs})
		if got, _ := backing(t, c, b); got != nil {
			t.Fatal("a blob bigger than the budget got a backing file")
		}
	})
	t.Run("lying size", func(t *testing.T) {
		b := blob(44, 3*cs)
		c := openCache(t, t.TempDir(), newFake(b), Options{})
		readAll(t, c, b, cs)
		r := c.Open(digest.Of(b), int64(len(b))-1)
		defer r.Close()
		if f, err := r.Backing(context.Background()); f != nil || err != nil {
			t.Fatalf("Backing with the wrong size = %v, %v", f, err)
		}
	})
}

func TestBackingAfterRestart(t *testing.T) {
	b := blob(45, 7*cs+5)
	d := digest.Of(b)
	dir := t.TempDir()
	readAll(t, openCache(t, dir, newFake(b), Options{}), b, cs)

	t.Run("hashes what is cached once", func(t *testing.T) {
		src := newFake(b)
		c := openCache(t, dir, src, Options{})
		if got, _ := backing(t, c, b); !bytes.Equal(got, b) {
			t.Fatalf("backing file after a restart: %d bytes", len(got))
		}
		if n := src.totalCalls(d); n != 0 {
			t.Fatalf("%d fetches for a cached blob", n)
		}
	})
	t.Run("chunks to hash are listed in file order", func(t *testing.T) {
		// Map order would make the workers read the file at random, out
		// of step with the kernel reading it ahead. (Recheck: the blob
		// is stamped by now, stamp_test.go.)
		c := openCache(t, dir, newFake(b), Options{Recheck: true})
		tab, _ := c.table(d)
		for range 5 {
			_, todo, _ := c.store.seal(d, tab)
			if len(todo) != 8 || !slices.IsSorted(todo) {
				t.Fatalf("chunks to hash after a restart: %v, want 0..7 in order", todo)
			}
		}
		all := c.store.chunkKeys()
		if len(all) != 8 || !slices.IsSortedFunc(all, func(a, b chunkKey) int { return cmp.Compare(a.i, b.i) }) {
			t.Fatalf("chunkKeys: %v, want 8 chunks in order", all)
		}
	})
	t.Run("a corrupt chunk is dropped, then fetched by a read", func(t *testing.T) {
		flipChunkByte(t, dir, d, 3, 9)
		src := newFake(b)
		c := openCache(t, dir, src, Options{})
		if got, _ := backing(t, c, b); got != nil {
			t.Fatal("backing file with a corrupt chunk")
		}
		if st := c.Status(d, int64(len(b))); st.CachedBytes != int64(len(b))-cs {
			t.Fatalf("CachedBytes = %d after dropping one chunk", st.CachedBytes)
		}
		readAll(t, c, b, 5000)
		if got, _ := backing(t, c, b); !bytes.Equal(got, b) {
			t.Fatal("no backing file once the chunk was fetched again")
		}
		if n := src.totalCalls(d); n != 1 {
			t.Fatalf("%d chunks fetched, want 1", n)
		}
	})
	t.Run("a hole survives the restart as a missing chunk", func(t *testing.T) {
		// Recheck: a stamped blob is whole, and a whole blob's chunk is
		// never punched out, the file goes.
		c := openCache(t, dir, newFake(b), Options{Recheck: true})
		c.store.mu.Lock()
		bf, _ := c.store.lru.Peek(d)
		c.store.removeChunkLocked(chunkKey{d, 2}, bf, bf.chunks[2])
		c.store.mu.Unlock()
		c2 := openCache(t, dir, newFake(b), Options{})
		if st := c2.Status(d, int64(len(b))); st.CachedBytes != int64(len(b))-cs {
			t.Fatalf("CachedBytes = %d after a restart with one chunk punched out", st.CachedBytes)
		}
	})
}

// The kernel may read a backing file while the blob is evicted: its
// bytes stay whole in the unlinked file.
func TestBackingSurvivesEviction(t *testing.T) {
	b := blob(46, 4*cs)
	c := openCache(t, t.TempDir(), newFake(b), Options{})
	r := c.Open(digest.Of(b), int64(len(b)))
	f, err := r.Backing(context.Background())
	if err != nil || f == nil {
		t.Fatalf("Backing = %v, %v", f, err)
	}
	defer f.Close()
	r.Close()
	if freed := c.Prune(0); freed != int64(len(b)) {
		t.Fatalf("Prune freed %d", freed)
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("backing file after eviction: %d bytes, %v", len(got), err)
	}
}

func TestTableChecksChunks(t *testing.T) {
	b := blob(47, 5*cs+100)
	d := digest.Of(b)
	dir := t.TempDir()
	c := openCache(t, dir, newFake(b), Options{})
	readAll(t, c, b, cs)
	tab, _ := c.table(d)
	if tab == nil || tab.v1 {
		t.Fatalf("table = %+v", tab)
	}
	if tab.sums[len(tab.sums)-1] != d {
		t.Fatal("the last value of the table is not the digest")
	}
	for i := int64(0); i < 6; i++ {
		off, n := chunkSpan(int64(len(b)), cs, i)
		chunk := bytes.Clone(b[off : off+n])
		if !tab.check(i, chunk) {
			t.Fatalf("chunk %d does not check", i)
		}
		chunk[n/2] ^= 1
		if tab.check(i, chunk) {
			t.Fatalf("chunk %d with a flipped bit checks", i)
		}
		if i > 0 && n == cs && tab.check(i-1, b[off:off+cs]) {
			t.Fatalf("chunk %d checks as chunk %d", i, i-1)
		}
	}
}

// A cache made by an earlier hashfs (one file per chunk, version 1
// tables of per-chunk sha256) is kept: its chunks move into the blob's
// file and read without a fetch.
func TestOldLayoutKept(t *testing.T) {
	b := blob(48, 3*cs+10)
	d := digest.Of(b)
	dir := t.TempDir()
	c := openCache(t, dir, newFake(), Options{})
	c.Close()
	tab := &table{size: int64(len(b)), chunkSize: cs, v1: true}
	blobDir := filepath.Join(dir, "chunks", d.Hex()[:2], d.Hex())
	if err := os.MkdirAll(blobDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 4; i++ {
		off, n := chunkSpan(int64(len(b)), cs, i)
		tab.sums = append(tab.sums, sha256.Sum256(b[off:off+n]))
		if i == 1 {
			continue // evicted before the upgrade
		}
		if err := os.WriteFile(filepath.Join(blobDir, strconv.FormatInt(i, 10)), b[off:off+n], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "tables", d.Hex()), tab.encode(), 0o600); err != nil {
		t.Fatal(err)
	}
	src := newFake(b)
	c = openCache(t, dir, src, Options{})
	if st := c.Status(d, int64(len(b))); !st.Verified || st.CachedBytes != int64(len(b))-cs {
		t.Fatalf("Status after the upgrade = %+v", st)
	}
	if ents, _ := os.ReadDir(blobDir); len(ents) != 1 || ents[0].Name() != blobFileName {
		t.Fatalf("blob directory holds %v", ents)
	}
	readAll(t, c, b, 3000)
	if n, at := src.totalCalls(d), src.callsAt(d, cs); n != 1 || at != 1 {
		t.Fatalf("%d chunks fetched (chunk 1: %d), want only chunk 1", n, at)
	}
	if got, _ := backing(t, c, b); !bytes.Equal(got, b) {
		t.Fatal("no backing file for an upgraded blob")
	}
}
