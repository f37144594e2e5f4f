package cache

import "sync"

// readahead is one Reader's guess at what it reads next, as mountpoint-s3
// makes it: a read that starts where the previous one ended doubles the
// chunks fetched ahead of it, up to Parallel; any other read (a seek)
// resets it to none. It applies to lazy reads, which fetch only what is
// read; a strict read fetches the whole blob anyway.
type readahead struct {
	mu     sync.Mutex
	next   int64 // where a sequential read starts
	window int64 // chunks to fetch after the current read
}

// advance records a read of [off, end) and returns how many chunks after
// it to fetch ahead, at most limit.
func (ra *readahead) advance(off, end, limit int64) int64 {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if off == ra.next {
		ra.window = min(max(1, 2*ra.window), limit)
	} else {
		ra.window = 0
	}
	ra.next = end
	return ra.window
}

// prefetch starts fetching the n chunks of k that follow a read ending
// at byte end (the first chunk that starts at or after end: a chunk the
// read itself touched is the read's to fetch), none that starts at or
// after limit, except those already cached; nobody waits for them, and
// the fetches are shared with the reads that come for the same chunks.
func (c *Cache) prefetch(k blobKey, end, n, limit int64) {
	cs := c.o.ChunkSize
	last := min(chunkCount(k.size, cs), chunkCount(limit, cs))
	first := (end + cs - 1) / cs
	for i := first; i < min(first+n, last); i++ {
		if !c.store.cached(k.d, i, i+1) {
			c.startChunk(k, i)
		}
	}
}
