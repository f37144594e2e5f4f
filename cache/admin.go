package cache

import (
	"context"
	"slices"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
)

// BlobInfo describes one verified blob in the cache.
type BlobInfo struct {
	Digest      digest.Digest
	Size        int64 // bytes of the blob
	CachedBytes int64 // bytes of it on disk now
}

// Blobs lists the verified blobs (those with a trusted chunk table),
// sorted by digest.
func (c *Cache) Blobs() ([]BlobInfo, error) {
	sizes, err := c.tables.scan()
	if err != nil {
		return nil, err
	}
	out := make([]BlobInfo, 0, len(sizes))
	for d, size := range sizes {
		out = append(out, BlobInfo{Digest: d, Size: size, CachedBytes: c.store.blobBytes(d)})
	}
	slices.SortFunc(out, func(a, b BlobInfo) int { return slices.Compare(a.Digest[:], b.Digest[:]) })
	return out, nil
}

// VerifyResult is what VerifyAll found.
type VerifyResult struct {
	Checked int // chunks read back and hashed, or found to have no trusted table
	Bad     int // of those, chunks that did not match (or had no table): removed
	// WentWith counts chunks removed, unchecked, with a bad chunk of the
	// same blob: the file of a whole blob is removed whole (passthrough
	// opens may be reading it), not punched.
	WentWith int
}

// VerifyAll reads every cached chunk back and hashes it against its
// blob's trusted table, whatever stamps say; a chunk that does not match
// is removed (it will be fetched again when read), with the rest of its
// blob's file if the blob was whole.
func (c *Cache) VerifyAll(ctx context.Context) (VerifyResult, error) {
	var r VerifyResult
	orphans := map[digest.Digest]bool{}
	for _, k := range c.store.chunkKeys() {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if orphans[k.d] {
			r.Checked++
			r.Bad++
			continue
		}
		if !c.store.cached(k.d, k.i, k.i+1) {
			r.WentWith++
			continue
		}
		r.Checked++
		tab, _ := c.table(k.d)
		if tab == nil {
			c.store.purge(k.d)
			orphans[k.d] = true
			r.Bad++
			continue
		}
		_, n := chunkSpan(tab.size, tab.chunkSize, k.i)
		if !c.store.rehash(k, n, tab) {
			r.Bad++
		}
	}
	return r, nil
}

// Prune evicts least recently used blobs no reader has open until the
// chunk data takes at most max bytes; it returns the bytes freed.
func (c *Cache) Prune(max int64) int64 {
	s := c.store
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.usage
	for _, d := range s.lru.Keys() { // oldest first
		if s.usage <= max {
			break
		}
		if s.pins[d] > 0 {
			continue
		}
		if bf, ok := s.lru.Peek(d); ok {
			s.removeBlobLocked(d, bf)
		}
	}
	return before - s.usage
}

// Stats are the cache's running figures for status and metrics.
type Stats struct {
	Usage, Max    int64 // bytes of chunk data on disk, and the budget
	VerifiedBlobs int   // blobs with a trusted chunk table
	Quarantined   int   // blobs answering EIO after failing verification (lazy)
}

// Stats returns the current figures.
func (c *Cache) Stats() Stats {
	st := Stats{Usage: c.store.usageBytes(), Max: c.o.MaxSize}
	c.tables.mu.Lock()
	st.VerifiedBlobs = len(c.tables.onDisk) + len(c.tables.memOnly)
	c.tables.mu.Unlock()
	now := time.Now()
	c.mu.Lock()
	for _, b := range c.blobs {
		if now.Before(b.quarUntil) {
			st.Quarantined++
		}
	}
	c.mu.Unlock()
	return st
}

// VerifiedSize returns the size of d if it has a trusted chunk table.
func (c *Cache) VerifiedSize(d digest.Digest) (int64, bool) {
	if tab, _ := c.table(d); tab != nil {
		return tab.size, true
	}
	return 0, false
}
