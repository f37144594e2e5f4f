package layerindex

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Store keeps layer indexes in a directory, one file per layer named by
// the hex of its digest. Index files are small next to their layers
// (mostly the 32 KiB windows: about 1.6% of the uncompressed size at the
// default span) and outlive the layer's chunks in the cache (reading one
// file then fetches about a span), so they have a budget of their own:
// past it, the least recently used are removed when an index is stored.
// A file is
//
//	"HFSLIDX1" | toc offset (u64) | toc length (u64) | sha256(toc) | windows... | toc
//
// where toc is the gob-encoded Index and each window is checked against
// its own sha256 in the toc when read. A file that fails a check is
// deleted and the layer indexed again. Files are written to a temporary
// name and renamed; a cache directory is owned by one daemon (its lock),
// so the store takes no lock of its own.
type Store struct {
	dir string
	max int64 // bytes of index files kept; 0: no bound
}

const (
	storeMagic  = "HFSLIDX1"
	storeHeader = 8 + 8 + 8 + 32
	tmpPrefix   = ".tmp-"
)

// OpenStore opens (creating if needed) the store in dir, keeping at most
// max bytes of index files (0: no bound), and removes temporary files a
// previous run left.
func OpenStore(dir string, max int64) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("layer index store: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("layer index store: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("layer index store: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return &Store{dir: dir, max: max}, nil
}

// trim removes the least recently used index files (by modification
// time: load touches a file) until the store is within its budget,
// keeping keep. A layer whose file goes while it is in use reads the
// unlinked file on; after a restart it is indexed again.
func (s *Store) trim(keep string) {
	if s.max <= 0 {
		return
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	type file struct {
		path string
		size int64
		used time.Time
	}
	var files []file
	var total int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		files = append(files, file{filepath.Join(s.dir, e.Name()), fi.Size(), fi.ModTime()})
		total += fi.Size()
	}
	slices.SortFunc(files, func(a, b file) int { return a.used.Compare(b.used) })
	for _, f := range files {
		if total <= s.max {
			return
		}
		if f.path != keep && os.Remove(f.path) == nil {
			total -= f.size
		}
	}
}

// path is where the index of d is kept: <hex> for one built by a pass
// over the layer, <hex>.toc for one built from the layer's TOC (kept
// side by side: rootfs/ and the diff_id tar need the first).
func (s *Store) path(d digest.Digest, toc bool) string {
	if toc {
		return filepath.Join(s.dir, d.Hex()+".toc")
	}
	return filepath.Join(s.dir, d.Hex())
}

// create starts a new index file under a temporary name.
func (s *Store) create() (*storeWriter, error) {
	f, err := os.CreateTemp(s.dir, tmpPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("layer index store: %v: %w", err, hfserr.ErrNoSpace)
	}
	w := &storeWriter{s: s, f: f, off: storeHeader}
	w.wins = &fileWindows{f: f, base: storeHeader}
	return w, nil
}

// storeWriter receives the windows of a first pass, then the index. If
// the disk refuses a window, that window and the later ones are kept in
// memory instead and the index is not stored (like the cache, a full
// disk never fails a reader).
type storeWriter struct {
	s      *Store
	f      *os.File
	off    int64
	refs   []WindowRef
	wins   *fileWindows
	failed error // a write failed: windows from here on are in memory
}

func (w *storeWriter) put(win []byte) (int, error) {
	ref := WindowRef{Off: w.off - storeHeader, Len: len(win), Sum: sha256.Sum256(win)}
	if w.failed == nil {
		if _, err := w.f.WriteAt(win, w.off); err != nil {
			w.failed = fmt.Errorf("layer index store: %v: %w", err, hfserr.ErrNoSpace)
		} else {
			w.off += int64(len(win))
		}
	}
	w.refs = append(w.refs, ref)
	i := len(w.refs) - 1
	if w.failed != nil {
		w.wins.keep(i, win)
	}
	w.wins.setRefs(w.refs)
	return i, nil
}

// commit writes ix after the windows and renames the file into place.
// The windows stay readable through w.wins, now from the final file.
func (w *storeWriter) commit(ix *Index) error {
	if w.failed != nil {
		return w.failed // windows stay readable from the temporary file and memory
	}
	ix.Windows = w.refs
	var toc bytes.Buffer
	if err := gob.NewEncoder(&toc).Encode(ix); err != nil {
		return fmt.Errorf("layer index %s: %w", ix.Digest, err)
	}
	var hdr [storeHeader]byte
	copy(hdr[:], storeMagic)
	binary.LittleEndian.PutUint64(hdr[8:], uint64(w.off))
	binary.LittleEndian.PutUint64(hdr[16:], uint64(toc.Len()))
	sum := sha256.Sum256(toc.Bytes())
	copy(hdr[24:], sum[:])
	_, err := w.f.WriteAt(toc.Bytes(), w.off)
	if err == nil {
		_, err = w.f.WriteAt(hdr[:], 0)
	}
	if err == nil {
		err = w.f.Sync()
	}
	final := w.s.path(ix.Digest, ix.TOC.Kind != NoTOC)
	if err == nil {
		err = os.Rename(w.f.Name(), final)
	}
	if err != nil {
		// The windows stay readable from the open temporary file (removed
		// when the store is next opened); the index lives in memory only.
		w.failed = fmt.Errorf("layer index %s: %v: %w", ix.Digest, err, hfserr.ErrNoSpace)
		return w.failed
	}
	w.wins.reopen(final)
	w.s.trim(final)
	return nil
}

// abort removes the temporary file. Windows read afterwards fail.
func (w *storeWriter) abort() {
	os.Remove(w.f.Name())
	w.wins.reopen("")
}

// remove deletes the stored index of d (both kinds).
func (s *Store) remove(d digest.Digest) {
	os.Remove(s.path(d, false))
	os.Remove(s.path(d, true))
}

// load reads the stored index of d, which must be size bytes (with toc,
// the one built from the TOC ref describes). A missing file is (nil,
// nil, nil); a corrupt or stale one is removed and also reported as
// missing.
func (s *Store) load(d digest.Digest, size int64, toc *TOCRef) (*Index, *fileWindows, error) {
	p := s.path(d, toc != nil)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("layer index %s: %w", d, err)
	}
	defer f.Close()
	ix, why := readIndex(f)
	if why == "" && (ix.Digest != d || ix.Size != size) {
		why = "it belongs to another layer"
	}
	if why == "" && toc != nil && ix.TOC != *toc {
		// Another manifest may name another TOC for the same layer: keep
		// the file, which a TOC that checks out replaces.
		return nil, nil, nil
	}
	if why == "" && toc == nil && ix.TOC.Kind != NoTOC {
		why = "it was built from a table of contents"
	}
	if why != "" {
		os.Remove(p)
		return nil, nil, fmt.Errorf("layer index %s: %s: %w", d, why, hfserr.ErrIntegrity)
	}
	now := time.Now()
	os.Chtimes(p, now, now) // recently used: trim keeps it longest
	fw := &fileWindows{path: p, base: storeHeader}
	fw.setRefs(ix.Windows)
	return ix, fw, nil
}

