package cache

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
)

func TestBudget(t *testing.T) {
	const max = 5 * cs
	var blobs [][]byte
	for i := range 12 {
		blobs = append(blobs, blob(uint64(100+i), 2*cs+cs/2))
	}
	dir := t.TempDir()
	src := newFake(blobs...)
	c := openCache(t, dir, src, Options{MaxSize: max})
	checkUsage := func(when string) {
		t.Helper()
		_, onDisk := chunkFiles(t, dir)
		if u := c.Usage(); u > max || u != onDisk {
			t.Fatalf("%s: Usage %d, on disk %d, budget %d", when, u, onDisk, max)
		}
	}
	pinned := blobs[0]
	pd, psize := digest.Of(pinned), int64(len(pinned))
	pr := c.Open(pd, psize)
	if _, err := pr.ReadAt(context.Background(), make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	for i, b := range blobs[1:] {
		readAll(t, c, b, 7000)
		checkUsage("blob " + string(rune('a'+i)))
		if got := c.Status(pd, psize).CachedBytes; got != psize {
			t.Fatalf("pinned blob evicted: %d of %d bytes cached", got, psize)
		}
	}
	pr.Close()
	for _, b := range blobs[1:4] {
		readAll(t, c, b, cs)
		checkUsage("after unpin")
	}
	if got := c.Status(pd, psize).CachedBytes; got == psize {
		t.Fatal("unpinned least recently used blob was not evicted")
	}
	// Everything still reads correctly, whatever the cache holds.
	for _, b := range blobs {
		readAll(t, c, b, 9999)
	}
	checkUsage("end")
}

func TestBlobBiggerThanBudget(t *testing.T) {
	b := blob(9, 7*cs+3)
	d := digest.Of(b)
	dir := t.TempDir()
	src := newFake(b)
	c := openCache(t, dir, src, Options{MaxSize: 2 * cs})
	readAll(t, c, b, 16<<10)
	if u := c.Usage(); u > 2*cs {
		t.Fatalf("Usage %d over budget", u)
	}
	for i := int64(0); i < 8; i++ {
		// Once for the verification, at most once more to serve it.
		if got := src.callsAt(d, i*cs); got < 1 || got > 2 {
			t.Errorf("chunk %d fetched %d times", i, got)
		}
	}
	readAll(t, c, b, cs)
}

func TestRestart(t *testing.T) {
	small := blob(10, 3*cs+7)
	big := blob(11, 8*cs)
	sd, bd := digest.Of(small), digest.Of(big)
	dir := t.TempDir()

	// First run: small is verified whole; big is lazily read (one chunk)
	// and its background verification never finishes.
	src := newFake(small, big)
	release := make(chan struct{})
	src.setHook(gate(release, func(d digest.Digest, off int64) bool { return d == bd && off != 0 }))
	c := openCache(t, dir, src, Options{Mode: Lazy, LazyVerifyMax: int64(len(small))})
	readAll(t, c, small, 4096)
	r := c.Open(bd, int64(len(big)))
	if _, err := r.ReadAt(context.Background(), make([]byte, 100), 0); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := os.Stat(blobPath(dir, bd)); err != nil {
		t.Fatalf("lazy chunk not on disk: %v", err)
	}
	c.Close()
	stray := filepath.Join(dir, "tmp", "w-leftover")
	if err := os.WriteFile(stray, []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}

	src2 := newFake(small, big)
	c2 := openCache(t, dir, src2, Options{})
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Fatalf("temp file survived Open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "chunks", bd.Hex()[:2], bd.Hex())); !os.IsNotExist(err) {
		t.Fatalf("unverified chunks survived Open: %v", err)
	}
	if st := c2.Status(bd, int64(len(big))); st.CachedBytes != 0 || st.Verified {
		t.Fatalf("big after restart: %+v", st)
	}
	if u := c2.Usage(); u != int64(len(small)) {
		t.Fatalf("Usage after restart = %d, want %d", u, len(small))
	}
	readAll(t, c2, small, 5000)
	if n := src2.totalCalls(sd); n != 0 {
		t.Fatalf("restart fetched %d times for a cached blob", n)
	}
}

func TestRestartEvictsOverBudget(t *testing.T) {
	a, b := blob(12, 3*cs), blob(13, 3*cs)
	dir := t.TempDir()
	c := openCache(t, dir, newFake(a, b), Options{})
	readAll(t, c, a, cs)
	readAll(t, c, b, cs)
	c.Close()
	c2 := openCache(t, dir, newFake(a, b), Options{MaxSize: 4 * cs})
	if _, onDisk := chunkFiles(t, dir); c2.Usage() > 4*cs || onDisk != c2.Usage() {
		t.Fatalf("Usage %d, on disk %d, budget %d", c2.Usage(), onDisk, 4*cs)
	}
}

func TestCorruptTableReverifies(t *testing.T) {
	b := blob(14, 3*cs)
	d := digest.Of(b)
	dir := t.TempDir()
	readAll(t, openCache(t, dir, newFake(b), Options{}), b, cs)
	tp := filepath.Join(dir, "tables", d.Hex())
	flipFileByte(t, tp, int64(tableHeader)+40)
	src := newFake(b)
	c := openCache(t, dir, src, Options{})
	readAll(t, c, b, 3000)
	if got := src.totalCalls(d); got != 3 {
		t.Fatalf("%d fetches after a corrupt table, want 3", got)
	}
	if !c.Status(d, int64(len(b))).Verified {
		t.Fatal("not verified again")
	}
}

func TestTableEncoding(t *testing.T) {
	for _, size := range []int64{1, cs, 3*cs + 1} {
		tab := &table{size: size, chunkSize: cs, sums: make([][32]byte, chunkCount(size, cs))}
		for i := range tab.sums {
			tab.sums[i] = digest.Of([]byte{byte(i)})
		}
		enc := tab.encode()
		got, err := decodeTable(enc, cs)
		if err != nil || got.size != size || len(got.sums) != len(tab.sums) || got.sums[len(got.sums)-1] != tab.sums[len(tab.sums)-1] {
			t.Fatalf("size %d: round trip = %+v, %v", size, got, err)
		}
		if _, err := decodeTable(enc, 2*cs); err == nil {
			t.Fatal("accepted a table of another chunk size")
		}
		bad := bytes.Clone(enc)
		bad[len(bad)-40] ^= 1
		if _, err := decodeTable(bad, cs); err == nil {
			t.Fatal("accepted a corrupt table")
		}
		if _, err := decodeTable(enc[:len(enc)-1], cs); err == nil {
			t.Fatal("accepted a truncated table")
		}
	}
}

func TestWriteFailureStillServes(t *testing.T) {
	b := blob(15, 3*cs+5)
	dir := t.TempDir()
	var logs logBuffer
	c := openCache(t, dir, newFake(b), Options{Logger: newTestLogger(&logs)})
	// Make every cache write fail: the chunk directory becomes a file.
	tmp := filepath.Join(dir, "chunks")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	readAll(t, c, b, 4096)
	readAll(t, c, b, cs)
	if u := c.Usage(); u != 0 {
		t.Fatalf("Usage %d with a failing disk", u)
	}
	if n := logs.count("cannot write to the cache directory"); n != 1 {
		t.Fatalf("write failure logged %d times, want once", n)
	}
}
