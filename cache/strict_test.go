package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

func TestStrictRandomReads(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
	}{
		{"one byte", 1},
		{"under a chunk", cs - 1},
		{"one chunk", cs},
		{"chunk plus one", cs + 1},
		{"five and a half chunks", 5*cs + cs/2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := blob(uint64(tc.size), tc.size)
			src := newFake(b)
			c := openCache(t, t.TempDir(), src, Options{})
			d := digest.Of(b)
			r := c.Open(d, int64(len(b)))
			defer r.Close()
			rng := rand.New(rand.NewPCG(1, uint64(tc.size)))
			for range 200 {
				off := rng.Int64N(int64(len(b)) + 10)
				p := make([]byte, 1+rng.IntN(3*cs))
				n, err := r.ReadAt(context.Background(), p, off)
				if off >= int64(len(b)) {
					if n != 0 || err != io.EOF {
						t.Fatalf("ReadAt(%d) past end = %d, %v", off, n, err)
					}
					continue
				}
				want := b[off:min(int64(len(b)), off+int64(len(p)))]
				if !bytes.Equal(p[:n], want) {
					t.Fatalf("ReadAt(%d, %d): wrong bytes", off, len(p))
				}
				if n < len(p) && err != io.EOF || n == len(p) && err != nil {
					t.Fatalf("ReadAt(%d, %d) = %d, %v", off, len(p), n, err)
				}
			}
			chunks := int((tc.size + cs - 1) / cs)
			for i := range chunks {
				if got := src.callsAt(d, int64(i*cs)); got != 1 {
					t.Errorf("chunk %d fetched %d times, want 1", i, got)
				}
			}
			if st := c.Status(d, int64(len(b))); !st.Verified || st.CachedBytes != int64(len(b)) {
				t.Errorf("Status = %+v", st)
			}
		})
	}
}

func TestStrictCorruptSource(t *testing.T) {
	b := blob(2, 4*cs+100)
	d := digest.Of(b)
	for _, tc := range []struct {
		name string
		flip int64
	}{
		{"first byte", 0},
		{"middle chunk", 2*cs + 17},
		{"last byte", int64(len(b) - 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFake(b)
			src.setFlip(d, tc.flip)
			dir := t.TempDir()
			c := openCache(t, dir, src, Options{})
			c.failMem = 300 * time.Millisecond
			r := c.Open(d, int64(len(b)))
			defer r.Close()
			p := make([]byte, 1000)
			n, err := r.ReadAt(context.Background(), p, 0)
			var ie *IntegrityError
			if n != 0 || !isIntegrity(err) || !errors.As(err, &ie) || ie.Got == d {
				t.Fatalf("ReadAt = %d, %v; want 0 and an integrity error", n, err)
			}
			if files, _ := chunkFiles(t, dir); len(files) != 0 || c.Usage() != 0 {
				t.Fatalf("left on disk: %v, usage %d", files, c.Usage())
			}
			if st := c.Status(d, int64(len(b))); st.Verified || st.CachedBytes != 0 {
				t.Fatalf("Status = %+v", st)
			}
			// Readahead re-asking right away gets the remembered failure, no fetch.
			calls := src.totalCalls(d)
			src.setFlip(d, -1)
			if _, err := r.ReadAt(context.Background(), p, int64(cs)); !isIntegrity(err) {
				t.Fatalf("second ReadAt = %v", err)
			}
			if got := src.totalCalls(d); got != calls {
				t.Fatalf("remembered failure still fetched: %d calls, was %d", got, calls)
			}
			time.Sleep(c.failMem + 50*time.Millisecond)
			readAll(t, c, b, 5000)
		})
	}
}

func TestStrictFetchErrorRetried(t *testing.T) {
	b := blob(3, 3*cs)
	src := newFake(b)
	src.failN = 1
	c := openCache(t, t.TempDir(), src, Options{})
	c.failMem = 50 * time.Millisecond
	r := c.Open(digest.Of(b), int64(len(b)))
	defer r.Close()
	if _, err := r.ReadAt(context.Background(), make([]byte, 10), 0); !errors.Is(err, hfserr.ErrUnavailable) {
		t.Fatalf("ReadAt during outage = %v", err)
	}
	time.Sleep(80 * time.Millisecond)
	readAll(t, c, b, 4096)
}