// readIndex decodes an index file; why says what is wrong with it.
func readIndex(f *os.File) (*Index, string) {
	var hdr [storeHeader]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || string(hdr[:8]) != storeMagic {
		return nil, "not an index file of this version"
	}
	off := int64(binary.LittleEndian.Uint64(hdr[8:]))
	n := int64(binary.LittleEndian.Uint64(hdr[16:]))
	fi, err := f.Stat()
	if err != nil || off < storeHeader || n < 0 || off+n != fi.Size() {
		return nil, "truncated"
	}
	toc := make([]byte, n)
	if _, err := f.ReadAt(toc, off); err != nil {
		return nil, "truncated"
	}
	if sha256.Sum256(toc) != [32]byte(hdr[24:]) {
		return nil, "checksum mismatch"
	}
	var ix Index
	if err := gob.NewDecoder(bufio.NewReader(bytes.NewReader(toc))).Decode(&ix); err != nil {
		return nil, "undecodable: " + err.Error()
	}
	// Version 1 lacked the TOC fields only: its full-pass indexes read
	// the same in this version (gob leaves new fields zero).
	if ix.Version < 1 || ix.Version > indexVersion {
		return nil, "another version"
	}
	if err := ix.check(); err != nil {
		return nil, err.Error()
	}
	return &ix, ""
}

