package layerindex

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// gzLayer is a gzip layer with enough data for several block checkpoints.
func gzLayer(t *testing.T) ([]byte, []file) {
	t.Helper()
	files := sampleFiles()
	return gz(t, makeTar(t, files), gzip.DefaultCompression, 0), files
}

func openIndexer(t *testing.T, dir string, src Source) *Indexer {
	t.Helper()
	st, err := OpenStore(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	return New(src, Options{Store: st, Span: 64 << 10})
}

func TestStoredIndexSurvivesARestart(t *testing.T) {
	blob, files := gzLayer(t)
	dir := t.TempDir()
	src, ds := newSource(true, blob)
	l1, err := openIndexer(t, dir, src).Layer(context.Background(), ds[0], int64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ds[0].Hex())); err != nil {
		t.Fatalf("index not stored: %v", err)
	}
	mb := src.blobs[ds[0]]
	mb.read.Store(0)
	// A new Indexer (a restart) loads the index without reading the layer.
	l2, err := openIndexer(t, dir, src).Layer(context.Background(), ds[0], int64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	if n := mb.read.Load(); n != 0 {
		t.Fatalf("loading a stored index read %d bytes of the layer", n)
	}
	if l2.DiffID != l1.DiffID || len(l2.Checkpoints) != len(l1.Checkpoints) || len(l2.Entries) != len(l1.Entries) {
		t.Fatal("stored index differs")
	}
	last := files[len(files)-1]
	got := readAll(t, OpenFile(l2.NewStream(mb), l2.Root.Walk(last.name).Entry))
	if !bytes.Equal(got, last.body) {
		t.Fatal("file read through a stored index differs")
	}
}

func TestCorruptStoreIsRebuilt(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(b []byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
		{"toc flipped", func(b []byte) []byte { b[len(b)-10] ^= 1; return b }},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }},
		{"empty", func(b []byte) []byte { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob, _ := gzLayer(t)
			dir := t.TempDir()
			src, ds := newSource(true, blob)
			if _, err := openIndexer(t, dir, src).Layer(context.Background(), ds[0], int64(len(blob))); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, ds[0].Hex())
			b, _ := os.ReadFile(p)
			os.WriteFile(p, tt.corrupt(b), 0o600)
			mb := src.blobs[ds[0]]
			mb.read.Store(0)
			if _, err := openIndexer(t, dir, src).Layer(context.Background(), ds[0], int64(len(blob))); err != nil {
				t.Fatal(err)
			}
			if mb.read.Load() != int64(len(blob)) {
				t.Fatalf("corrupt index not rebuilt (read %d bytes)", mb.read.Load())
			}
		})
	}
}

func TestCorruptWindowFailsTheRead(t *testing.T) {
	blob, files := gzLayer(t)
	dir := t.TempDir()
	src, ds := newSource(true, blob)
	if _, err := openIndexer(t, dir, src).Layer(context.Background(), ds[0], int64(len(blob))); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, ds[0].Hex())
	b, _ := os.ReadFile(p)
	for i := storeHeader; i < storeHeader+64<<10 && i < len(b); i++ {
		b[i] ^= 0xff // every window early in the file
	}
	os.WriteFile(p, b, 0o600)
	x := openIndexer(t, dir, src)
	l, err := x.Layer(context.Background(), ds[0], int64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	var failed bool
	for _, f := range files {
		n := l.Root.Walk(CleanName(f.name))
		if n == nil || n.IsDir() || !n.Entry.IsRegular() || n.Entry.Size == 0 {
			continue
		}
		if _, err := OpenFile(l.NewStream(src.blobs[ds[0]]), n.Entry).ReadAt(context.Background(), make([]byte, n.Entry.Size), 0); err != nil {
			if !errors.Is(err, hfserr.ErrIntegrity) {
				t.Fatalf("%s: %v, want an integrity error", f.name, err)
			}
			failed = true
		}
	}
	if !failed {
		t.Fatal("no read used a corrupt window")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("corrupt index file kept: %v", err)
	}
}

func TestLazyIndexIsStoredOnceVerified(t *testing.T) {
	blob, _ := gzLayer(t)
	dir := t.TempDir()
	src, ds := newSource(false, blob)
	x := openIndexer(t, dir, src)
	p := filepath.Join(dir, ds[0].Hex())
	l, err := x.Layer(context.Background(), ds[0], int64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("index of an unverified layer stored")
	}
	// Reads work meanwhile, windows coming from the temporary file.
	s := l.NewStream(src.blobs[ds[0]])
	if _, err := s.ReadAt(context.Background(), make([]byte, l.TarSize), 0); err != nil {
		t.Fatal(err)
	}
	src.set(true, false)
	// The next read (or lookup) after the layer verified stores it.
	if _, err := s.ReadAt(context.Background(), make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("index not stored once verified: %v", err)
	}
	if _, err := l.NewStream(src.blobs[ds[0]]).ReadAt(context.Background(), make([]byte, l.TarSize), 0); err != nil {
		t.Fatalf("reading after the index moved: %v", err)
	}
}