func TestTableChunkMismatchFromSource(t *testing.T) {
	b := blob(4, 4*cs)
	d := digest.Of(b)
	dir := t.TempDir()
	c := openCache(t, dir, newFake(b), Options{})
	readAll(t, c, b, cs)
	c.Close()
	// Restart with the chunks gone and a source that now lies about chunk 1.
	src := newFake(b)
	src.setFlip(d, cs+5)
	c = openCache(t, dir, src, Options{})
	c.store.purge(d)
	r := c.Open(d, int64(len(b)))
	defer r.Close()
	p := make([]byte, 100)
	if n, err := r.ReadAt(context.Background(), p, cs); n != 0 || !isIntegrity(err) {
		t.Fatalf("ReadAt of a lying chunk = %d, %v", n, err)
	}
	if got := c.Status(d, int64(len(b))).CachedBytes; got != 0 {
		t.Fatalf("cached %d bytes of a bad chunk", got)
	}
	if _, err := r.ReadAt(context.Background(), p, 2*cs); err != nil {
		t.Fatalf("ReadAt of a good chunk: %v", err)
	}
}

func TestCorruptChunkFileRefetched(t *testing.T) {
	b := blob(5, 4*cs)
	d := digest.Of(b)
	size := int64(len(b))
	t.Run("same process", func(t *testing.T) {
		dir := t.TempDir()
		src := newFake(b)
		c := openCache(t, dir, src, Options{})
		r := c.Open(d, size)
		defer r.Close()
		if _, err := r.ReadAt(context.Background(), make([]byte, 10), 0); err != nil {
			t.Fatal(err)
		}
		// The verification hashed every chunk it wrote, so this process
		// does not hash them again (the directory is 0700 and trusted),
		// but a file that lost bytes since is caught and fetched again.
		if err := os.Truncate(blobPath(dir, d), 2*cs+123); err != nil {
			t.Fatal(err)
		}
		p := make([]byte, cs)
		if _, err := r.ReadAt(context.Background(), p, 2*cs); err != nil || !bytes.Equal(p, b[2*cs:3*cs]) {
			t.Fatalf("ReadAt after corruption: %v", err)
		}
		if got := src.callsAt(d, 2*cs); got != 2 {
			t.Fatalf("chunk 2 fetched %d times, want 2", got)
		}
		if got := c.Status(d, size).CachedBytes; got != size {
			t.Fatalf("CachedBytes = %d after refetch", got)
		}
	})
	t.Run("after restart", func(t *testing.T) {
		dir := t.TempDir()
		readAll(t, openCache(t, dir, newFake(b), Options{}), b, cs)
		flipChunkByte(t, dir, d, 1, 0)
		src := newFake(b)
		c := openCache(t, dir, src, Options{})
		readAll(t, c, b, 3000)
		if got, total := src.callsAt(d, cs), src.totalCalls(d); got != 1 || total != 1 {
			t.Fatalf("refetched chunk 1 %d times, %d calls in all; want 1, 1", got, total)
		}
	})
}

func TestConcurrentReadersShareFetches(t *testing.T) {
	b := blob(6, 6*cs+999)
	d := digest.Of(b)
	size := int64(len(b))
	readers := func(t *testing.T, c *Cache, release chan struct{}) {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := c.Open(d, size)
				defer r.Close()
				rng := rand.New(rand.NewPCG(uint64(g), 1))
				for range 20 {
					off := rng.Int64N(size)
					p := make([]byte, 1+rng.IntN(2*cs))
					n, err := r.ReadAt(context.Background(), p, off)
					if err != nil && err != io.EOF || !bytes.Equal(p[:n], b[off:off+int64(n)]) {
						errs <- err
						return
					}
				}
			}()
		}
		time.Sleep(50 * time.Millisecond)
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("reader: %v", err)
		}
	}
	check := func(t *testing.T, src *fakeSource) {
		for i := int64(0); i*cs < size; i++ {
			if got := src.callsAt(d, i*cs); got > 1 {
				t.Errorf("chunk %d fetched %d times", i, got)
			}
		}
	}
	dir := t.TempDir()
	t.Run("whole-blob verification", func(t *testing.T) {
		src := newFake(b)
		release := make(chan struct{})
		src.setHook(gate(release, func(digest.Digest, int64) bool { return true }))
		readers(t, openCache(t, dir, src, Options{Parallel: 2}), release)
		check(t, src)
	})
	t.Run("trusted table, chunks gone", func(t *testing.T) {
		src := newFake(b)
		release := make(chan struct{})
		src.setHook(gate(release, func(digest.Digest, int64) bool { return true }))
		c := openCache(t, dir, src, Options{})
		c.store.purge(d)
		readers(t, c, release)
		check(t, src)
	})
}

