package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// chunkFiles lists the chunk files of one blob in a cache directory.
func chunkFiles(t *testing.T, cacheDir, hexDigest string) []string {
	t.Helper()
	dir := filepath.Join(cacheDir, "chunks", hexDigest[:2], hexDigest)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// readAllTimed opens path and reads it to the end with a deadline,
// returning what was read and the first error.
func readAllTimed(t *testing.T, path string) ([]byte, error) {
	t.Helper()
	var (
		b   []byte
		err error
	)
	withTimeout(t, "read "+path, func() {
		f, oerr := os.Open(path)
		if oerr != nil {
			err = oerr
			return
		}
		defer f.Close()
		b, err = io.ReadAll(f)
	})
	return b, err
}

// hashFile streams a file through sha256 with a deadline.
func hashFile(t *testing.T, path string) string {
	t.Helper()
	var (
		sum string
		err error
	)
	withTimeout(t, "hash "+path, func() {
		f, oerr := os.Open(path)
		if oerr != nil {
			err = oerr
			return
		}
		defer f.Close()
		h := sha256.New()
		if _, err = io.Copy(h, f); err == nil {
			sum = hex.EncodeToString(h.Sum(nil))
		}
	})
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return sum
}

// TestCorruptBlobStrict: a registry that serves wrong bytes makes reads
// fail with EIO, hands the reader no byte and leaves nothing in the cache;
// once the registry is right again, the same file reads correctly.
func TestCorruptBlobStrict(t *testing.T) {
	needFUSE(t)
	host, _ := startDistribution(t)
	p := newProxy(t, host)
	data := randomBytes(t, 3<<20)
	d := pushFile(t, host+"/test/corrupt", "v1", "random.bin", data)
	hexd := d[len("sha256:"):]

	p.flip.Store(true)
	m := mount(t, p.host+"/test/corrupt", "--chunk-size", "256KiB")
	file := m.path("tags/v1/random.bin")

	got, err := readAllTimed(t, file)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("reading a corrupted blob: %v, want EIO", err)
	}
	if len(got) != 0 {
		t.Errorf("reading a corrupted blob handed the reader %d bytes, want 0", len(got))
	}
	if p.gets.Load() == 0 {
		t.Errorf("no blob GET went through the corrupting proxy")
	}
	if names := chunkFiles(t, m.cacheDir, hexd); len(names) != 0 {
		t.Errorf("the cache holds chunk files of the corrupted blob: %v", names)
	}
	if _, err := os.Stat(filepath.Join(m.cacheDir, "tables", hexd)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cache holds a chunk table for the corrupted blob: %v", err)
	}
	if v, err := getxattr(file, "user.hashfs.verified"); err != nil || v == "true" {
		t.Errorf("user.hashfs.verified of the corrupted blob = %q, %v", v, err)
	}

	p.flip.Store(false)
	time.Sleep(1500 * time.Millisecond)
	got, err = readAllTimed(t, file)
	if err != nil {
		t.Fatalf("reading again once the registry is right: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("reading again: %d bytes with sha256 %s, want %d bytes with %s", len(got), sha256Hex(got), len(data), hexd)
	}
	if v, err := getxattr(file, "user.hashfs.verified"); err != nil || v != "true" {
		t.Errorf("user.hashfs.verified after a good read = %q, %v; want true", v, err)
	}
}

// TestLazyRangeRead: with --verify lazy, a small read in the middle of a
// big blob fetches about one chunk, not the blob; the blob is verified in
// the background afterwards.
func TestLazyRangeRead(t *testing.T) {
	needFUSE(t)
	host := startGGCR(t, nil)
	p := newProxy(t, host)
	data := randomBytes(t, 64<<20)
	d := pushFile(t, host+"/test/lazy", "v1", "big.bin", data)
	m := mount(t, p.host+"/test/lazy", "--verify", "lazy", "--chunk-size", "1MiB", "--lazy-verify-max", "1MiB")
	file := m.path("tags/v1/big.bin")

	const off, n = 40 << 20, 4 << 10
	buf := make([]byte, n)
	var rerr error
	withTimeout(t, "pread", func() {
		f, err := os.Open(file)
		if err != nil {
			rerr = err
			return
		}
		defer f.Close()
		_, rerr = f.ReadAt(buf, off)
	})
	fetched, ranges := p.blobBytes(d), p.rangesSeen()
	if rerr != nil {
		t.Fatalf("pread %d bytes at %d: %v", n, off, rerr)
	}
	if !bytes.Equal(buf, data[off:off+n]) {
		t.Fatalf("pread at %d returned bytes that are not the blob's", off)
	}
	t.Logf("a 4 KiB read at 40 MiB fetched %d blob bytes in %d blob GETs: %v", fetched, len(ranges), ranges)
	if fetched > 2<<20 {
		t.Errorf("a 4 KiB read at 40 MiB fetched %d bytes (%.2f MiB) of the blob, want <= 2 MiB", fetched, float64(fetched)/(1<<20))
	}

	if got := hashFile(t, file); "sha256:"+got != d {
		t.Errorf("whole file hashes to sha256:%s, want %s", got, d)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := getxattr(file, "user.hashfs.verified")
		if err == nil && v == "true" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("user.hashfs.verified = %q, %v 30s after a whole read; want true", v, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("blob bytes fetched in all: %d (blob %d)", p.blobBytes(d), len(data))
}
