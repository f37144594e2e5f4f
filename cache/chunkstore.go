package cache

import (
	"crypto/sha256"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sys/unix"

	"github.com/hashfs/hashfs/internal/digest"
)

// The chunk store keeps each blob's cached chunks in one file,
// <Dir>/chunks/<hex[:2]>/<hex>/blob, chunk i at offset i×ChunkSize; a
// chunk that is not cached is a hole. A blob whose chunks are all there
// is therefore the blob itself, which the kernel can read directly (FUSE
// passthrough, see backing.go). The budget counts the bytes of cached
// chunks; eviction removes whole blobs, least recently used first, never
// one a Reader holds open.
//
// Every change to the index (a chunk added or dropped, a blob removed)
// happens under store.mu, and a chunk is written only while it has no
// index entry, so a reader that finds the same *entry before and after
// reading knows the bytes were not replaced in between. Bytes are
// written outside the lock through the blob's open file; a blob removed
// meanwhile is unlinked, so a late write lands in a file nobody can open.
// Removing a blob unlinks its file rather than punching holes in it:
// a file the kernel reads for a passthrough open keeps its bytes. Chunk
// data is not fsynced: a torn chunk is caught by the first-read check,
// and after a crash only blobs with a table survive Open.

const blobFileName = "blob"

type chunkKey struct {
	d digest.Digest
	i int64
}

// entry is the index record of one cached chunk. Fields are guarded by store.mu.
type entry struct {
	size  int64
	plain [32]byte // with hasPlain: the sha256 of the bytes this process fetched and wrote
	// hasPlain marks a chunk written before its blob verified (lazy):
	// plain lets this process check what it reads back.
	hasPlain bool
	checked  bool // this process hashed the bytes on disk and they are plain
	// verified: this process hashed these bytes (when writing or reading
	// them) and they are the blob's chunk, by its table or by the
	// verification that made the table.
	verified bool
}

// blobFile is the index record of one blob's file. Guarded by store.mu.
type blobFile struct {
	chunks map[int64]*entry
	bytes  int64    // sum of the cached chunks' sizes
	f      *os.File // open read-write while io > 0 or the blob is pinned
	io     int      // reads and writes in progress on f
	dead   bool     // removed from the index; f (if open) is unlinked
	whole  bool     // every chunk matched the trusted table here: never punched, only removed
}

// pendingPut is a write in progress, counted in usage until it ends or
// its blob is removed (gone), whichever comes first.
type pendingPut struct {
	n    int64
	gone bool
}

type store struct {
	dir, tmp string
	max, cs  int64
	log      *slog.Logger

	mu      sync.Mutex
	lru     *simplelru.LRU[digest.Digest, *blobFile] // no count limit: bytes are managed here
	usage   int64                                    // bytes of cached chunks, plus writes in progress
	pins    map[digest.Digest]int
	pending map[chunkKey]*pendingPut
	gens    map[digest.Digest]uint64 // bumped by purge: older fetches must not be stored (one entry per purged blob, kept)
	warned  bool
}

func newStore(dir, tmp string, max, cs int64, log *slog.Logger) *store {
	l, _ := simplelru.NewLRU[digest.Digest, *blobFile](math.MaxInt, nil)
	return &store{
		dir: dir, tmp: tmp, max: max, cs: cs, log: log, lru: l,
		pins:    map[digest.Digest]int{},
		pending: map[chunkKey]*pendingPut{},
		gens:    map[digest.Digest]uint64{},
	}
}

func (s *store) blobDir(d digest.Digest) string {
	h := d.Hex()
	return filepath.Join(s.dir, h[:2], h)
}

func (s *store) path(d digest.Digest) string { return filepath.Join(s.blobDir(d), blobFileName) }

func (s *store) pin(d digest.Digest) {
	s.mu.Lock()
	s.pins[d]++
	s.mu.Unlock()
}

// unpin drops a pin and marks d recently used: a reader served by
// passthrough never reaches the store while it reads.
func (s *store) unpin(d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pins[d]--; s.pins[d] <= 0 {
		delete(s.pins, d)
	}
	if bf, ok := s.lru.Get(d); ok {
		s.idleLocked(d, bf)
	}
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
	if bf, ok := s.lru.Peek(d); ok {
		return bf.bytes
	}
	return 0
}

// openLocked returns bf's file, opening it (creating it with create)
// if needed, and counts one I/O on it; the caller ends it with doneLocked.
func (s *store) openLocked(d digest.Digest, bf *blobFile, create bool) (*os.File, error) {
	if bf.f == nil {
		flag := os.O_RDWR
		if create {
			flag |= os.O_CREATE
		}
		f, err := os.OpenFile(s.path(d), flag, 0o600)
		if create && os.IsNotExist(err) {
			if err = os.MkdirAll(s.blobDir(d), 0o700); err == nil {
				f, err = os.OpenFile(s.path(d), flag, 0o600)
			}
		}
		if err != nil {
			return nil, err
		}
		bf.f = f
	}
	bf.io++
	return bf.f, nil
}

func (s *store) doneLocked(d digest.Digest, bf *blobFile) {
	bf.io--
	s.idleLocked(d, bf)
}

// idleLocked closes bf's file once nothing uses it and no reader holds
// the blob open (pinned blobs keep theirs for the next read).
func (s *store) idleLocked(d digest.Digest, bf *blobFile) {
	if bf.f != nil && bf.io == 0 && (bf.dead || s.pins[d] == 0) {
		bf.f.Close()
		bf.f = nil
	}
}

