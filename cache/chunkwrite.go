package cache

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/hashfs/hashfs/internal/digest"
)

// Writing chunks into a blob's file (see chunkstore.go for the layout
// and the locking rules).

// put stores chunks first, first+1, … of d (data holds them back to
// back) if the budget allows and d was not purged since gen. verified
// says the bytes matched the blob's table; plains, if not nil, are the
// chunks' sha256 (chunks of a blob not verified yet). A run is written
// with one write, with O_DIRECT if direct (readers get these bytes
// through the daemon: directwrite.go). It returns the entries of the
// chunks put, nil for those not on disk. A write failure is logged once
// and otherwise ignored.
func (s *store) put(d digest.Digest, first int64, data []byte, plains [][32]byte, gen uint64, verified, direct bool) []*entry {
	n := int64(len(data))
	count := (n + s.cs - 1) / s.cs
	out := make([]*entry, count)
	s.mu.Lock()
	if s.gens[d] != gen {
		s.mu.Unlock()
		return out
	}
	k := chunkKey{d, first}
	if count == 1 {
		if bf, e, ok := s.lookupLocked(k); ok {
			if e.size == n && ((verified && e.verified) || (plains != nil && e.hasPlain && e.plain == plains[0])) {
				e.verified = e.verified || verified
				s.lru.Get(d)
				s.mu.Unlock()
				out[0] = e
				return out
			}
			s.removeChunkLocked(k, bf, e)
		}
	}
	if s.anyLocked(d, first, first+count) || !s.makeRoomLocked(n) {
		s.mu.Unlock()
		if count == 1 {
			return out
		}
		// Some are there already, or not all fit: one at a time.
		for j := int64(0); j < count; j++ {
			var p [][32]byte
			if plains != nil {
				p = plains[j : j+1]
			}
			out[j] = s.put(d, first+j, data[j*s.cs:min(n, (j+1)*s.cs)], p, gen, verified, direct)[0]
		}
		return out
	}
	bf, ok := s.lru.Get(d)
	if !ok {
		bf = &blobFile{chunks: map[int64]*entry{}}
		s.lru.Add(d, bf)
	}
	f, err := s.openLocked(d, bf, true)
	if err != nil {
		s.writeFailedLocked(err)
		if len(bf.chunks) == 0 && bf.io == 0 {
			s.removeBlobLocked(d, bf)
		}
		s.mu.Unlock()
		return out
	}
	var df *os.File
	if direct {
		df = s.directLocked(d, bf)
	}
	p := &pendingPut{n: n}
	for i := first; i < first+count; i++ {
		s.pending[chunkKey{d, i}] = p
	}
	s.usage += n
	s.mu.Unlock()

	off := first * s.cs
	if err = s.writeAt(f, df, data, off); err != nil {
		punch(f, off, n) // give back what a partial write took
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.doneLocked(d, bf)
	if p.gone { // purged or evicted while we wrote
		return out
	}
	s.usage -= n
	for i := first; i < first+count; i++ {
		delete(s.pending, chunkKey{d, i})
	}
	if err != nil {
		s.writeFailedLocked(err)
		if len(bf.chunks) == 0 && !bf.dead {
			s.removeBlobLocked(d, bf)
		}
		return out
	}
	for j := int64(0); j < count; j++ {
		e := &entry{size: min(n, (j+1)*s.cs) - j*s.cs, verified: verified}
		if plains != nil {
			e.plain, e.hasPlain = plains[j], true
		}
		bf.chunks[first+j], out[j] = e, e
	}
	bf.bytes += n
	s.usage += n
	return out
}

// markVerified records that the chunks first, first+1, … of d whose
// entries are ents (nil for none) are the verified blob's, if they are
// still cached.
func (s *store) markVerified(d digest.Digest, first int64, ents []*entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	bf, ok := s.lru.Peek(d)
	if !ok {
		return
	}
	for j, e := range ents {
		if e != nil && bf.chunks[first+int64(j)] == e {
			e.verified = true
		}
	}
}

// anyLocked reports whether any chunk in [a, b) of d is cached or being written.
func (s *store) anyLocked(d digest.Digest, a, b int64) bool {
	bf, _ := s.lru.Peek(d)
	for i := a; i < b; i++ {
		if _, busy := s.pending[chunkKey{d, i}]; busy {
			return true
		}
		if bf != nil && bf.chunks[i] != nil {
			return true
		}
	}
	return false
}

// cached reports whether every chunk in [a, b) of d is cached.
func (s *store) cached(d digest.Digest, a, b int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	bf, ok := s.lru.Peek(d)
	if !ok {
		return false
	}
	for i := a; i < b; i++ {
		if bf.chunks[i] == nil {
			return false
		}
	}
	return true
}

func (s *store) writeFailedLocked(err error) {
	if !s.warned {
		s.warned = true
		s.log.Warn("cannot write to the cache directory; serving without caching", "dir", s.dir, "err", err)
	} else {
		s.log.Debug("cache write failed", "err", err)
	}
}

// punch frees bytes [off, off+n) of f, keeping its size.
func punch(f *os.File, off, n int64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}
