package cache

import (
	"os"

	"github.com/hashfs/hashfs/internal/digest"
)

// Removing chunks and blobs: punching a chunk out, unlinking a blob,
// eviction within the budget, purges (see chunkstore.go for the rules).

// removeChunkLocked drops one chunk. Its bytes are punched out of the
// file, unless the blob was whole (the kernel may be reading that file
// for a passthrough open) or punching fails: then the blob goes.
func (s *store) removeChunkLocked(k chunkKey, bf *blobFile, e *entry) {
	if bf.whole || len(bf.chunks) == 1 {
		s.removeBlobLocked(k.d, bf)
		return
	}
	f, err := s.openLocked(k.d, bf, false)
	if err == nil {
		err = punch(f, k.i*s.cs, e.size)
		s.doneLocked(k.d, bf)
	}
	if err != nil {
		s.removeBlobLocked(k.d, bf)
		return
	}
	delete(bf.chunks, k.i)
	bf.bytes -= e.size
	s.usage -= e.size
}

// removeBlobLocked removes d's file and index record. Writes in progress
// are cancelled; their bytes land in the unlinked file.
func (s *store) removeBlobLocked(d digest.Digest, bf *blobFile) {
	if cur, ok := s.lru.Peek(d); ok && cur == bf {
		s.lru.Remove(d)
	}
	s.usage -= bf.bytes
	bf.bytes, bf.chunks, bf.dead = 0, map[int64]*entry{}, true
	s.cancelLocked(d)
	os.RemoveAll(s.blobDir(d))
	s.idleLocked(d, bf)
}

// cancelLocked forgets d's writes in progress: they no longer count.
func (s *store) cancelLocked(d digest.Digest) {
	for k, p := range s.pending {
		if k.d != d {
			continue
		}
		delete(s.pending, k)
		if !p.gone {
			p.gone = true
			s.usage -= p.n
		}
	}
}

// makeRoomLocked evicts least recently used blobs that no reader holds
// until n more bytes fit. It reports whether they fit.
func (s *store) makeRoomLocked(n int64) bool {
	if n > s.max {
		return false
	}
	if s.usage+n <= s.max {
		return true
	}
	for _, d := range s.lru.Keys() { // oldest first
		if s.usage+n <= s.max {
			break
		}
		if s.pins[d] > 0 {
			continue
		}
		if bf, ok := s.lru.Peek(d); ok {
			s.removeBlobLocked(d, bf)
		}
	}
	return s.usage+n <= s.max
}

// purge removes every chunk of d, cancels writes in progress and makes
// fetches started before now unable to store what they get.
func (s *store) purge(d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gens[d]++
	if bf, ok := s.lru.Peek(d); ok {
		s.removeBlobLocked(d, bf)
		return
	}
	s.cancelLocked(d)
	os.RemoveAll(s.blobDir(d))
}
