package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/hashfs/hashfs/internal/digest"
)

// A chunk table holds one 32-byte value per chunk of a blob, against
// which that chunk can be checked on its own (table.check). It is written
// only after the whole blob hashed to its digest, so it is trusted.
// Version 2 tables hold sha256 chaining values (hashstate.go), which the
// verification gets from the one pass that hashes the blob; version 1
// tables, written by earlier hashfs, hold each chunk's own sha256 and
// are still read.
//
// On disk (<Dir>/tables/<hex>) a table is
//
//	magic "hfstbl2\n" | size int64 LE | chunk size int64 LE | n × 32 bytes | sha256 of all before
//
// The trailing sum catches torn or rotted files. Tables are tiny (32
// bytes per chunk) and are not counted against Options.MaxSize; they are
// kept after their chunks are evicted so a blob never needs a second
// whole-blob verification.

const (
	tableMagic   = "hfstbl2\n"
	tableMagicV1 = "hfstbl1\n"
	tableHeader  = len(tableMagic) + 16
	tablesInMem  = 256
)

type table struct {
	size, chunkSize int64
	sums            [][32]byte
	v1              bool // sums are each chunk's sha256, not chaining values
}

// check reports whether data is chunk i of the blob.
func (t *table) check(i int64, data []byte) bool {
	if !t.spans(i, int64(len(data))) {
		return false
	}
	if t.v1 {
		return sha256.Sum256(data) == t.sums[i]
	}
	var start [32]byte
	if i > 0 {
		start = t.sums[i-1]
	}
	h := resume(start, i*t.chunkSize)
	h.Write(data)
	if i < int64(len(t.sums))-1 {
		return chainingValue(h) == t.sums[i]
	}
	var got [32]byte
	h.Sum(got[:0])
	return got == t.sums[i]
}

// chunkCount is the number of chunks of a blob of size bytes.
func chunkCount(size, cs int64) int64 { return (size + cs - 1) / cs }

// chunkSpan is the offset and length of chunk i of a blob of size bytes.
func chunkSpan(size, cs, i int64) (off, n int64) {
	off = i * cs
	return off, min(cs, size-off)
}

// spans reports whether the blob has a chunk i of n bytes.
func (t *table) spans(i, n int64) bool {
	if i < 0 || i >= int64(len(t.sums)) {
		return false
	}
	_, ln := chunkSpan(t.size, t.chunkSize, i)
	return ln == n
}

func (t *table) encode() []byte {
	var b bytes.Buffer
	if t.v1 {
		b.WriteString(tableMagicV1)
	} else {
		b.WriteString(tableMagic)
	}
	b.Write(binary.LittleEndian.AppendUint64(nil, uint64(t.size)))
	b.Write(binary.LittleEndian.AppendUint64(nil, uint64(t.chunkSize)))
	for _, s := range t.sums {
		b.Write(s[:])
	}
	sum := sha256.Sum256(b.Bytes())
	b.Write(sum[:])
	return b.Bytes()
}

// parseHeader checks the fixed part of a table file of fileLen bytes.
func parseHeader(h []byte, fileLen, cs int64) (size int64, err error) {
	if len(h) < tableHeader || (string(h[:len(tableMagic)]) != tableMagic && string(h[:len(tableMagic)]) != tableMagicV1) {
		return 0, errors.New("bad magic")
	}
	size = int64(binary.LittleEndian.Uint64(h[len(tableMagic):]))
	tcs := int64(binary.LittleEndian.Uint64(h[len(tableMagic)+8:]))
	if tcs != cs {
		return 0, fmt.Errorf("chunk size %d, want %d", tcs, cs)
	}
	if size < 0 || size > math.MaxInt64/2 {
		return 0, fmt.Errorf("bad size %d", size)
	}
	if want := int64(tableHeader) + 32*chunkCount(size, cs) + 32; fileLen != want {
		return 0, fmt.Errorf("file is %d bytes, want %d", fileLen, want)
	}
	return size, nil
}

func decodeTable(b []byte, cs int64) (*table, error) {
	size, err := parseHeader(b, int64(len(b)), cs)
	if err != nil {
		return nil, err
	}
	body, trailer := b[:len(b)-32], b[len(b)-32:]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], trailer) {
		return nil, errors.New("checksum mismatch")
	}
	t := &table{size: size, chunkSize: cs, sums: make([][32]byte, chunkCount(size, cs)), v1: string(b[:len(tableMagicV1)]) == tableMagicV1}
	for i := range t.sums {
		copy(t.sums[i][:], body[tableHeader+32*i:])
	}
	return t, nil
}

