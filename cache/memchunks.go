package cache

import "crypto/sha256"

// memChunk is a chunk kept in memory (Cache.mem). It is either one this
// process fetched for a lazy reader and has not verified, kept so that
// the reader arriving after the read-ahead neither reads it back nor
// hashes it again, or a verified chunk that did not fit the disk
// budget, kept so that sequential small reads do not refetch it.
type memChunk struct {
	data     []byte
	gen      uint64  // the blob's store generation then: a purge makes an unverified copy stale
	verified bool    // data matched the blob's chunk table
	rb       *runBuf // data's buffer, on which the entry holds a count (unverified copies only)
	ent      *entry  // unverified copies: the cache entry written from data, if any
	// ahead: an unverified copy that came ahead of its blob's chain and
	// was written without a hash of its own (keepChunk).
	ahead bool
}

// memChunks is how many chunks are kept in memory: the read-ahead
// window of one sequential lazy reader (windowChunks), within 64 MiB,
// and at least 4 (or the window, if smaller: 2 chunks of up to 64 MiB).
func memChunks(cs, window int64) int {
	return int(max(min(4, window), min(window, (64<<20)/cs)))
}

// memGet returns k's copy in memory if it may serve a read against tab
// (verified if tab is not nil; of the blob's current generation if it
// is), with a count taken on its buffer that the caller gives back
// with m.rb.release().
func (c *Cache) memGet(k chunkKey, n int64, tab *table) (m memChunk, ok bool) {
	m, ok = c.mem.Get(k)
	if !ok || int64(len(m.data)) != n {
		return memChunk{}, false
	}
	if tab != nil && !m.verified || tab == nil && m.gen != c.store.gen(k.d) {
		return memChunk{}, false
	}
	if !m.rb.acquire() {
		return memChunk{}, false
	}
	return m, true
}

// leave is called as a chunk leaves memory (evicted). A chunk that came
// ahead of its blob's chain was written without a hash of its own, so
// that it is hashed once, by the chain or the background verification,
// from memory. If neither got to it, it gets that hash now, from the
// very bytes it was written from: its disk copy can then be read back
// and checked, as a chunk written with a hash is. The chain may have
// stopped at it, finding it neither in memory nor with a hash: it goes
// on from here.
func (c *Cache) leave(k chunkKey, m memChunk) {
	defer m.rb.release()
	if !m.ahead || m.ent == nil || m.gen != c.store.gen(k.d) {
		return
	}
	ch := c.chainOf(k.d)
	if ch != nil && ch.hashed(k.i, m.gen) {
		return
	}
	if tab, _ := c.table(k.d); tab != nil {
		return // verified: its chunks are checked against the table
	}
	if c.store.setPlain(k, m.ent, sha256.Sum256(m.data)) && ch != nil {
		c.resume(blobKey{k.d, ch.size}, k.i, m.gen)
	}
}

// MemoryBytes is the most blob data the cache holds in memory at once:
// the spans in flight (SpanBytes) and, in lazy mode, the chunks kept
// for lazy readers (memChunks). A strict cache keeps chunks in memory
// only when they do not fit its disk budget, so they are not counted.
func (c *Cache) MemoryBytes() int64 {
	b := c.SpanBytes()
	if c.o.Mode == Lazy {
		b += int64(memChunks(c.o.ChunkSize, c.window)) * c.o.ChunkSize
	}
	return b
}
