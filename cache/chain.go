package cache

import (
	"crypto/sha256"
	"hash"
	"sync"

	"github.com/hashfs/hashfs/internal/digest"
)

// A lazy blob read front to back is verified as it is read. Its chain
// hashes each chunk into the blob's sha256 when the chunk arrives from
// the source, from the very buffer the reader is served and the disk is
// written from, so when the last chunk comes the blob is verified and
// its table committed: no background job (lazy.go) reads every chunk
// back from disk, checks it against a hash taken when it was written and
// hashes it into the blob a second time. A chunk hashed into the chain
// is written without a hash of its own (it would be a third pass):
// until the blob verifies, it is read from memory (Cache.mem) or fetched
// again, never read back from disk unchecked. A chunk that arrives ahead
// of the chain is written without one too: the chain (or the background
// job) hashes it from memory when it gets there. Only a chunk that
// leaves memory first is hashed on its own, then, from the bytes it was
// written from (Cache.leave), so its disk copy can be read back checked.
//
// Lock order: chain.mu, then Cache.mu or the store's (put, purge, gen);
// nothing takes a chain's lock while holding either.
//
// A chain starts with chunk 0 and ends when the blob verifies or fails,
// when the blob is purged (a new generation) or when the background job
// takes it over to fetch the rest: the job then resumes from the chain
// rather than from the start (verify.go).

// maxChains bounds the chains kept at once; a blob that finds no room
// is verified by its background job, as without chains.
const maxChains = 64

type chain struct {
	mu   sync.Mutex // held while hashing: chunks join in order
	size int64      // the blob's, as its readers were told
	gen  uint64     // the blob's store generation when chunk 0 came
	h    hash.Hash
	next int64      // chunks hashed
	sums [][32]byte // chaining values after each chunk hashed (the table's)
	ents []*entry   // cache entries written from the hashed bytes, nil where none
	over bool       // ended: verified, failed, stale or taken over
}

// chainFor returns k's chain, locked, if chunk i of generation gen is
// the next to hash: starting one at chunk 0. Otherwise it returns nil.
func (c *Cache) chainFor(k blobKey, i int64, gen uint64) *chain {
	c.mu.Lock()
	ch := c.chains[k.d]
	if ch == nil || ch.gen != gen || ch.size != k.size {
		if i != 0 || len(c.chains) >= maxChains && ch == nil {
			c.mu.Unlock()
			return nil
		}
		ch = &chain{size: k.size, gen: gen, h: sha256.New(), sums: make([][32]byte, chunkCount(k.size, c.o.ChunkSize))}
		c.chains[k.d] = ch
	}
	c.mu.Unlock()
	ch.mu.Lock()
	if ch.over || ch.next != i {
		ch.mu.Unlock()
		return nil
	}
	return ch
}

// add hashes chunk i (the next) into the chain and records its entry.
func (ch *chain) add(i, n int64, data []byte, e *entry) {
	ch.h.Write(data)
	if i < n-1 {
		ch.sums[i] = chainingValue(ch.h)
	}
	ch.ents = append(ch.ents, e)
	ch.next = i + 1
}

// hashed reports whether chunk i of generation gen is in ch already.
func (ch *chain) hashed(i int64, gen uint64) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return !ch.over && ch.gen == gen && ch.next > i
}

// endChain forgets k's chain if it is still ch.
func (c *Cache) endChain(k blobKey, ch *chain) {
	ch.over = true
	c.mu.Lock()
	if c.chains[k.d] == ch {
		delete(c.chains, k.d)
	}
	c.mu.Unlock()
}

// chainOf returns d's chain, if it has one.
func (c *Cache) chainOf(d digest.Digest) *chain {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.chains[d]
}

// resume lets k's chain go on from chunk i of generation gen, if that is
// the chunk it stopped at: it takes in what is cached from there.
func (c *Cache) resume(k blobKey, i int64, gen uint64) {
	if ch := c.chainFor(k, i, gen); ch != nil {
		c.extend(k, ch, c.window)
		ch.mu.Unlock()
	}
}

