package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

const cs = minChunkSize // 64 KiB: the smallest chunk size, keeps tests fast

// fakeSource is an in-process Source: a map of blobs with hooks to flip
// bytes, fail, block and count.
type fakeSource struct {
	mu    sync.Mutex
	blobs map[digest.Digest][]byte
	flip  map[digest.Digest]int64         // offset of a byte answered inverted
	failN int                             // fail the next failN calls
	calls map[digest.Digest]map[int64]int // by chunk offset
	bytes int64                           // bytes answered
	// hook runs before a call is answered; it may block. An error is returned as is.
	hook func(ctx context.Context, d digest.Digest, off int64) error
}

func newFake(blobs ...[]byte) *fakeSource {
	f := &fakeSource{blobs: map[digest.Digest][]byte{}, flip: map[digest.Digest]int64{}, calls: map[digest.Digest]map[int64]int{}}
	for _, b := range blobs {
		f.blobs[digest.Of(b)] = b
	}
	return f
}

func (f *fakeSource) FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	f.mu.Lock()
	if f.calls[d] == nil {
		f.calls[d] = map[int64]int{}
	}
	for c := off - off%cs; c < off+n; c += cs { // a span counts for every chunk it covers
		f.calls[d][c]++
	}
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, d, off); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failN > 0 {
		f.failN--
		return nil, fmt.Errorf("fake outage: %w", hfserr.ErrUnavailable)
	}
	b, ok := f.blobs[d]
	if !ok {
		return nil, fmt.Errorf("fake: %s: %w", d, hfserr.ErrNotFound)
	}
	if off < 0 || n <= 0 || off+n > int64(len(b)) {
		return nil, fmt.Errorf("fake: range %d+%d of %d: %w", off, n, len(b), hfserr.ErrInvalid)
	}
	out := bytes.Clone(b[off : off+n])
	if fo, ok := f.flip[d]; ok && fo >= off && fo < off+n {
		out[fo-off] ^= 0xff
	}
	f.bytes += n
	return out, nil
}

func (f *fakeSource) setFlip(d digest.Digest, off int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off < 0 {
		delete(f.flip, d)
	} else {
		f.flip[d] = off
	}
}

func (f *fakeSource) setHook(h func(ctx context.Context, d digest.Digest, off int64) error) {
	f.mu.Lock()
	f.hook = h
	f.mu.Unlock()
}

// callsAt returns how often bytes at chunk offset off of d were asked for.
func (f *fakeSource) callsAt(d digest.Digest, off int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[d][off]
}

// totalCalls returns how many chunks of d were asked for in all.
func (f *fakeSource) totalCalls(d digest.Digest) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls[d] {
		n += c
	}
	return n
}

func (f *fakeSource) answered() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bytes
}

// gate returns a hook that blocks calls for which block returns true
// until release is closed (or the caller's ctx ends).
func gate(release <-chan struct{}, block func(d digest.Digest, off int64) bool) func(context.Context, digest.Digest, int64) error {
	return func(ctx context.Context, d digest.Digest, off int64) error {
		if !block(d, off) {
			return nil
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func blob(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// openDirs is the cache each test directory has open: opening a
// directory again stands for a restart, so the earlier process lets go
// of it first (as its exit would release the lock).
var openDirs = struct {
	sync.Mutex
	m map[string]*Cache
}{m: map[string]*Cache{}}

func openCache(t *testing.T, dir string, src Source, o Options) *Cache {
	t.Helper()
	openDirs.Lock()
	if prev := openDirs.m[dir]; prev != nil {
		prev.Close()
	}
	openDirs.Unlock()
	o.Dir = dir
	if o.ChunkSize == 0 {
		o.ChunkSize = cs
	}
	c, err := Open(context.Background(), src, o)
	if err != nil {
		t.Fatal(err)
	}
	openDirs.Lock()
	openDirs.m[dir] = c
	openDirs.Unlock()
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads d through c in reads of step bytes and returns the bytes.
func readAll(t *testing.T, c *Cache, b []byte, step int) []byte {
	t.Helper()
	r := c.Open(digest.Of(b), int64(len(b)))
	defer r.Close()
	var out []byte
	p := make([]byte, step)
	for off := int64(0); ; {
		n, err := r.ReadAt(context.Background(), p, off)
		out = append(out, p[:n]...)
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
	}
	if !bytes.Equal(out, b) {
		t.Fatalf("read %d bytes, not the blob's %d bytes", len(out), len(b))
	}
	return out
}

// chunkFiles lists the chunk files on disk with their total size
// (stamps, like tables, are not chunk data).
func chunkFiles(t *testing.T, dir string) (files []string, total int64) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(dir, "chunks"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() != stampFileName {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			files = append(files, p)
			total += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, total
}

// blobPath is the file that holds d's cached chunks.
func blobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "chunks", d.Hex()[:2], d.Hex(), blobFileName)
}

// flipChunkByte corrupts byte at of chunk i of d's file.
func flipChunkByte(t *testing.T, dir string, d digest.Digest, i, at int64) {
	t.Helper()
	flipFileByte(t, blobPath(dir, d), i*cs+at)
}

// flipFileByte changes one byte of p in place: the rest of the file is
// left alone, so a write the cache makes meanwhile elsewhere in it stays.
func flipFileByte(t *testing.T, p string, at int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x55
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func isIntegrity(err error) bool { return errors.Is(err, hfserr.ErrIntegrity) }

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
