package cache

import (
	"bytes"
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/hashfs/hashfs/internal/bufpool"
)

// A verification gets the chunks it has no copy of in spans: runs of
// consecutive chunks in one range request. A request has a cost of its
// own whatever its size (a round trip, and a registry opening and
// reading the blob's storage: docker-registry reads 4 MiB from disk for
// any range it serves), so on a fast link a few large requests beat many
// small ones; on a slow link with a per-connection limit enough of them
// must still run at once. The memory bound is the same either way: a
// window of chunks fetched and not yet hashed (windowChunks).

// windowChunks is how many chunks one verification holds (fetching,
// waiting to be hashed or being written) and how far ahead one lazy
// reader reads: 2×parallel, within 2×parallel spans of spanBytes, and
// at least 2. Chunks bigger than spanBytes thus mean fewer chunks in
// memory, not more memory: when the window was 2×parallel chunks of any
// size, --chunk-size 64MiB --parallel 16 held 2 GiB per verification and
// a daemon streaming a 4 GiB blob peaked at 3.7 GiB.
func windowChunks(cs int64, parallel int) int64 {
	p := int64(parallel)
	return max(2, min(2*p, 2*p*spanBytes/cs))
}

// chunksInFlight bounds the chunks that all verifications together hold
// in spans (fetching, waiting to be hashed or being written), with the
// runs lazy readers read ahead (readahead.go): two windows (windowChunks).
// One verification alone keeps its
// whole window; many at once share the bound instead of each holding a
// window, so the daemon's memory does not grow with the number of blobs
// read at once (16 cold blobs read together held 509 MiB before). A
// verification holding spans always holds the one it hashes next, so
// each makes progress and gives its spans back.
func chunksInFlight(window int64) int64 {
	return 2 * window
}

// SpanBytes is the most blob data that verifications and lazy
// read-ahead together hold in memory at once (chunksInFlight chunks).
// The chunks kept for lazy readers (memChunks) come on top.
func (c *Cache) SpanBytes() int64 {
	return chunksInFlight(c.window) * c.o.ChunkSize
}

// spanHold is a span's place in the cache-wide bound (spanSem), given
// back once the hasher and the writer are both done with its bytes;
// the bytes, if fetched, then go back to the buffer pool.
type spanHold struct {
	sem  *semaphore.Weighted
	n    int64 // chunks
	left atomic.Int32
	data []byte // fetched bytes to give back to bufs; set before the hasher sees them
	bufs *bufpool.Pool
}

// holdSpan takes a place for n chunks in the bound. A verification that
// holds no span waits for one (ctx ends the wait); one that holds spans
// does not wait, since only its hashing gives them back: it gets nil
// and no error, and hashes what it has before asking again.
func (c *Cache) holdSpan(ctx context.Context, holding bool, n int64) (*spanHold, error) {
	if holding {
		if !c.spanSem.TryAcquire(n) {
			return nil, nil
		}
	} else if err := c.spanSem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	h := &spanHold{sem: c.spanSem, n: n, bufs: c.o.Buffers}
	h.left.Store(2)
	return h, nil
}

// done is called once by the hasher and once by the writer.
func (h *spanHold) done() {
	if h.left.Add(-1) == 0 {
		if h.data != nil {
			h.bufs.Put(h.data)
		}
		h.sem.Release(h.n)
	}
}

// spanResult is chunks [first, first+len(ents)) of a blob: data holds
// them back to back (shared: never modified), ents their cache entries
// (nil where a chunk is not cached). A fetched span is handed to the
// hasher before it is written: its entries arrive on stored once it is.
type spanResult struct {
	first, cs int64
	data      []byte
	ents      []*entry
	stored    chan []*entry
	took      time.Duration // fetching data, if fetched
}

// chunk returns chunk i's bytes.
func (r spanResult) chunk(i int64) []byte {
	lo := (i - r.first) * r.cs
	return r.data[lo:min(int64(len(r.data)), lo+r.cs)]
}

// startSpan gets chunks [first, end) of k in its own goroutine (under
// the daemon's context): read back if all are cached, else fetched with
// one request, handed over, then cached. It frees a place in slots, and
// its share of hold, when it is done with the bytes.
func (c *Cache) startSpan(k blobKey, first, end int64, sem chan struct{}, slots *semaphore.Weighted, hold *spanHold) *call[spanResult] {
	cl := &call[spanResult]{done: make(chan struct{})}
	if !c.spawn(func() {
		defer func() { slots.Release(end - first); hold.done() }()
		gen := c.store.gen(k.d)
		res, err := c.loadSpan(k, first, end, sem)
		if err == nil && res.stored != nil {
			hold.data = res.data
		}
		cl.val, cl.err = res, err
		close(cl.done)
		if err == nil && res.stored != nil {
			// Cached unverified until the verification that hashes them commits.
			res.stored <- c.store.put(k.d, first, res.data, nil, gen, false, c.isLazy(k))
		}
	}) {
		slots.Release(end - first)
		hold.done()
		cl.err = errClosed
		close(cl.done)
	}
	return cl
}

func (c *Cache) loadSpan(k blobKey, first, end int64, sem chan struct{}) (spanResult, error) {
	cs := c.o.ChunkSize
	off, _ := chunkSpan(k.size, cs, first)
	lastOff, lastN := chunkSpan(k.size, cs, end-1)
	res := spanResult{first: first, cs: cs, ents: make([]*entry, end-first)}
	if c.store.cached(k.d, first, end) {
		// Read back (lazy mode: readers were here first), from memory
		// where a copy is still there: a chunk that came ahead of the
		// chain has no hash of its own to read it from disk with.
		var parts [][]byte
		for i := first; i < end; i++ {
			_, n := chunkSpan(k.size, cs, i)
			ck := chunkKey{k.d, i}
			if m, ok := c.memGet(ck, n, nil); ok {
				parts, res.ents[i-first] = append(parts, bytes.Clone(m.data)), m.ent
				m.rb.release()
				continue
			}
			b, e, ok := c.store.read(ck, n, nil, nil)
			if !ok {
				parts = nil
				break
			}
			parts, res.ents[i-first] = append(parts, b), e
		}
		switch len(parts) {
		case 1:
			res.data = parts[0]
			return res, nil
		case int(end - first):
			res.data = make([]byte, 0, lastOff+lastN-off)
			for _, b := range parts {
				res.data = append(res.data, b...)
			}
			return res, nil
		}
	}
	t := time.Now()
	data, err := c.fetch(k.d, off, lastOff+lastN-off, sem)
	if err != nil {
		return spanResult{}, err
	}
	res.data, res.ents, res.stored, res.took = data, nil, make(chan []*entry, 1), time.Since(t)
	return res, nil
}
