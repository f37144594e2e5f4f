package cache

import (
	"crypto/sha256"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/hashfs/hashfs/internal/digest"
)

// The chunk store keeps chunk files at <Dir>/chunks/<hex[:2]>/<hex>/<index>
// under a hard byte budget, evicting least recently used chunks of blobs
// no Reader holds open.
//
// Every change to a chunk file (rename into place, removal) happens under
// store.mu together with the change to its index entry, so a reader that
// finds the same *entry before and after reading a file knows the file
// was not replaced in between. Writing a chunk's bytes happens outside
// the lock, into <Dir>/tmp. Chunk files are not fsynced: a torn file is
// caught by the first-read check, and after a crash only chunks of blobs
// with a table survive Open.

type chunkKey struct {
	d digest.Digest
	i int64
}

// entry is the index record of one chunk file. Fields are guarded by store.mu.
type entry struct {
	size    int64
	sum     [32]byte
	hasSum  bool // sum is the hash of the bytes this process wrote, or of the file as checked
	checked bool // this process hashed the file and it matched sum
}

type pendingPut struct{ n int64 }

type store struct {
	dir, tmp string
	max      int64
	log      *slog.Logger

	mu      sync.Mutex
	lru     *simplelru.LRU[chunkKey, *entry] // no count limit: bytes are managed here
	usage   int64                            // bytes of chunk files, plus writes in progress
	perBlob map[digest.Digest]int64
	pins    map[digest.Digest]int
	pending map[chunkKey]*pendingPut
	gens    map[digest.Digest]uint64 // bumped by purge: older fetches must not be stored (one entry per purged blob, kept)
	warned  bool
}

func newStore(dir, tmp string, max int64, log *slog.Logger) *store {
	l, _ := simplelru.NewLRU[chunkKey, *entry](math.MaxInt, nil)
	return &store{
		dir: dir, tmp: tmp, max: max, log: log, lru: l,
		perBlob: map[digest.Digest]int64{},
		pins:    map[digest.Digest]int{},
		pending: map[chunkKey]*pendingPut{},
		gens:    map[digest.Digest]uint64{},
	}
}

func (s *store) blobDir(d digest.Digest) string {
	h := d.Hex()
	return filepath.Join(s.dir, h[:2], h)
}

func (s *store) path(k chunkKey) string {
	return filepath.Join(s.blobDir(k.d), strconv.FormatInt(k.i, 10))
}

func (s *store) pin(d digest.Digest) {
	s.mu.Lock()
	s.pins[d]++
	s.mu.Unlock()
}

func (s *store) unpin(d digest.Digest) {
	s.mu.Lock()
	if s.pins[d]--; s.pins[d] <= 0 {
		delete(s.pins, d)
	}
	s.mu.Unlock()
}

func (s *store) gen(d digest.Digest) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gens[d]
}

func (s *store) usageBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usage
}

func (s *store) blobBytes(d digest.Digest) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perBlob[d]
}

// trust reports the sum a chunk's bytes must have: the table's (want) if
// there is one, else the hash this process recorded when it wrote them.
func trust(e *entry, want *[32]byte) ([32]byte, bool) {
	if want != nil {
		return *want, true
	}
	return e.sum, e.hasSum
}

