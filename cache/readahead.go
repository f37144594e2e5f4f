package cache

import (
	"errors"
	"sync"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// readahead is one Reader's guess at what it reads next, as mountpoint-s3
// makes it: a read that starts where the previous one ended doubles the
// chunks fetched ahead of it, up to 2×Parallel; any other read (a seek)
// resets it to none. It applies to lazy reads, which fetch only what is
// read; a strict read fetches the whole blob anyway.
//
// "Where the previous one ended" is a neighbourhood, not a byte: the
// kernel keeps several READs of one sequential reader in flight (the
// read and its readahead), and the daemon serves them on goroutines of
// their own, so they reach the cache out of order. A read that starts
// within two of its own lengths of the end of the furthest read so far
// is sequential. The exact test reset the window on a fifth of a cold
// 1 GiB cat's reads; fetches then started only as the reader came.
type readahead struct {
	mu     sync.Mutex
	next   int64 // the end of the furthest read of the current run
	window int64 // chunks to fetch after the current read
}

// advance records a read of [off, end) and returns how many chunks after
// it to fetch ahead, at most limit.
func (ra *readahead) advance(off, end, limit int64) int64 {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if near := 2 * (end - off); off >= ra.next-near && off <= ra.next+near {
		ra.window = min(max(1, 2*ra.window), limit)
		ra.next = max(ra.next, end)
	} else {
		ra.window = 0
		ra.next = end
	}
	return ra.window
}

// prefetch starts fetching the n chunks of k that follow a read ending
// at byte end (the first chunk that starts at or after end: a chunk the
// read itself touched is the read's to fetch), none that starts at or
// after limit, except those already cached; nobody waits for them, and
// the fetches are shared with the reads that come for the same chunks.
// Consecutive chunks go in runs aligned to a verification's span size
// (up to 4 MiB), one request each, as spans do: a registry spends its
// CPU per request, and on a link capped per connection a 4 MiB request
// moves more per round trip than 1 MiB. The chunks ahead hold places in
// the cache-wide bound the verifications share (chunksInFlight); when
// it is full, reading ahead waits for a later read.
func (c *Cache) prefetch(k blobKey, end, n, limit int64) {
	cs := c.o.ChunkSize
	last := min(chunkCount(k.size, cs), chunkCount(limit, cs))
	first := (end + cs - 1) / cs
	per := spanChunks(cs, c.window)
	// The window reaches the end of the run it ends in: a window that
	// slides one chunk per read would otherwise find one new chunk at a
	// time.
	hi := min(last, (first+n+per-1)/per*per)
	gen := c.store.gen(k.d)
	for g := first / per * per; g < hi; g += per {
		lo, top := max(g, first), min(g+per, hi)
		if lo >= top || c.store.cached(k.d, lo, top) {
			continue
		}
		if !c.spanSem.TryAcquire(top - lo) {
			return
		}
		unused := top - lo
		var run []int64
		var calls []*call[chunkResult]
		flush := func() {
			if len(run) > 0 {
				unused -= int64(len(run))
				c.startRun(k, run, calls, gen)
				run, calls = nil, nil
			}
		}
		for i := lo; i < top; i++ {
			if c.store.cached(k.d, i, i+1) {
				flush()
				continue
			}
			_, ln := chunkSpan(k.size, cs, i)
			cl, fresh := c.chunks.claim(chunkFlightKey{d: k.d, i: i, n: ln, gen: gen})
			if !fresh {
				flush() // being fetched already
				continue
			}
			run, calls = append(run, i), append(calls, cl)
		}
		flush()
		if unused > 0 {
			c.spanSem.Release(unused)
		}
	}
}

// startRun fetches the consecutive chunks run of k, whose flight calls
// and places in spanSem the caller took, in one request, settles each
// call with its chunk (stored like a single chunk's, see keepChunk; if
// the run reached past the blob's real end, fetched on its own) or the
// error, and gives the places back.
func (c *Cache) startRun(k blobKey, run []int64, calls []*call[chunkResult], gen uint64) {
	cs := c.o.ChunkSize
	settle := func(j int, v chunkResult, err error) {
		_, ln := chunkSpan(k.size, cs, run[j])
		c.chunks.settle(chunkFlightKey{d: k.d, i: run[j], n: ln, gen: gen}, calls[j], v, err)
	}
	if !c.spawn(func() {
		defer c.spanSem.Release(int64(len(run)))
		off, _ := chunkSpan(k.size, cs, run[0])
		lastOff, lastN := chunkSpan(k.size, cs, run[len(run)-1])
		data, err := c.fetch(k.d, off, lastOff+lastN-off, nil)
		var rb *runBuf
		if err == nil {
			rb = newRunBuf(data, c.o.Buffers)
			defer rb.release()
		}
		tab, _ := c.table(k.d)
		for j := range run {
			if errors.Is(err, hfserr.ErrIntegrity) {
				// Past the end of a blob whose descriptor overstates its
				// size: each chunk on its own, as a read would, so the
				// chunks before the end do not fail with the run.
				off, ln := chunkSpan(k.size, cs, run[j])
				v, cerr := c.loadChunk(k, run[j], off, ln, gen)
				settle(j, v, cerr)
				continue
			}
			if err != nil {
				settle(j, chunkResult{}, err)
				continue
			}
			lo := int64(j) * cs
			hi := min(int64(len(data)), lo+cs)
			t := tab
			if t != nil && !t.spans(run[j], hi-lo) {
				t = nil // a descriptor that lies about the size: never verified
			}
			v, kerr := c.keepChunk(k, run[j], data[lo:hi:hi], gen, t, rb)
			settle(j, v, kerr)
		}
	}) {
		for j := range run {
			settle(j, chunkResult{}, errClosed)
		}
		c.spanSem.Release(int64(len(run)))
	}
}
