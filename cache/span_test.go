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
	seen   map[*byte]bool
	reused int
}

func (s *sizingSource) FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	s.mu.Lock()
	s.sizes = append(s.sizes, n)
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

// A verification asks for bigger spans once the source answers fast,
// and keeps the small ones where each request is slow (far away, or
// capped per connection).
func TestSpanSizeFollowsSourceRate(t *testing.T) {
	const mib = 1 << 20
	// The rates are scaled down so that -race and a loaded machine
	// still tell them apart: "fast" is the fake at full speed (over
	// 50 MB/s under -race), "slow" at most 4 MiB per 400 ms.
	const rate = 16e6
	tests := []struct {
		name    string
		size    int
		delay   time.Duration
		wantMax int64
	}{
		{"fast source", 64*mib + 5, 0, bigSpanBytes},
		{"slow source", 24*mib + 5, 400 * time.Millisecond, spanBytes},
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
		})
	}
}

// With Options.Buffers, the bytes of fetched spans go back to the pool
// once hashed and written, and come out again for later spans, while
// every blob still reads back exactly (under -race a buffer reused
// while still being hashed or written is also a reported race).
func TestSpanBuffersGoBackToPool(t *testing.T) {
	const mib = 1 << 20
	var bs [][]byte
	for i := range 6 {
		bs = append(bs, blob(uint64(500+i), 20*mib+i))
	}
	pool := new(bufpool.Pool)
	src := &sizingSource{fakeSource: newFake(bs...), bufs: pool, seen: map[*byte]bool{}}
	c := openCache(t, t.TempDir(), src, Options{ChunkSize: mib, Parallel: 4, Buffers: pool})
	var wg sync.WaitGroup
	for _, b := range bs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.Open(digest.Of(b), int64(len(b)))
			defer r.Close()
			got := make([]byte, len(b))
			if n, err := r.ReadAt(context.Background(), got, 0); n != len(b) || !bytes.Equal(got, b) {
				t.Errorf("blob %s: %d bytes, %v", digest.Of(b), n, err)
			}
		}()
	}
	wg.Wait()
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.reused == 0 {
		t.Errorf("none of %d fetched spans reused a buffer given back", len(src.sizes))
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
	got := make([]byte, len(b))
	for off := 0; off < len(b); off += 128 << 10 {
		end := min(len(b), off+128<<10)
		if n, err := r.ReadAt(context.Background(), got[off:end], int64(off)); n != end-off {
			t.Fatalf("read at %d: %d bytes, %v", off, n, err)
		}
	}
	if !bytes.Equal(got, b) {
		t.Fatal("bytes read differ from the blob")
	}
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

// Lazy read-ahead runs give their buffers back to the pool once no
// reader and no in-memory copy holds them, and later runs reuse them;
// readers racing the reuse read the chunk again, so every byte read is
// right (and under -race no buffer is written while read).
func TestLazyRunBuffersRecycled(t *testing.T) {
	const mib = 1 << 20
	var bs [][]byte
	for i := range 4 {
		bs = append(bs, blob(uint64(700+i), 24*mib+i))
	}
	pool := new(bufpool.Pool)
	src := &sizingSource{fakeSource: newFake(bs...), bufs: pool, seen: map[*byte]bool{}}
	c := openCache(t, t.TempDir(), src, Options{ChunkSize: mib, Parallel: 4, Mode: Lazy, Buffers: pool,
		BackgroundDelay: time.Hour}) // no background verification during the test
	var wg sync.WaitGroup
	for _, b := range bs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.Open(digest.Of(b), int64(len(b)))
			defer r.Close()
			for pass := range 2 { // the second pass reads what the first cached
				got := make([]byte, len(b))
				for off := 0; off < len(b); off += 128 << 10 {
					end := min(len(b), off+128<<10)
					if n, err := r.ReadAt(context.Background(), got[off:end], int64(off)); n != end-off {
						t.Errorf("pass %d: read at %d: %d bytes, %v", pass, off, n, err)
						return
					}
				}
				if !bytes.Equal(got, b) {
					t.Errorf("pass %d: bytes read differ from blob %s", pass, digest.Of(b))
				}
			}
		}()
	}
	wg.Wait()
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.reused == 0 {
		t.Errorf("none of %d read-ahead requests reused a buffer given back", len(src.sizes))
	}
}
