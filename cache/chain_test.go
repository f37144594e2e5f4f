package cache

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
)

// lazyRig is a lazy cache (any blob over one chunk) on a fake source
// that holds one blob.
type lazyRig struct {
	b    []byte
	d    digest.Digest
	size int64
	src  *fakeSource
	dir  string
	c    *Cache
}

func newLazyRig(t *testing.T, seed uint64, n int, o Options) *lazyRig {
	b := blob(seed, n)
	g := &lazyRig{b: b, d: digest.Of(b), size: int64(len(b)), src: newFake(b), dir: t.TempDir()}
	o.Mode, o.LazyVerifyMax = Lazy, cs
	g.c = openCache(t, g.dir, g.src, o)
	return g
}

// A lazy blob read front to back is verified by the read itself: the
// table exists once the last chunk is served, with no background job
// (held off for an hour here), every chunk fetched once, and later reads
// are of verified chunks. It holds for single reads and for the runs a
// sequential reader reads ahead.
func TestLazySequentialReadVerifies(t *testing.T) {
	for _, tc := range []struct {
		name     string
		parallel int
		step     int
	}{
		{"read-ahead runs", 4, 20000},
		{"one chunk at a time", 1, cs},
		{"reads across chunks", 2, cs + 4097},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newLazyRig(t, 40, 37*cs+123, Options{Parallel: tc.parallel, BackgroundDelay: time.Hour})
			b, d, size, src, c := g.b, g.d, g.size, g.src, g.c
			readAll(t, c, b, tc.step)
			if st := c.Status(d, size); !st.Verified || st.Quarantined {
				t.Fatalf("after reading the blob front to back: Status = %+v, want verified", st)
			}
			if got := src.answered(); got != size {
				t.Errorf("fetched %d bytes, want the blob once (%d)", got, size)
			}
			tab, _ := c.table(d)
			if f, todo, _ := c.store.seal(d, tab); f == nil {
				t.Errorf("the verified blob cannot be served whole: chunks %v not marked verified", todo)
			} else {
				f.Close()
			}
			c.mem.Purge()
			readAll(t, c, b, 50000) // from disk, against the table
			if got := src.answered(); got != size {
				t.Errorf("fetched %d bytes after reading again, want %d", got, size)
			}
		})
	}
}

// A lazy blob that does not hash to its digest is quarantined by the
// time its reader reaches the end, and the read that reaches it fails
// rather than returning the end of the file: with one chunk at a time
// and with read-ahead runs that arrive out of order.
func TestLazySequentialReadQuarantines(t *testing.T) {
	for _, tc := range []struct {
		name     string
		parallel int
		step     int
	}{
		{"one chunk at a time", 1, cs},
		{"read-ahead runs", 8, 20000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			quarantined := make(chan digest.Digest, 1)
			g := newLazyRig(t, 41, 29*cs, Options{Parallel: tc.parallel, BackgroundDelay: time.Hour,
				OnQuarantine: func(d digest.Digest) { quarantined <- d }})
			d, size, c := g.d, g.size, g.c
			g.src.setFlip(d, 4*cs+9)
			r := c.Open(d, size)
			defer r.Close()
			p := make([]byte, tc.step)
			var err error
			for off := int64(0); off < size && err == nil; off += int64(tc.step) {
				_, err = r.ReadAt(context.Background(), p, off)
			}
			if !isIntegrity(err) {
				t.Fatalf("reading a corrupt lazy blob to its end: last error %v, want an integrity error", err)
			}
			select {
			case got := <-quarantined:
				if got != d {
					t.Fatalf("OnQuarantine(%s), want %s", got, d)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no quarantine without a background verification")
			}
			if st := c.Status(d, size); !st.Quarantined || st.Verified {
				t.Fatalf("Status = %+v", st)
			}
		})
	}
}

// A reader that stops half way leaves the rest to the background job,
// which resumes from the chunks the reader's chain hashed: it fetches
// only the rest, although those chunks were written without a hash of
// their own.
func TestLazyBackgroundResumesChain(t *testing.T) {
	g := newLazyRig(t, 42, 16*cs, Options{Parallel: 1, BackgroundDelay: 200 * time.Millisecond})
	b, d, size, src, c := g.b, g.d, g.size, g.src, g.c
	r := c.Open(d, size)
	defer r.Close()
	p := make([]byte, cs)
	for off := int64(0); off < 7*cs; off += cs {
		if n, err := r.ReadAt(context.Background(), p, off); err != nil || !bytes.Equal(p[:n], b[off:off+cs]) {
			t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
		}
	}
	waitFor(t, "background verification", func() bool { return c.Status(d, size).Verified })
	for i := int64(0); i < 16; i++ {
		if got := src.callsAt(d, i*cs); got > 1 {
			t.Errorf("chunk %d fetched %d times, want once", i, got)
		}
	}
	if got := src.answered(); got != size {
		t.Errorf("fetched %d bytes, want the blob once (%d)", got, size)
	}
	c.mem.Purge()
	readAll(t, c, b, 30000)
}