// check makes sure an index read back is usable: checkpoints in order and
// in range, windows referenced exist, entries inside the stream.
func (ix *Index) check() error {
	if ix.TOC.Kind != NoTOC {
		return ix.checkTOC()
	}
	if len(ix.Checkpoints) == 0 || ix.Checkpoints[0].Out != 0 {
		return errors.New("no checkpoint at 0")
	}
	for i, cp := range ix.Checkpoints {
		switch {
		case i > 0 && cp.Out <= ix.Checkpoints[i-1].Out, cp.Out > ix.TarSize,
			cp.In < 0 || cp.In > ix.Size*8,
			cp.Kind == BlockStart && (cp.Window < 0 || cp.Window >= len(ix.Windows)):
			return fmt.Errorf("checkpoint %d out of range", i)
		}
	}
	for i, e := range ix.Entries {
		if e.Offset < 0 || e.Size < 0 || !e.Sparse && e.Offset+e.Size > ix.TarSize && e.IsRegular() {
			return fmt.Errorf("entry %d out of range", i)
		}
	}
	return nil
}

// windows gives the window of a checkpoint.
type windows interface {
	get(i int) ([]byte, error)
}

// memWindows keeps windows in memory (no store).
type memWindows struct {
	mu sync.Mutex
	w  [][]byte
}

func (m *memWindows) put(win []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.w = append(m.w, bytes.Clone(win))
	return len(m.w) - 1, nil
}

func (m *memWindows) get(i int) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i < 0 || i >= len(m.w) {
		return nil, fmt.Errorf("window %d: %w", i, hfserr.ErrInvalid)
	}
	return m.w[i], nil
}

// fileWindows reads windows from an index file: the open temporary file
// while the index is being written or waits for its layer to verify, the
// final file by name after that.
type fileWindows struct {
	mu   sync.RWMutex
	f    *os.File // the temporary file, or nil
	path string   // the final file, when f is nil
	base int64
	refs []WindowRef
	mem  map[int][]byte // windows the disk refused
}

// keep holds window i in memory.
func (fw *fileWindows) keep(i int, win []byte) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.mem == nil {
		fw.mem = map[int][]byte{}
	}
	fw.mem[i] = bytes.Clone(win)
}

func (fw *fileWindows) setRefs(refs []WindowRef) {
	fw.mu.Lock()
	fw.refs = refs
	fw.mu.Unlock()
}

// reopen switches to the final file (or, with "", to nothing).
func (fw *fileWindows) reopen(path string) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.f != nil {
		fw.f.Close()
		fw.f = nil
	}
	fw.path = path
}

func (fw *fileWindows) get(i int) ([]byte, error) {
	fw.mu.RLock()
	defer fw.mu.RUnlock()
	if i < 0 || i >= len(fw.refs) {
		return nil, fmt.Errorf("window %d: %w", i, hfserr.ErrInvalid)
	}
	if b, ok := fw.mem[i]; ok {
		return b, nil
	}
	ref := fw.refs[i]
	f := fw.f
	if f == nil {
		if fw.path == "" {
			return nil, fmt.Errorf("window %d: index file gone: %w", i, hfserr.ErrUnavailable)
		}
		var err error
		if f, err = os.Open(fw.path); err != nil {
			return nil, fmt.Errorf("window %d: %v: %w", i, err, hfserr.ErrUnavailable)
		}
		defer f.Close()
	}
	b := make([]byte, ref.Len)
	if _, err := f.ReadAt(b, fw.base+ref.Off); err != nil {
		return nil, fmt.Errorf("window %d: %v: %w", i, err, hfserr.ErrIntegrity)
	}
	if sha256.Sum256(b) != ref.Sum {
		return nil, fmt.Errorf("window %d of %s does not match its checksum: %w", i, fw.path, hfserr.ErrIntegrity)
	}
	return b, nil
}
