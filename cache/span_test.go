package cache

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/bufpool"
	"github.com/hashfs/hashfs/internal/digest"
)

// sizingSource answers from a fakeSource after delay, into buffers from
// bufs, and records the size of every request and which buffers it
// handed out more than once.
type sizingSource struct {
	*fakeSource
	delay time.Duration
	bufs  *bufpool.Pool

	mu     sync.Mutex
	sizes  []int64
	starts []time.Time // of each request, in the order of sizes
	seen   map[*byte]bool
	reused int
}

func (s *sizingSource) FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	s.mu.Lock()
	s.sizes = append(s.sizes, n)
	s.starts = append(s.starts, time.Now())
	s.mu.Unlock()
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	b, err := s.fakeSource.FetchRange(ctx, d, off, n)
	if err != nil {
		return nil, err
	}
	out := s.bufs.Get(len(b))
	copy(out, b)
	s.mu.Lock()
	if s.seen[&out[0]] {
		s.reused++
	}
	s.seen[&out[0]] = true
	s.mu.Unlock()
	return out, nil
}

// newPoolSource is a sizingSource of bs, with no delay, answering in
// buffers from pool.
func newPoolSource(pool *bufpool.Pool, bs ...[]byte) *sizingSource {
	return &sizingSource{fakeSource: newFake(bs...), bufs: pool, seen: map[*byte]bool{}}
}

// blobSet returns n blobs, blob i of size+i bytes from seed seed+i.
func blobSet(seed uint64, n, size int) [][]byte {
	var bs [][]byte
	for i := range n {
		bs = append(bs, blob(seed+uint64(i), size+i))
	}
	return bs
}

// forEachBlob runs read for every blob of bs, all at once, each with
// its own Reader.
func forEachBlob(c *Cache, bs [][]byte, read func(r *Reader, b []byte)) {
	var wg sync.WaitGroup
	for _, b := range bs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.Open(digest.Of(b), int64(len(b)))
			defer r.Close()
			read(r, b)
		}()
	}
	wg.Wait()
}

// readEach reads every blob of bs whole, all at once, and checks the
// bytes.
func readEach(t *testing.T, c *Cache, bs [][]byte) {
	t.Helper()
	forEachBlob(c, bs, func(r *Reader, b []byte) {
		got := make([]byte, len(b))
		if n, err := r.ReadAt(context.Background(), got, 0); n != len(b) || !bytes.Equal(got, b) {
			t.Errorf("blob %s: %d bytes, %v", digest.Of(b), n, err)
		}
	})
}

// readSequential reads r from start to end in 128 KiB reads, as cat
// does, and checks the bytes against b.
func readSequential(t *testing.T, r *Reader, b []byte) {
	t.Helper()
	got := make([]byte, len(b))
	for off := 0; off < len(b); off += 128 << 10 {
		end := min(len(b), off+128<<10)
		if n, err := r.ReadAt(context.Background(), got[off:end], int64(off)); n != end-off {
			t.Errorf("blob %s: read at %d: %d bytes, %v", digest.Of(b), off, n, err)
			return
		}
	}
	if !bytes.Equal(got, b) {
		t.Errorf("blob %s: bytes read differ", digest.Of(b))
	}
}

// A verification asks for bigger spans once the source answers fast,
// and keeps the small ones where each request is slow (far away, or
// capped per connection).
func TestSpanSizeFollowsSourceRate(t *testing.T) {
	const mib = 1 << 20
	// The rates are scaled down so that -race and a loaded machine
	// still tell them apart: "fast" is the fake at full speed (over
	// 50 MB/s under -race), "slow" at most 4 MiB per 800 ms. The lone
	// first span may take 4 MiB / 16 MB/s = 262 ms to be fast: a slow
	// source gets its other spans asked for before the first is back.
	const rate = 16e6
	tests := []struct {
		name    string
		size    int
		delay   time.Duration
		wantMax int64
	}{
		{"fast source", 64*mib + 5, 0, bigSpanBytes},
		{"slow source", 24*mib + 5, 800 * time.Millisecond, spanBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := blob(77, int(64*mib+5))
			src := &sizingSource{fakeSource: newFake(b), delay: tt.delay, seen: map[*byte]bool{}}
			c := openCache(t, t.TempDir(), src, Options{ChunkSize: mib, Parallel: 16})
			c.probeRate, c.bigRate = rate, rate
			r := c.Open(digest.Of(b), int64(len(b)))
			defer r.Close()
			got := make([]byte, len(b))
			if n, err := r.ReadAt(context.Background(), got, 0); n != len(b) || !bytes.Equal(got, b) {
				t.Fatalf("read %d bytes, %v", n, err)
			}
			src.mu.Lock()
			defer src.mu.Unlock()
			var most, total int64
			for _, n := range src.sizes {
				most, total = max(most, n), total+n
			}
			if most != tt.wantMax || total != int64(len(b)) {
				t.Errorf("largest request %d bytes, want %d; %d bytes asked for in %d requests, want the blob's %d once",
					most, tt.wantMax, total, len(src.sizes), len(b))
			}
			if tt.delay > 0 && len(src.starts) > 1 {
				if gap := src.starts[1].Sub(src.starts[0]); gap >= tt.delay-100*time.Millisecond {
					t.Errorf("second request %v after the first, which took %v: it waited for the probe", gap, tt.delay)
				}
			}
		})
	}
}