// Chunks hashed into the chain are written without a hash of their
// own; read back from disk before the blob verifies, they are checked
// against the chain: served without a second fetch if intact, fetched
// again if the disk changed them. (Once verified, a chunk hashed when
// it was written is trusted on disk, as a strict verification's are.)
func TestLazyChainedChunksReadBack(t *testing.T) {
	// 40 chunks: more than the read-ahead reaches, so not verified
	// before the flip. Parallel 4 keeps 8 chunks in memory: the first
	// reads come from there, so no chunk was read back (and checked)
	// before the flip.
	g := newLazyRig(t, 43, 40*cs, Options{Parallel: 4, BackgroundDelay: time.Hour})
	b, d, size, src, dir, c := g.b, g.d, g.size, g.src, g.dir, g.c
	r := c.Open(d, size)
	defer r.Close()
	p := make([]byte, cs)
	read := func(i int64) {
		t.Helper()
		if n, err := r.ReadAt(context.Background(), p, i*cs); err != nil || !bytes.Equal(p[:n], b[i*cs:(i+1)*cs]) {
			t.Fatalf("ReadAt chunk %d = %d, %v", i, n, err)
		}
	}
	for i := range int64(5) {
		read(i)
	}
	c.mem.Purge()
	flipChunkByte(t, dir, d, 3, 7)
	for i := range int64(5) {
		read(i)
	}
	for i := range int64(5) {
		want := 1
		if i == 3 {
			want = 2
		}
		if got := src.callsAt(d, i*cs); got != want {
			t.Errorf("chunk %d fetched %d times, want %d", i, got, want)
		}
	}
	for i := int64(5); i < 40; i++ {
		read(i)
	}
	if st := c.Status(d, size); !st.Verified {
		t.Fatalf("Status = %+v, want verified", st)
	}
}

// A chain that reaches chunks read before it (ahead of it, so written
// with their own hash) takes them from memory or, once they have left
// it, from disk, up to a window of them per read (16 chunks here): the
// blob still verifies with every chunk fetched once.
func TestLazyChainCatchesUp(t *testing.T) {
	g := newLazyRig(t, 44, 10*cs, Options{Parallel: 8, BackgroundDelay: time.Hour})
	d, size, src, c := g.d, g.size, g.src, g.c
	r := c.Open(d, size)
	defer r.Close()
	p := make([]byte, 100)
	for _, i := range []int64{4, 5, 6, 7, 8, 9, 1, 2, 3} {
		if _, err := r.ReadAt(context.Background(), p, i*cs); err != nil {
			t.Fatalf("ReadAt chunk %d: %v", i, err)
		}
		if i == 9 {
			c.mem.Purge() // 4-9 only on disk now
		}
	}
	if c.Status(d, size).Verified {
		t.Fatal("verified before chunk 0 was read")
	}
	if _, err := r.ReadAt(context.Background(), p, 0); err != nil {
		t.Fatalf("ReadAt chunk 0: %v", err)
	}
	if st := c.Status(d, size); !st.Verified {
		t.Fatalf("Status after chunk 0 = %+v, want verified", st)
	}
	if got := src.answered(); got != size {
		t.Errorf("fetched %d bytes, want the blob once (%d)", got, size)
	}
}

// A reader that reads a corrupt lazy blob front to back after another
// reader fetched all but its first chunk: the chain catches up on the
// rest in the background once chunk 0 comes, and the read that reaches
// the end waits for it (settle), so it fails rather than returning the
// end of the file.
func TestLazyEndReadWaitsForChain(t *testing.T) {
	g := newLazyRig(t, 45, 200*cs, Options{Parallel: 1, BackgroundDelay: time.Hour})
	d, size, c := g.d, g.size, g.c
	g.src.setFlip(d, 150*cs+3)
	other := c.Open(d, size)
	defer other.Close()
	p := make([]byte, cs)
	for off := int64(cs); off < size; off += cs {
		if _, err := other.ReadAt(context.Background(), p, off); err != nil {
			t.Fatalf("first reader at %d: %v", off, err)
		}
	}
	r := c.Open(d, size)
	defer r.Close()
	var err error
	for off := int64(0); off < size && err == nil; off += cs {
		_, err = r.ReadAt(context.Background(), p, off)
	}
	if !isIntegrity(err) {
		t.Fatalf("reading a corrupt lazy blob to its end: last error %v, want an integrity error", err)
	}
}
