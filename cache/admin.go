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

// VerifyAll reads every cached chunk back and hashes it against its
// blob's trusted table, whatever stamps say; a chunk that does not match
// is removed (it will be fetched again when read), with the rest of its
// blob's file if the blob was whole. It returns how many chunks it
// checked and how many it removed.
func (c *Cache) VerifyAll(ctx context.Context) (checked, removed int, err error) {
	for _, k := range c.store.chunkKeys() {
		if err := ctx.Err(); err != nil {
			return checked, removed, err
		}
		checked++
		tab, _ := c.table(k.d)
		if tab == nil {
			c.store.purge(k.d)
			removed++
			continue
		}
		_, n := chunkSpan(tab.size, tab.chunkSize, k.i)
		if !c.store.rehash(k, n, tab) {
			removed++
		}
	}
	return checked, removed, nil
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