// tables is the trusted chunk tables: on disk, with the most recently
// used ones in memory.
type tables struct {
	dir, tmp string
	cs       int64
	log      *slog.Logger

	mu      sync.Mutex
	onDisk  map[digest.Digest]struct{}
	memOnly map[digest.Digest]*table // committed, but the disk write failed
	mem     *simplelru.LRU[digest.Digest, *table]
	warned  bool
}

func newTables(dir, tmp string, cs int64, log *slog.Logger) *tables {
	mem, _ := simplelru.NewLRU[digest.Digest, *table](tablesInMem, nil)
	return &tables{
		dir: dir, tmp: tmp, cs: cs, log: log,
		onDisk:  map[digest.Digest]struct{}{},
		memOnly: map[digest.Digest]*table{},
		mem:     mem,
	}
}

func (t *tables) path(d digest.Digest) string { return filepath.Join(t.dir, d.Hex()) }

// scan indexes the table files at Open and returns each blob's size.
// Files that are not well-formed tables for this chunk size are removed.
func (t *tables) scan() (map[digest.Digest]int64, error) {
	ents, err := os.ReadDir(t.dir)
	if err != nil {
		return nil, err
	}
	sizes := map[digest.Digest]int64{}
	for _, e := range ents {
		p := filepath.Join(t.dir, e.Name())
		d, err := digest.ParseHex(e.Name())
		if err != nil || !e.Type().IsRegular() {
			os.RemoveAll(p)
			continue
		}
		size, err := readTableHeader(p, t.cs)
		if err != nil {
			t.log.Info("removing unusable chunk table", "digest", d.String(), "err", err)
			os.Remove(p)
			continue
		}
		sizes[d] = size
		t.onDisk[d] = struct{}{}
	}
	return sizes, nil
}

func readTableHeader(p string, cs int64) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	h := make([]byte, tableHeader)
	if _, err := io.ReadFull(f, h); err != nil {
		return 0, err
	}
	return parseHeader(h, fi.Size(), cs)
}

// get returns d's table, or nil. corrupt reports that a table file was
// found unusable and removed: the caller must drop d's chunks.
func (t *tables) get(d digest.Digest) (tab *table, corrupt bool) {
	t.mu.Lock()
	if tab := t.memOnly[d]; tab != nil {
		t.mu.Unlock()
		return tab, false
	}
	if tab, ok := t.mem.Get(d); ok {
		t.mu.Unlock()
		return tab, false
	}
	_, ok := t.onDisk[d]
	t.mu.Unlock()
	if !ok {
		return nil, false
	}
	b, err := os.ReadFile(t.path(d))
	if err == nil {
		tab, err = decodeTable(b, t.cs)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if _, still := t.onDisk[d]; !still {
			return nil, false
		}
		t.log.Warn("chunk table unreadable, blob will be verified again", "digest", d.String(), "err", err)
		delete(t.onDisk, d)
		os.Remove(t.path(d))
		return nil, true
	}
	t.mem.Add(d, tab)
	return tab, false
}

// put commits a trusted table: temp file, fsync, rename, fsync dir.
// If the disk refuses, the table is kept in memory only.
func (t *tables) put(d digest.Digest, tab *table) {
	err := writeFileAtomic(t.tmp, t.path(d), tab.encode(), true)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mem.Add(d, tab)
	if err != nil {
		t.memOnly[d] = tab
		if !t.warned {
			t.warned = true
			t.log.Warn("cannot write chunk table, keeping it in memory", "digest", d.String(), "err", err)
		}
		return
	}
	t.onDisk[d] = struct{}{}
	delete(t.memOnly, d)
}

// writeFileAtomic writes b to a temp file in tmpDir (mode 0600) and
// renames it to dst, creating dst's directory. With sync, the file and
// the directory are fsynced so the rename survives a crash.
func writeFileAtomic(tmpDir, dst string, b []byte, sync bool) error {
	tmp, err := writeTemp(tmpDir, b, sync)
	if err != nil {
		return err
	}
	if err := renameInto(tmp, dst); err != nil {
		return err
	}
	if sync {
		if dir, err := os.Open(filepath.Dir(dst)); err == nil {
			dir.Sync()
			dir.Close()
		}
	}
	return nil
}

// writeTemp writes b to a new 0600 file in tmpDir and returns its path.
func writeTemp(tmpDir string, b []byte, sync bool) (string, error) {
	f, err := os.CreateTemp(tmpDir, "w-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(b)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// renameInto moves tmp to dst, creating dst's directory (0700) if
// needed. On failure tmp is removed.
func renameInto(tmp, dst string) error {
	err := os.Rename(tmp, dst)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(dst), 0o700); err == nil {
			err = os.Rename(tmp, dst)
		}
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