// extend hashes the chunks after the ones ch has that are cached, in
// memory or on disk with their own hash: up to limit of them, then the
// rest in a goroutine of its own (a reader waiting for its chunk passes
// a window). If ch then has every chunk, it commits k's table or
// quarantines k. The caller holds ch.mu.
func (c *Cache) extend(k blobKey, ch *chain, limit int64) {
	cs := c.o.ChunkSize
	n := chunkCount(k.size, cs)
	stop := ch.next + limit
	for ch.next < n && ch.next < stop {
		ck := chunkKey{k.d, ch.next}
		_, ln := chunkSpan(k.size, cs, ch.next)
		if m, ok := c.memGet(ck, ln, nil); ok {
			ok = m.gen == ch.gen
			if ok {
				ch.add(ch.next, n, m.data, m.ent)
			}
			m.rb.release()
			if ok {
				continue
			}
		}
		// Gone from memory before the chain got to it: from disk,
		// checked against the hash it was written with.
		data, e, ok := c.store.readOwn(ck, ln)
		if !ok || c.store.gen(k.d) != ch.gen {
			break
		}
		ch.add(ch.next, n, data, e)
	}
	if ch.next < n {
		if ch.next == stop {
			// More may be cached: go on without keeping the reader.
			c.spawn(func() {
				ch.mu.Lock()
				defer ch.mu.Unlock()
				if !ch.over {
					c.extend(k, ch, c.window)
				}
			})
		}
		return
	}
	var got digest.Digest
	ch.h.Sum(got[:0])
	if got != k.d {
		c.endChain(k, ch)
		c.lazyFailed(k, &IntegrityError{Digest: k.d, Size: k.size, Got: got})
		return
	}
	if n > 0 {
		ch.sums[n-1] = got
	}
	// The table first: chunks without a hash of their own are checked
	// against the chain until it ends, then against the table.
	c.tables.put(k.d, &table{size: k.size, chunkSize: cs, sums: ch.sums})
	c.store.markVerified(k.d, 0, ch.ents)
	c.endChain(k, ch)
	c.log.Debug("blob verified as it was read", "digest", k.d.String(), "size", k.size)
}

// settle lets k's chain take in every cached chunk it lacks before a
// read that reaches the blob's end returns: a reader who read the whole
// blob then learns of a mismatch from that read, not after it. It
// stops at the first chunk not cached, so a random reader of the tail
// pays little; one that read the chunks pays one hash of each it has
// not, which the background job would spend anyway.
func (c *Cache) settle(k blobKey) {
	ch := c.chainOf(k.d)
	if ch == nil || ch.size != k.size {
		return
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if !ch.over {
		c.extend(k, ch, chunkCount(k.size, c.o.ChunkSize))
	}
}

// takeChain ends k's chain for the background verification, which
// resumes from it: it returns the chain (with every chunk before
// ch.next hashed) or nil if there is none of generation gen.
func (c *Cache) takeChain(k blobKey, gen uint64) *chain {
	c.mu.Lock()
	ch := c.chains[k.d]
	if ch != nil && ch.size == k.size {
		delete(c.chains, k.d)
	} else {
		ch = nil
	}
	c.mu.Unlock()
	if ch == nil {
		return nil
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.over || ch.gen != gen {
		ch.over = true
		return nil
	}
	ch.over = true
	return ch
}

// chainCheck reports whether data is what k's chain hashed as chunk
// k.i, for a chunk read back from disk that has no hash of its own: the
// chain's chaining values before and after it are its check, as a
// table's are, and once the chain has verified the blob, its table.
// known is false if neither is there (the chain failed or was taken
// over): the chunk is then fetched again.
func (c *Cache) chainCheck(k chunkKey, data []byte) (good, known bool) {
	ch := c.chainOf(k.d)
	if ch != nil {
		var in, out [32]byte
		ch.mu.Lock()
		ok := !ch.over && ch.gen == c.store.gen(k.d) && k.i < ch.next && k.i < int64(len(ch.sums))-1
		if ok {
			if k.i > 0 {
				in = ch.sums[k.i-1]
			}
			out = ch.sums[k.i]
		}
		ch.mu.Unlock()
		if ok {
			h := resume(in, k.i*c.o.ChunkSize)
			h.Write(data)
			return chainingValue(h) == out, true
		}
	}
	if tab, _ := c.table(k.d); tab != nil && tab.spans(k.i, int64(len(data))) {
		return tab.check(k.i, data), true
	}
	return false, false
}