func TestQuarantinedLayerIsForgotten(t *testing.T) {
	blob, _ := gzLayer(t)
	dir := t.TempDir()
	src, ds := newSource(false, blob)
	x := openIndexer(t, dir, src)
	l, err := x.Layer(context.Background(), ds[0], int64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	src.set(false, true)
	if _, err := l.NewStream(src.blobs[ds[0]]).ReadAt(context.Background(), make([]byte, 10), 0); !errors.Is(err, hfserr.ErrIntegrity) {
		t.Fatalf("read of a quarantined layer: %v", err)
	}
	src.set(true, false) // verified after a refetch from a good source
	if _, err := l.NewStream(src.blobs[ds[0]]).ReadAt(context.Background(), make([]byte, 10), 0); !errors.Is(err, hfserr.ErrIntegrity) {
		t.Fatalf("the old Layer still reads: %v", err)
	}
	mb := src.blobs[ds[0]]
	mb.read.Store(0)
	if _, err := x.Layer(context.Background(), ds[0], int64(len(blob))); err != nil {
		t.Fatal(err)
	}
	if mb.read.Load() == 0 {
		t.Fatal("a layer indexed from bytes that failed verification was not indexed again")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("%d files in the store, want the one index", len(ents))
	}
}

func TestFullDiskKeepsWindowsInMemory(t *testing.T) {
	st, err := OpenStore(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := st.create()
	if err != nil {
		t.Fatal(err)
	}
	first := bytes.Repeat([]byte{1}, 100)
	if _, err := w.put(first); err != nil {
		t.Fatal(err)
	}
	w.f.Close() // every later write fails, as on a full disk
	second := bytes.Repeat([]byte{2}, 100)
	i, err := w.put(second)
	if err != nil || i != 1 {
		t.Fatalf("put on a failing disk: %d, %v", i, err)
	}
	if got, err := w.wins.get(1); err != nil || !bytes.Equal(got, second) {
		t.Fatalf("window kept in memory: %v", err)
	}
	if err := w.commit(&Index{}); !errors.Is(err, hfserr.ErrNoSpace) {
		t.Fatalf("commit after a failed write: %v", err)
	}
	if got, err := w.wins.get(1); err != nil || !bytes.Equal(got, second) {
		t.Fatalf("window after the failed commit: %v", err)
	}
}

// The store keeps its files within its budget, removing the least
// recently used (a load counts as a use) when a new index is stored.
func TestStoreBudgetRemovesLeastRecentlyUsed(t *testing.T) {
	var layers [][]byte
	for i := range 3 {
		files := []file{reg(fmt.Sprintf("f%d", i), text(uint64(40+i), 300<<10))}
		layers = append(layers, gz(t, makeTar(t, files), gzip.DefaultCompression, 0))
	}
	src, ds := newSource(true, layers...)
	dir := t.TempDir()
	index := func(st *Store, i int) {
		t.Helper()
		if _, err := New(src, Options{Store: st, Span: 64 << 10}).Layer(context.Background(), ds[i], int64(len(layers[i]))); err != nil {
			t.Fatal(err)
		}
	}
	unbounded, err := OpenStore(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	index(unbounded, 0)
	fi, err := os.Stat(filepath.Join(dir, ds[0].Hex()))
	if err != nil {
		t.Fatal(err)
	}
	// Room for two index files of this size, not three.
	st, err := OpenStore(dir, 2*fi.Size()+fi.Size()/2)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, ds[0].Hex()), old, old)
	index(st, 1)
	os.Chtimes(filepath.Join(dir, ds[1].Hex()), old.Add(time.Minute), old.Add(time.Minute))
	// A restart loads layer 0 (a use), then layer 2 is indexed: layer 1,
	// now the least recently used, goes.
	if _, _, err := st.load(ds[0], int64(len(layers[0])), nil); err != nil {
		t.Fatal(err)
	}
	index(st, 2)
	for i, want := range []bool{true, false, true} {
		_, err := os.Stat(filepath.Join(dir, ds[i].Hex()))
		if got := err == nil; got != want {
			t.Errorf("index of layer %d kept = %v, want %v", i, got, want)
		}
	}
}
