package cache

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
)

// TestStampAfterRestart checks when a restarted cache trusts a whole
// blob's file without hashing it: only while its stamp matches it.
func TestStampAfterRestart(t *testing.T) {
	b := blob(61, stampMin+5)
	other := blob(62, stampMin)
	d := digest.Of(b)
	chunks := int(chunkCount(int64(len(b)), cs))
	cases := []struct {
		name    string
		change  func(t *testing.T, dir string) // while no cache is open
		o       Options
		trusted bool
	}{
		{name: "file unchanged", trusted: true},
		{name: "Recheck", o: Options{Recheck: true}},
		{name: "one byte changed and changed back", change: func(t *testing.T, dir string) {
			flipChunkByte(t, dir, d, 3, 9)
			flipChunkByte(t, dir, d, 3, 9)
		}},
		{name: "times set back", change: func(t *testing.T, dir string) {
			p := blobPath(dir, d)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "mode changed", change: func(t *testing.T, dir string) {
			if err := os.Chmod(blobPath(dir, d), 0o400); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "replaced by a copy", change: func(t *testing.T, dir string) {
			p := blobPath(dir, d)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p+".new", data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(p+".new", p); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "stamp corrupt", change: func(t *testing.T, dir string) {
			flipFileByte(t, stampPath(dir, d), int64(len(stampMagic))+40)
		}},
		{name: "another blob's stamp", change: func(t *testing.T, dir string) {
			s, err := os.ReadFile(stampPath(dir, digest.Of(other)))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(stampPath(dir, d), s, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := openCache(t, dir, newFake(b, other), Options{})
			for _, x := range [][]byte{b, other} {
				if got, _ := backing(t, c, x); !bytes.Equal(got, x) {
					t.Fatal("no backing file for a verified blob")
				}
			}
			c.Close() // waits for the stamps
			if _, err := os.Stat(stampPath(dir, d)); err != nil {
				t.Fatalf("no stamp once the blob was whole: %v", err)
			}
			if tc.change != nil {
				tc.change(t, dir)
			}
			src := newFake(b, other)
			c = openCache(t, dir, src, tc.o)
			tab, _ := c.table(d)
			f, todo, _ := c.store.seal(d, tab)
			if f != nil {
				f.Close()
			}
			if trusted := f != nil && todo == nil; trusted != tc.trusted {
				t.Fatalf("restarted cache trusts the file without hashing it: %v, want %v (%d chunks to hash)", trusted, tc.trusted, len(todo))
			}
			if !tc.trusted && len(todo) != chunks {
				t.Fatalf("%d chunks to hash, want all %d", len(todo), chunks)
			}
			// Reads through the daemon skip the hash of a stamped chunk too.
			if got := c.store.readRange(chunkKey{d, 5}, cs, tab, 0, make([]byte, 10)); got != tc.trusted {
				t.Fatalf("chunk read without hashing: %v, want %v", got, tc.trusted)
			}
			if got, _ := backing(t, c, b); !bytes.Equal(got, b) {
				t.Fatal("backing file after the restart is not the blob")
			}
			if n := src.totalCalls(d); n != 0 {
				t.Fatalf("%d fetches for a cached blob", n)
			}
			if !tc.trusted {
				// Hashed again, so stamped again.
				c.Close()
				c = openCache(t, dir, newFake(b), Options{})
				if f, todo, _ := c.store.seal(d, tab); f == nil || todo != nil {
					t.Fatalf("not trusted after it was hashed and stamped again: %d chunks to hash", len(todo))
				} else {
					f.Close()
				}
			}
		})
	}
}

// TestStampRefused: writeStamp writes no stamp for a file that was
// removed, or changed by someone else, after this process found it whole.
func TestStampRefused(t *testing.T) {
	b := blob(63, stampMin)
	d := digest.Of(b)
	cases := []struct {
		name    string
		between func(t *testing.T, c *Cache, dir string)
	}{
		{name: "blob purged", between: func(t *testing.T, c *Cache, dir string) { c.store.purge(d) }},
		{name: "file changed", between: func(t *testing.T, c *Cache, dir string) {
			flipChunkByte(t, dir, d, 2, 1)
			flipChunkByte(t, dir, d, 2, 1)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := openCache(t, dir, newFake(b), Options{})
			r := c.Open(d, int64(len(b)))
			defer r.Close()
			if _, err := r.ReadAt(context.Background(), make([]byte, len(b)), 0); err != nil {
				t.Fatal(err)
			}
			tab, _ := c.table(d)
			f, _, stamp := c.store.seal(d, tab) // as Backing would, without the job
			if f == nil || !stamp {
				t.Fatalf("seal of a verified blob: file %v, stamp %v", f != nil, stamp)
			}
			f.Close()
			tc.between(t, c, dir)
			c.store.writeStamp(d) // the job, after the change
			if _, err := os.Stat(stampPath(dir, d)); !os.IsNotExist(err) {
				t.Fatalf("stamp written: %v", err)
			}
			if _, err := os.Stat(filepath.Dir(stampPath(dir, d))); tc.name == "blob purged" && !os.IsNotExist(err) {
				t.Fatalf("purged blob's directory is back: %v", err)
			}
		})
	}
}

// TestVerifyAllIgnoresStamps: `hashfs cache verify` hashes a stamped
// blob too. Bytes that rot on the disk keep the file's ctime; here the
// test forges a stamp that matches the changed file instead.
func TestVerifyAllIgnoresStamps(t *testing.T) {
	b, d, dir := madeWhole(t, 64, stampMin)
	flipChunkByte(t, dir, d, 3, 100)
	f, err := os.Open(blobPath(dir, d))
	if err != nil {
		t.Fatal(err)
	}
	st, err := fileStamp(d, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stampPath(dir, d), st.encode(), 0o600); err != nil {
		t.Fatal(err)
	}
	c := openCache(t, dir, newFake(b), Options{})
	tab, _ := c.table(d)
	if f, todo, _ := c.store.seal(d, tab); f == nil || todo != nil {
		t.Fatal("the forged stamp was not trusted: the test proves nothing")
	} else {
		f.Close()
	}
	// Chunks 0-3 are hashed; 3 does not match, and the whole blob's file
	// goes with it, so the rest are removed unchecked.
	r, err := c.VerifyAll(context.Background())
	if want := (VerifyResult{Checked: 4, Bad: 1, WentWith: int(chunkCount(stampMin, cs)) - 4}); err != nil || r != want {
		t.Fatalf("VerifyAll = %+v, %v; want %+v", r, err, want)
	}
	if got := readAll(t, c, b, cs); !bytes.Equal(got, b) {
		t.Fatal("wrong bytes after VerifyAll")
	}
}

// TestStampSkipsSmallBlobs: a blob under stampMin is hashed again after
// a restart rather than fsynced and stamped.
func TestStampSkipsSmallBlobs(t *testing.T) {
	_, d, dir := madeWhole(t, 65, stampMin-1)
	if _, err := os.Stat(stampPath(dir, d)); !os.IsNotExist(err) {
		t.Fatalf("stamp of a blob under stampMin: %v", err)
	}
}

func TestStampEncoding(t *testing.T) {
	s := stamp{d: digest.Of([]byte("x")), ino: 1 << 40, size: 5 << 30, ctimeS: time.Now().Unix(), ctimeNs: 999999999}
	b := s.encode()
	if got, ok := decodeStamp(b); !ok || got != s {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", s, got, ok)
	}
	for _, bad := range [][]byte{nil, b[:len(b)-1], append(bytes.Clone(b), 0), append([]byte("hfsstmp0"), b[8:]...)} {
		if _, ok := decodeStamp(bad); ok {
			t.Fatalf("decodeStamp accepted %d bytes", len(bad))
		}
	}
}

// madeWhole caches a blob of n bytes, makes it whole (as a passthrough
// open does) and closes the cache, which waits for its stamp job.
func madeWhole(t *testing.T, seed uint64, n int) ([]byte, digest.Digest, string) {
	t.Helper()
	b := blob(seed, n)
	dir := t.TempDir()
	c := openCache(t, dir, newFake(b), Options{})
	if got, _ := backing(t, c, b); !bytes.Equal(got, b) {
		t.Fatal("no backing file")
	}
	c.Close()
	return b, digest.Of(b), dir
}

func stampPath(dir string, d digest.Digest) string {
	return filepath.Join(filepath.Dir(blobPath(dir, d)), stampFileName)
}
