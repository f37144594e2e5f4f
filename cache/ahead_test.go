package cache

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// readChunkAt reads a few bytes at the start of chunk i with a reader of
// its own (no read-ahead: the read continues nothing) and checks them.
func (g *lazyRig) readChunkAt(t *testing.T, i int64) {
	t.Helper()
	r := g.c.Open(g.d, g.size)
	defer r.Close()
	p := make([]byte, 10)
	if n, err := r.ReadAt(context.Background(), p, i*cs); err != nil || !bytes.Equal(p[:n], g.b[i*cs:i*cs+10]) {
		t.Fatalf("ReadAt(chunk %d) = %d, %v", i, n, err)
	}
}

// hasOwnHash reports whether chunk i is on disk with a hash of its own.
func (g *lazyRig) hasOwnHash(t *testing.T, i int64) bool {
	t.Helper()
	s := g.c.store
	s.mu.Lock()
	defer s.mu.Unlock()
	_, e, ok := s.lookupLocked(chunkKey{g.d, i})
	if !ok {
		t.Fatalf("chunk %d is not on disk", i)
	}
	return e.hasPlain
}

// A lazy chunk that arrives ahead of its blob's chain is hashed once:
// by the chain, or the background verification, from memory. Only if it
// leaves memory first does it get a hash of its own, from the bytes it
// was written from, so that its disk copy can be read back checked.
func TestAheadChunks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks int
		delay  time.Duration // before the background verification
		run    func(t *testing.T, g *lazyRig)
	}{
		{"chained from memory", 4, time.Hour, func(t *testing.T, g *lazyRig) {
			for _, i := range []int64{2, 1, 3} {
				g.readChunkAt(t, i)
			}
			for _, i := range []int64{1, 2, 3} {
				if g.hasOwnHash(t, i) {
					t.Errorf("chunk %d, still in memory, was hashed on its own", i)
				}
			}
			g.readChunkAt(t, 0) // the chain takes 1-3 from memory
			if st := g.c.Status(g.d, g.size); !st.Verified {
				t.Fatalf("Status = %+v after every chunk was read, want verified", st)
			}
			for i := int64(0); i < 4; i++ {
				if n := g.src.callsAt(g.d, i*cs); n != 1 {
					t.Errorf("chunk %d fetched %d times, want 1", i, n)
				}
			}
		}},
		{"evicted before the chain, and rotten on disk", 8, time.Hour, func(t *testing.T, g *lazyRig) {
			for i := int64(1); i < 8; i++ {
				g.readChunkAt(t, i)
			}
			// Memory holds 4 chunks: 1-3 left it and got their hash then.
			for i := int64(1); i < 8; i++ {
				if got, want := g.hasOwnHash(t, i), i < 4; got != want {
					t.Errorf("chunk %d has its own hash: %v, want %v", i, got, want)
				}
			}
			flipChunkByte(t, g.dir, g.d, 2, 5)
			g.readChunkAt(t, 0) // the chain reads 1 back; 2 does not match its hash and is dropped
			readAll(t, g.c, g.b, 3*cs/2)
			if st := g.c.Status(g.d, g.size); !st.Verified {
				t.Fatalf("Status = %+v after the blob was read, want verified", st)
			}
			if n := g.src.callsAt(g.d, 2*cs); n != 2 {
				t.Errorf("the rotten chunk 2 was fetched %d times, want 2", n)
			}
			for _, i := range []int64{1, 3} {
				if n := g.src.callsAt(g.d, i*cs); n != 1 {
					t.Errorf("chunk %d, read back from disk with its own hash, fetched %d times, want 1", i, n)
				}
			}
		}},
		{"background verification reads memory", 8, 10 * time.Millisecond, func(t *testing.T, g *lazyRig) {
			g.readChunkAt(t, 5)
			g.readChunkAt(t, 6)
			waitFor(t, "the background verification", func() bool { return g.c.Status(g.d, g.size).Verified })
			for _, i := range []int64{5, 6} {
				if n := g.src.callsAt(g.d, i*cs); n != 1 {
					t.Errorf("chunk %d, in memory, fetched %d times, want 1", i, n)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newLazyRig(t, 77, tc.chunks*cs, Options{Parallel: 2, BackgroundDelay: tc.delay})
			if m := memChunks(cs, g.c.window); m != 4 {
				t.Fatalf("memChunks = %d, the cases assume 4", m)
			}
			tc.run(t, g)
		})
	}
}