// read returns chunk k (n bytes) from disk if its bytes hash to want
// (or, with want nil, to the sum recorded when this process wrote it).
// A file that does not match is deleted.
func (s *store) read(k chunkKey, n int64, want *[32]byte) ([]byte, [32]byte, bool) {
	s.mu.Lock()
	e, ok := s.lru.Get(k)
	var snap entry
	if ok {
		snap = *e
	}
	s.mu.Unlock()
	if !ok || snap.size != n {
		return nil, [32]byte{}, false
	}
	ref, ok := trust(&snap, want)
	if !ok {
		return nil, [32]byte{}, false
	}
	data, err := os.ReadFile(s.path(k))
	if err != nil || int64(len(data)) != n {
		s.drop(k, e, "unreadable", err)
		return nil, [32]byte{}, false
	}
	sum := snap.sum
	if !snap.checked {
		sum = sha256.Sum256(data)
	}
	if sum != ref {
		s.drop(k, e, "does not match its checksum", nil)
		return nil, [32]byte{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, _ := s.lru.Peek(k); cur != e {
		// Replaced or removed while we read: only freshly hashed bytes count.
		return data, sum, !snap.checked
	}
	e.checked, e.hasSum, e.sum = true, true, sum
	return data, sum, true
}

// readRange reads bytes [lo, lo+len(dst)) of chunk k (n bytes) into dst
// without hashing, if this process already checked the file against the
// trusted sum. On false, dst holds nothing of value.
func (s *store) readRange(k chunkKey, n int64, want *[32]byte, lo int64, dst []byte) bool {
	s.mu.Lock()
	e, ok := s.lru.Get(k)
	var snap entry
	if ok {
		snap = *e
	}
	s.mu.Unlock()
	if !ok || snap.size != n || !snap.checked {
		return false
	}
	if ref, ok := trust(&snap, want); !ok || ref != snap.sum {
		return false
	}
	f, err := os.Open(s.path(k))
	if err != nil {
		s.drop(k, e, "unreadable", err)
		return false
	}
	defer f.Close()
	if _, err := f.ReadAt(dst, lo); err != nil && err != io.EOF {
		s.drop(k, e, "unreadable", err)
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, _ := s.lru.Peek(k)
	return cur == e
}

// drop removes chunk k if its index entry is still e.
func (s *store) drop(k chunkKey, e *entry, why string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.lru.Peek(k); ok && cur == e {
		s.log.Warn("cached chunk "+why+", fetching it again", "digest", k.d.String(), "chunk", k.i, "err", err)
		s.removeLocked(k, e)
	}
}

// put stores chunk k (sum is the hash of data) if the budget allows and
// d was not purged since gen. It reports whether the chunk is on disk.
// A write failure is logged once and otherwise ignored.
func (s *store) put(k chunkKey, data []byte, sum [32]byte, gen uint64) bool {
	n := int64(len(data))
	s.mu.Lock()
	if s.gens[k.d] != gen {
		s.mu.Unlock()
		return false
	}
	if e, ok := s.lru.Peek(k); ok {
		if e.size == n && e.hasSum && e.sum == sum {
			s.lru.Get(k)
			s.mu.Unlock()
			return true
		}
		s.removeLocked(k, e)
	}
	if _, busy := s.pending[k]; busy || !s.makeRoomLocked(n) {
		s.mu.Unlock()
		return false
	}
	p := &pendingPut{n: n}
	s.pending[k] = p
	s.usage += n
	s.mu.Unlock()

	tmp, err := writeTemp(s.tmp, data, false)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.usage -= n
	if s.pending[k] != p { // purged while we wrote
		if err == nil {
			os.Remove(tmp)
		}
		return false
	}
	delete(s.pending, k)
	if err == nil {
		err = renameInto(tmp, s.path(k))
	}
	if err != nil {
		if !s.warned {
			s.warned = true
			s.log.Warn("cannot write to the cache directory; serving without caching", "dir", s.dir, "err", err)
		} else {
			s.log.Debug("cache write failed", "err", err)
		}
		return false
	}
	s.addLocked(k, &entry{size: n, sum: sum, hasSum: true})
	return true
}

func (s *store) addLocked(k chunkKey, e *entry) {
	s.lru.Add(k, e)
	s.usage += e.size
	s.perBlob[k.d] += e.size
}

func (s *store) removeLocked(k chunkKey, e *entry) {
	s.lru.Remove(k)
	s.usage -= e.size
	if s.perBlob[k.d] -= e.size; s.perBlob[k.d] <= 0 {
		delete(s.perBlob, k.d)
	}
	os.Remove(s.path(k))
}

// makeRoomLocked evicts least recently used chunks of unpinned blobs
// until n more bytes fit. It reports whether they fit.
func (s *store) makeRoomLocked(n int64) bool {
	if n > s.max {
		return false
	}
	for s.usage+n > s.max {
		k, e, ok := s.lru.GetOldest()
		if !ok || s.pins[k.d] > 0 {
			break
		}
		s.removeLocked(k, e)
	}
	if s.usage+n <= s.max {
		return true
	}
	// The oldest chunks are pinned: walk past them, oldest first.
	for _, k := range s.lru.Keys() {
		if s.usage+n <= s.max {
			break
		}
		if s.pins[k.d] > 0 {
			continue
		}
		if e, ok := s.lru.Peek(k); ok {
			s.removeLocked(k, e)
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
	for k := range s.pending {
		if k.d == d {
			delete(s.pending, k)
		}
	}
	if s.perBlob[d] > 0 {
		for _, k := range s.lru.Keys() {
			if k.d != d {
				continue
			}
			if e, ok := s.lru.Peek(k); ok {
				s.removeLocked(k, e)
			}
		}
	}
	os.RemoveAll(s.blobDir(d))
}