// With Options.Buffers, fetched bytes go back to the pool and come out
// again for later requests, while every blob still reads back exactly
// (under -race a buffer reused while still being hashed, written or read
// is also a reported race): a verification's spans once hashed and
// written; a lazy read-ahead run's once no reader and no in-memory copy
// holds it (readers racing the reuse read the chunk again).
func TestBuffersGoBackToPool(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name        string
		seed        uint64
		blobs, size int
		o           Options
		read        func(*testing.T, *Cache, [][]byte)
	}{
		{"verification spans", 500, 6, 20 * mib, Options{ChunkSize: mib, Parallel: 4}, readEach},
		{"lazy read-ahead runs", 700, 4, 24 * mib, Options{ChunkSize: mib, Parallel: 4, Mode: Lazy,
			BackgroundDelay: time.Hour}, // no background verification during the test
			func(t *testing.T, c *Cache, bs [][]byte) {
				forEachBlob(c, bs, func(r *Reader, b []byte) {
					readSequential(t, r, b)
					readSequential(t, r, b) // what the first pass cached
				})
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := blobSet(tc.seed, tc.blobs, tc.size)
			pool := new(bufpool.Pool)
			src := newPoolSource(pool, bs...)
			tc.o.Buffers = pool
			c := openCache(t, t.TempDir(), src, tc.o)
			tc.read(t, c, bs)
			src.mu.Lock()
			defer src.mu.Unlock()
			if src.reused == 0 {
				t.Errorf("none of %d requests reused a buffer given back", len(src.sizes))
			}
		})
	}
}

// A lazy sequential reader's readahead asks for runs of chunks of up to
// spanBytes in one request; every byte is right and no chunk is asked
// for twice.
func TestLazyReadaheadRuns(t *testing.T) {
	const mib = 1 << 20
	b := blob(91, 40*mib+3)
	src := &sizingSource{fakeSource: newFake(b), seen: map[*byte]bool{}}
	c := openCache(t, t.TempDir(), src, Options{ChunkSize: mib, Parallel: 16, Mode: Lazy,
		BackgroundDelay: time.Hour}) // no background verification during the test
	r := c.Open(digest.Of(b), int64(len(b)))
	defer r.Close()
	readSequential(t, r, b)
	src.mu.Lock()
	defer src.mu.Unlock()
	var most, total int64
	for _, n := range src.sizes {
		most, total = max(most, n), total+n
	}
	if most != spanBytes || total != int64(len(b)) || len(src.sizes) > 14 {
		t.Errorf("largest request %d bytes, want %d; %d bytes asked for in %d requests, want the blob's %d once in at most 14",
			most, spanBytes, total, len(src.sizes), len(b))
	}
}

// The chunks a verification or a lazy reader holds stay within
// 2×parallel spans of spanBytes however big the chunks are.
func TestMemoryBoundsInBytes(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		cs       int64
		parallel int
		window   int64 // chunks
		mem      int   // chunks kept for lazy readers
	}{
		{64 << 10, 16, 32, 32},
		{mib, 16, 32, 32},
		{mib, 64, 128, 64},
		{4 * mib, 16, 32, 16},
		{8 * mib, 16, 16, 8},
		{16 * mib, 16, 8, 4},
		{64 * mib, 16, 2, 2},
		{64 * mib, 1, 2, 2},
		{mib, 1, 2, 2},
	} {
		w := windowChunks(tc.cs, tc.parallel)
		m := memChunks(tc.cs, w)
		if w != tc.window || m != tc.mem {
			t.Errorf("chunk %d, parallel %d: window %d, kept %d chunks; want %d, %d", tc.cs, tc.parallel, w, m, tc.window, tc.mem)
		}
		if limit := max(2*tc.cs, 2*int64(tc.parallel)*spanBytes); w*tc.cs > limit {
			t.Errorf("chunk %d, parallel %d: window of %d bytes, above %d", tc.cs, tc.parallel, w*tc.cs, limit)
		}
	}
}