// lookupLocked returns the blob file and chunk entry of k, if cached.
func (s *store) lookupLocked(k chunkKey) (*blobFile, *entry, bool) {
	bf, ok := s.lru.Peek(k.d)
	if !ok {
		return nil, nil, false
	}
	e, ok := bf.chunks[k.i]
	return bf, e, ok
}

// current reports whether k's entry is still e in bf.
func (s *store) currentLocked(k chunkKey, bf *blobFile, e *entry) bool {
	cur, ce, ok := s.lookupLocked(k)
	return ok && cur == bf && ce == e
}

// read returns chunk k (n bytes) from disk if it checks out: against
// tab if the blob has a table, else against the sha256 this process
// recorded when it wrote the chunk. Bytes this process already checked
// are not hashed again. buf, if it has room for n bytes, is used for the
// data. A chunk that does not match is dropped. e is the chunk's entry,
// nil if it was replaced meanwhile.
func (s *store) read(k chunkKey, n int64, tab *table, buf []byte) (data []byte, e *entry, ok bool) {
	s.mu.Lock()
	bf, e, ok := s.lookupLocked(k)
	if !ok || e.size != n || (tab == nil && !e.hasPlain) {
		s.mu.Unlock()
		return nil, nil, false
	}
	snap := *e
	f, err := s.openLocked(k.d, bf, false)
	s.mu.Unlock()
	if err != nil {
		s.drop(k, bf, e, "unreadable", err)
		return nil, nil, false
	}
	if int64(cap(buf)) >= n {
		buf = buf[:n]
	} else {
		buf = make([]byte, n)
	}
	_, err = f.ReadAt(buf, k.i*s.cs)
	s.mu.Lock()
	s.doneLocked(k.d, bf)
	s.mu.Unlock()
	if err != nil {
		s.drop(k, bf, e, "unreadable", err)
		return nil, nil, false
	}
	known := (tab != nil && snap.verified) || (tab == nil && snap.checked)
	if !known {
		good := false
		if tab != nil {
			good = tab.check(k.i, buf)
		} else {
			good = sha256.Sum256(buf) == snap.plain
		}
		if !good {
			s.drop(k, bf, e, "does not match its checksum", nil)
			return nil, nil, false
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.currentLocked(k, bf, e) {
		// Replaced or removed while we read: only freshly hashed bytes count.
		return buf, nil, !known
	}
	if tab != nil {
		e.verified = true
	} else {
		e.checked = true
	}
	return buf, e, true
}

// readRange reads bytes [lo, lo+len(dst)) of chunk k (n bytes) into dst
// without hashing, if this process already checked the chunk (against
// tab, or with tab nil against what it fetched). On false, dst holds
// nothing of value.
func (s *store) readRange(k chunkKey, n int64, tab *table, lo int64, dst []byte) bool {
	s.mu.Lock()
	bf, e, ok := s.lookupLocked(k)
	if !ok || e.size != n || (tab != nil && !e.verified) || (tab == nil && !e.checked) {
		s.mu.Unlock()
		return false
	}
	s.lru.Get(k.d)
	f, err := s.openLocked(k.d, bf, false)
	s.mu.Unlock()
	if err != nil {
		s.drop(k, bf, e, "unreadable", err)
		return false
	}
	_, err = f.ReadAt(dst, k.i*s.cs+lo)
	s.mu.Lock()
	s.doneLocked(k.d, bf)
	s.mu.Unlock()
	if err != nil {
		s.drop(k, bf, e, "unreadable", err)
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.currentLocked(k, bf, e)
}

// drop removes chunk k if its index entry is still e.
func (s *store) drop(k chunkKey, bf *blobFile, e *entry, why string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.currentLocked(k, bf, e) {
		s.log.Warn("cached chunk "+why+", fetching it again", "digest", k.d.String(), "chunk", k.i, "err", err)
		s.removeChunkLocked(k, bf, e)
	}
}

// put stores chunks first, first+1, … of d (data holds them back to
// back) if the budget allows and d was not purged since gen. verified
// says the bytes matched the blob's table; plains, if not nil, are the
// chunks' sha256 (chunks of a blob not verified yet). A run is written
// with one write. It returns the entries of the chunks put, nil for
// those not on disk. A write failure is logged once and otherwise
// ignored.
func (s *store) put(d digest.Digest, first int64, data []byte, plains [][32]byte, gen uint64, verified bool) []*entry {
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
			out[j] = s.put(d, first+j, data[j*s.cs:min(n, (j+1)*s.cs)], p, gen, verified)[0]
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
	p := &pendingPut{n: n}
	for i := first; i < first+count; i++ {
		s.pending[chunkKey{d, i}] = p
	}
	s.usage += n
	s.mu.Unlock()

	off := first * s.cs
	if _, err = f.WriteAt(data, off); err != nil {
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

// chunkKeys lists every cached chunk, least recently used blob first,
// each blob's in file order (reading them so lets the kernel read ahead).
func (s *store) chunkKeys() []chunkKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []chunkKey
	for _, d := range s.lru.Keys() {
		bf, _ := s.lru.Peek(d)
		for _, i := range slices.Sorted(maps.Keys(bf.chunks)) {
			out = append(out, chunkKey{d, i})
		}
	}
	return out
}
