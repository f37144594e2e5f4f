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
	// verification that made the table; or the blob's stamp vouches for
	// its whole file (stamp.go).
	verified bool
}

// blobFile is the index record of one blob's file. Guarded by store.mu.
type blobFile struct {
	chunks map[int64]*entry
	bytes  int64    // sum of the cached chunks' sizes
	f      *os.File // open read-write while io > 0 or the blob is pinned
	df     *os.File // f's file opened for O_DIRECT writes (directwrite.go), once one was asked for; closed with f
	io     int      // reads and writes in progress on f
	dead   bool     // removed from the index; f (if open) is unlinked
	whole  bool     // every chunk matched the trusted table here, or a stamp says so: never punched, only removed
	// stamping: whole, and a stamp (stamp.go) is on disk or being
	// written for this file, or it needs none (under stampMin).
	stamping bool
	seen     stamp // the file as seal found it when this process made the blob whole
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
	recheck  bool // load ignores stamps (Options.Recheck)

	mu      sync.Mutex
	lru     *simplelru.LRU[digest.Digest, *blobFile] // no count limit: bytes are managed here
	usage   int64                                    // bytes of cached chunks, plus writes in progress
	pins    map[digest.Digest]int
	pending map[chunkKey]*pendingPut
	gens    map[digest.Digest]uint64 // bumped by purge: older fetches must not be stored (one entry per purged blob, kept)
	warned  bool
	// noDirect: the file system refused O_DIRECT, or the disk took
	// direct writes too slowly (directwrite.go).
	noDirect bool
	dio      directTiming
	// chained checks an unverified chunk written without a hash of its
	// own against the chain of hashes it joined (chain.go); known is
	// false once the chain is gone. nil: such chunks are never read.
	chained func(k chunkKey, data []byte) (good, known bool)
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
		if bf.df != nil {
			bf.df.Close()
			bf.df = nil
		}
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

// setPlain records sum as the hash of chunk k's bytes on disk, written
// without one, if e is still its entry; it reports whether it did.
func (s *store) setPlain(k chunkKey, e *entry, sum [32]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, cur, ok := s.lookupLocked(k)
	if !ok || cur != e || e.hasPlain || e.verified {
		return false
	}
	e.plain, e.hasPlain = sum, true
	return true
}

// read returns chunk k (n bytes) from disk if it checks out: against
// tab if the blob has a table, else against the sha256 this process
// recorded when it wrote the chunk, or, for a chunk written without one,
// against its blob's chain (chained). Bytes this process already checked
// are not hashed again. buf, if it has room for n bytes, is used for the
// data. A chunk that does not match is dropped. e is the chunk's entry,
// nil if it was replaced meanwhile.
func (s *store) read(k chunkKey, n int64, tab *table, buf []byte) (data []byte, e *entry, ok bool) {
	return s.readChecked(k, n, tab, buf, s.chained != nil, false)
}

// readOwn is read of an unverified chunk (no table) only if it was
// written with a hash of its own, for a chain (which holds its lock).
func (s *store) readOwn(k chunkKey, n int64) (data []byte, e *entry, ok bool) {
	return s.readChecked(k, n, nil, nil, false, false)
}

// rehash is read against tab that hashes the bytes even if this
// process, or a stamp, vouched for them already.
func (s *store) rehash(k chunkKey, n int64, tab *table) bool {
	_, _, ok := s.readChecked(k, n, tab, nil, false, true)
	return ok
}

func (s *store) readChecked(k chunkKey, n int64, tab *table, buf []byte, chained, force bool) (data []byte, e *entry, ok bool) {
	s.mu.Lock()
	bf, e, ok := s.lookupLocked(k)
	if !ok || e.size != n || (tab == nil && !e.hasPlain && !e.checked && !chained) {
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
	known := !force && ((tab != nil && snap.verified) || (tab == nil && snap.checked))
	if !known {
		good := false
		switch {
		case tab != nil:
			good = tab.check(k.i, buf)
		case snap.hasPlain:
			good = sha256.Sum256(buf) == snap.plain
		default:
			var known bool
			if good, known = s.chained(k, buf); !known {
				return nil, nil, false // nothing to check it against: fetched again
			}
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