func TestReaderCtxCancelKeepsSharedJob(t *testing.T) {
	b := blob(7, 3*cs)
	d := digest.Of(b)
	src := newFake(b)
	release := make(chan struct{})
	src.setHook(gate(release, func(digest.Digest, int64) bool { return true }))
	c := openCache(t, t.TempDir(), src, Options{})
	r := c.Open(d, int64(len(b)))
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.ReadAt(ctx, make([]byte, 10), 0)
		done <- err
	}()
	waitFor(t, "fetches to start", func() bool { return src.totalCalls(d) > 0 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled ReadAt = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("canceled ReadAt did not return")
	}
	close(release)
	readAll(t, c, b, 1000)
	for i := int64(0); i < 3; i++ {
		if got := src.callsAt(d, i*cs); got != 1 {
			t.Fatalf("chunk %d fetched %d times: the canceled reader's job was not shared", i, got)
		}
	}
}

func TestSizeClaims(t *testing.T) {
	b := blob(8, 2*cs+10)
	d := digest.Of(b)
	size := int64(len(b))
	c := openCache(t, t.TempDir(), newFake(b), Options{})
	for _, tc := range []struct {
		name    string
		d       digest.Digest
		size    int64
		wantErr func(error) bool
	}{
		{"too long, no table", d, size + 5, isIntegrity},
		{"empty blob", digest.Of(nil), 0, func(err error) bool { return err == io.EOF }},
		{"empty size, other digest", d, 0, isIntegrity},
		{"honest", d, size, func(err error) bool { return err == nil }},
		{"too short, with table", d, size - 1, isIntegrity},
		{"too long, with table", d, size + 1, isIntegrity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Open(tc.d, tc.size)
			defer r.Close()
			p := make([]byte, 10)
			n, err := r.ReadAt(context.Background(), p, 0)
			if !tc.wantErr(err) || err != nil && n != 0 {
				t.Fatalf("ReadAt = %d, %v", n, err)
			}
		})
	}
	if !c.Status(digest.Of(nil), 0).Verified || c.Status(d, 0).Verified || c.Status(d, size-1).Verified {
		t.Fatal("Status.Verified wrong for size claims")
	}
	if _, err := c.Open(d, size).ReadAt(context.Background(), make([]byte, 1), -1); !errors.Is(err, hfserr.ErrInvalid) {
		t.Fatalf("negative offset: %v", err)
	}
}

// Many blobs verified at once share one bound on the spans they hold
// (chunksInFlight), so memory does not grow with the number of blobs; each
// verification still finishes (one that holds spans never waits for
// another's).
func TestVerificationsShareSpanBound(t *testing.T) {
	bs := blobSet(300, 12, 40*cs+7)
	src := newFake(bs...)
	var now, peak atomic.Int64
	src.setHook(func(ctx context.Context, _ digest.Digest, _ int64) error {
		if n := now.Add(1); n > peak.Load() {
			peak.Store(n) // racy max, good enough: only grows
		}
		defer now.Add(-1)
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil
	})
	o := Options{Parallel: 4}
	c := openCache(t, t.TempDir(), src, o)
	// The fake answers slowly, so every span has spanChunks chunks.
	bound := chunksInFlight(c.window) / spanChunks(cs, c.window)
	done := make(chan struct{})
	go func() { readEach(t, c, bs); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("verifications did not finish: stuck waiting for span places")
	}
	if p := peak.Load(); p > bound || p < 2 {
		t.Errorf("at most %d range requests at once across %d verifications, want between 2 and the bound %d", p, len(bs), bound)
	}
	if all := chunksInFlight(c.window); !c.spanSem.TryAcquire(all) {
		t.Errorf("span places still held after every verification ended")
	} else {
		c.spanSem.Release(all)
	}
}
