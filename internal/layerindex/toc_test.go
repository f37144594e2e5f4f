package layerindex

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/zstd"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// peekSource is a memSource that is also a Peeker, counting what it
// peeks apart from what its Blobs read.
type peekSource struct {
	*memSource
	peeked atomic.Int64
}

func (s *peekSource) Peek(ctx context.Context, d digest.Digest, size, off, n int64) ([]byte, error) {
	b := s.blobs[d].b
	if off < 0 || off+n > int64(len(b)) {
		return nil, hfserr.ErrInvalid
	}
	s.peeked.Add(n)
	return bytes.Clone(b[off : off+n]), nil
}

// tocFiles is a layer with a file of many chunks, links, an empty file
// and a name that tries to leave the layer.
func tocFiles() []file {
	return []file{
		dir("etc/"), reg("etc/hostname", []byte("hashfs\n")),
		symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
		reg("empty", nil),
		hardlink("etc/hostname.bak", "etc/hostname"),
		reg("usr/share/big.txt", text(1, 300<<10)),
		reg("../../../escape.txt", []byte("clamped\n")),
		reg("data/small", text(2, 3000)),
	}
}

// estargzLayer builds an eStargz layer of files with the estargz
// library and returns it with its TOC digest and diff_id.
func estargzLayer(t *testing.T, files []file, opts ...estargz.Option) ([]byte, digest.Digest, digest.Digest) {
	t.Helper()
	tb := makeTar(t, files)
	b, err := estargz.Build(io.NewSectionReader(bytes.NewReader(tb), 0, int64(len(tb))), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	blob, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	toc, err := digest.Parse(b.TOCDigest().String())
	if err != nil {
		t.Fatal(err)
	}
	diffID, err := digest.Parse(b.DiffID().String())
	if err != nil {
		t.Fatal(err)
	}
	return blob, toc, diffID
}

func stargzAnn(d digest.Digest) map[string]string {
	return map[string]string{AnnotationStargzTOC: d.String()}
}

// checkFiles reads every regular file of files through l and compares.
func checkFiles(t *testing.T, l *Layer, blob Blob, files []file) {
	t.Helper()
	for _, f := range files {
		if f.typ != tar.TypeReg {
			continue
		}
		n := l.Root.Walk(CleanName(f.name))
		if n == nil || n.Entry == nil {
			t.Errorf("%s: not in the tree", f.name)
			continue
		}
		if got := readAll(t, OpenFile(l.NewStream(blob), n.Entry)); !bytes.Equal(got, f.body) {
			t.Errorf("%s: %d bytes read, differ from the %d written", f.name, len(got), len(f.body))
		}
	}
}

func TestTOCEstargzListsFromTheTOCAlone(t *testing.T) {
	files := tocFiles()
	tests := []struct {
		name string
		opts []estargz.Option
	}{
		{"chunks of 64KiB", []estargz.Option{estargz.WithChunkSize(64 << 10)}},
		{"default chunks", nil},
		{"small files share members (innerOffset)", []estargz.Option{estargz.WithChunkSize(64 << 10), estargz.WithMinChunkSize(16 << 10)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob, toc, _ := estargzLayer(t, files, tt.opts...)
			ms, ds := newSource(true, blob)
			src := &peekSource{memSource: ms}
			x := New(src, Options{})
			l, err := x.LayerFor(context.Background(), ds[0], int64(len(blob)), stargzAnn(toc))
			if err != nil {
				t.Fatal(err)
			}
			if l.TOC.Kind != EStargz || l.Format != Gzip {
				t.Fatalf("indexed as %v/%v, want from the eStargz TOC", l.TOC.Kind, l.Format)
			}
			if r := ms.blobs[ds[0]].read.Load(); r != 0 {
				t.Errorf("listing read %d bytes through the verified path", r)
			}
			if p := src.peeked.Load(); p == 0 || p > int64(len(blob))/4 {
				t.Errorf("listing peeked %d of %d bytes: want the footer and the TOC only", p, len(blob))
			}
			t.Logf("layer %d bytes, TOC and footer %d bytes", len(blob), src.peeked.Load())
			if n := l.Root.Walk("escape.txt"); n == nil || n.Entry == nil {
				t.Errorf("../../../escape.txt is not clamped to escape.txt")
			}
			a, b := l.Root.Walk("etc/hostname"), l.Root.Walk("etc/hostname.bak")
			if a == nil || b == nil || a.ID != b.ID || a.Nlink != 2 {
				t.Errorf("hard link: %+v %+v", a, b)
			}
			if n := l.Root.Walk("etc/localtime"); n == nil || n.Entry.Linkname != "/usr/share/zoneinfo/UTC" {
				t.Errorf("symlink: %+v", n)
			}
			if big := l.Root.Walk("usr/share/big.txt"); len(tt.opts) > 0 && len(big.Entry.Chunks) < 4 {
				t.Errorf("big.txt has %d chunks", len(big.Entry.Chunks))
			}
			inner := false
			for _, e := range l.Entries {
				for _, c := range e.Chunks {
					inner = inner || c.Inner > 0
				}
			}
			if want := strings.Contains(tt.name, "innerOffset"); inner != want {
				t.Errorf("chunks after the start of their member: %v, want %v", inner, want)
			}
			checkFiles(t, l, ms.blobs[ds[0]], files)
			// The tar stream of a TOC layer is not indexed; the full pass
			// is, next to it, with the diff_id.
			if _, err := l.NewStream(ms.blobs[ds[0]]).ReadAt(context.Background(), make([]byte, 10), 0); !errors.Is(err, hfserr.ErrInvalid) {
				t.Errorf("reading the tar stream of a TOC layer: %v", err)
			}
		})
	}
}

func TestTOCZstdChunkedFromSkopeo(t *testing.T) {
	blob, ann, source := skopeoLayer(t)
	ms, ds := newSource(true, blob)
	src := &peekSource{memSource: ms}
	l, err := New(src, Options{}).LayerFor(context.Background(), ds[0], int64(len(blob)), ann)
	if err != nil {
		t.Fatal(err)
	}
	if l.TOC.Kind != ZstdChunked || l.Format != Zstd {
		t.Fatalf("indexed as %v/%v", l.TOC.Kind, l.Format)
	}
	if r := ms.blobs[ds[0]].read.Load(); r != 0 {
		t.Errorf("listing read %d bytes through the verified path", r)
	}
	t.Logf("layer %d bytes, TOC %d bytes", len(blob), src.peeked.Load())
	checkFiles(t, l, ms.blobs[ds[0]], source)
	if n := l.Root.Walk("escape.txt"); n == nil {
		t.Errorf("../../escape.txt is not clamped")
	}
	a, b := l.Root.Walk("etc/hello.txt"), l.Root.Walk("etc/hard")
	if a == nil || b == nil || a.ID != b.ID {
		t.Errorf("hard link: %+v %+v", a, b)
	}
	if n := l.Root.Walk("etc/link"); n == nil || n.Entry.Linkname != "hello.txt" {
		t.Errorf("symlink: %+v", n)
	}
}

// skopeoLayer is testdata/zstdchunked: a layer skopeo 1.9.3 wrote with
// --dest-compress-format zstd:chunked from source.tar, its annotations
// and the files of source.tar.
func skopeoLayer(t *testing.T) ([]byte, map[string]string, []file) {
	t.Helper()
	blob, err := os.ReadFile("testdata/zstdchunked/layer.tar.zst")
	if err != nil {
		t.Fatal(err)
	}
	var desc struct {
		Annotations map[string]string `json:"annotations"`
	}
	b, err := os.ReadFile("testdata/zstdchunked/descriptor.json")
	if err == nil {
		err = json.Unmarshal(b, &desc)
	}
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open("testdata/zstdchunked/source.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var files []file
	tr := tar.NewReader(src)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		files = append(files, file{name: h.Name, typ: h.Typeflag, body: body})
	}
	return blob, desc.Annotations, files
}

// rewriteStargzTOC returns blob with its TOC JSON changed by edit (the
// footer kept: the TOC starts where it did) and the new TOC's digest.
func rewriteStargzTOC(t *testing.T, blob []byte, edit func(toc map[string]any)) ([]byte, digest.Digest) {
	t.Helper()
	tocOff, err := parseStargzFooter(blob[len(blob)-stargzFooterSize:])
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob[tocOff:]))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	var toc map[string]any
	if err := json.NewDecoder(tr).Decode(&toc); err != nil {
		t.Fatal(err)
	}
	edit(toc)
	js, _ := json.Marshal(toc)
	var member bytes.Buffer
	zw := gzip.NewWriter(&member)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: stargzTOCName, Typeflag: tar.TypeReg, Size: int64(len(js))})
	tw.Write(js)
	tw.Close()
	zw.Close()
	out := append(bytes.Clone(blob[:tocOff]), member.Bytes()...)
	return append(out, blob[len(blob)-stargzFooterSize:]...), digest.Of(js)
}

// rewriteZstdTOC returns a zstd:chunked blob with its TOC JSON changed by
// edit, and the annotations that describe the new TOC.
func rewriteZstdTOC(t *testing.T, blob []byte, ann map[string]string, edit func(toc map[string]any)) ([]byte, map[string]string) {
	t.Helper()
	ref, ok := TOCOf(ann)
	if !ok {
		t.Fatal("no zstd:chunked annotations")
	}
	dec, _ := zstd.NewReader(bytes.NewReader(blob[ref.Offset : ref.Offset+ref.Length]))
	defer dec.Close()
	var toc map[string]any
	if err := json.NewDecoder(dec).Decode(&toc); err != nil {
		t.Fatal(err)
	}
	edit(toc)
	js, _ := json.Marshal(toc)
	enc, _ := zstd.NewWriter(nil)
	z := enc.EncodeAll(js, nil)
	enc.Close()
	out := bytes.Clone(blob[:ref.Offset-8])
	out = append(out, 0x50, 0x2a, 0x4d, 0x18)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(z)))
	out = append(out, z...)
	out = append(out, blob[ref.Offset+ref.Length:]...)
	return out, map[string]string{
		AnnotationZstdChecksum: digest.Of(z).String(),
		AnnotationZstdPosition: strings.Join([]string{strconv.FormatInt(ref.Offset, 10), strconv.Itoa(len(z)), strconv.Itoa(len(js)), "1"}, ":"),
	}
}

func must(s *memSource, _ []digest.Digest) *memSource { return s }

// wrongDigest gives the first TOC entry named name a wrong digest.
func wrongDigest(name string) func(toc map[string]any) {
	return func(toc map[string]any) {
		for _, e := range toc["entries"].([]any) {
			m := e.(map[string]any)
			if m["name"] == name {
				bad := digest.Of([]byte("not this file")).String()
				if _, ok := m["chunkDigest"]; ok {
					m["chunkDigest"] = bad
				}
				m["digest"] = bad
				return
			}
		}
	}
}

func TestTOCIntegrity(t *testing.T) {
	files := tocFiles()
	sg, sgTOC, _ := estargzLayer(t, files, estargz.WithChunkSize(64<<10))
	sgOff, _ := parseStargzFooter(sg[len(sg)-stargzFooterSize:])
	zc, zcAnn, _ := skopeoLayer(t)
	zcRef, _ := TOCOf(zcAnn)
	flip := func(b []byte, at int64) []byte {
		b = bytes.Clone(b)
		b[at] ^= 0x55
		return b
	}
	// A byte inside data.txt's zstd frame.
	zcLayer, err := New(&peekSource{memSource: must(newSource(true, zc))}, Options{}).LayerFor(context.Background(), digest.Of(zc), int64(len(zc)), zcAnn)
	if err != nil {
		t.Fatal(err)
	}
	dataAt := zcLayer.Root.Walk("usr/share/doc/data.txt").Entry.Chunks[0].In + 20
	sgBadChunk, sgBadChunkTOC := rewriteStargzTOC(t, sg, wrongDigest("data/small"))
	zcBadChunk, zcBadChunkAnn := rewriteZstdTOC(t, zc, zcAnn, wrongDigest("usr/share/doc/data.txt"))
	tests := []struct {
		name    string
		blob    []byte
		ann     map[string]string
		listErr error  // from listing
		bad     string // a file whose read fails with ErrIntegrity
		good    string // a file still read
	}{
		{"estargz: annotation names another TOC", sg, stargzAnn(digest.Of([]byte("another"))), hfserr.ErrIntegrity, "", ""},
		{"estargz: a TOC byte flipped", flip(sg, sgOff+20), stargzAnn(sgTOC), hfserr.ErrIntegrity, "", ""},
		{"estargz: footer flipped", flip(sg, int64(len(sg))-30), stargzAnn(sgTOC), hfserr.ErrIntegrity, "", ""},
		{"estargz: chunk digest differs", sgBadChunk, stargzAnn(sgBadChunkTOC), nil, "data/small", "etc/hostname"},
		{"zstd:chunked: annotation names another TOC", zc, map[string]string{
			AnnotationZstdChecksum: digest.Of([]byte("another")).String(), AnnotationZstdPosition: zcAnn[AnnotationZstdPosition]}, hfserr.ErrIntegrity, "", ""},
		{"zstd:chunked: a TOC byte flipped", flip(zc, zcRef.Offset+10), zcAnn, hfserr.ErrIntegrity, "", ""},
		{"zstd:chunked: chunk digest differs", zcBadChunk, zcBadChunkAnn, nil, "usr/share/doc/data.txt", "etc/hello.txt"},
		{"zstd:chunked: payload byte flipped", flip(zc, dataAt), zcAnn, nil, "usr/share/doc/data.txt", "etc/hello.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, ds := newSource(true, tt.blob)
			l, err := New(&peekSource{memSource: ms}, Options{}).LayerFor(context.Background(), ds[0], int64(len(tt.blob)), tt.ann)
			if tt.listErr != nil {
				if !errors.Is(err, tt.listErr) {
					t.Fatalf("listing: %v, want %v", err, tt.listErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			read := func(name string) error {
				n := l.Root.Walk(name)
				if n == nil || n.Entry == nil {
					t.Fatalf("%s not listed", name)
				}
				f := OpenFile(l.NewStream(ms.blobs[ds[0]]), n.Entry)
				buf := make([]byte, n.Entry.Size)
				_, err := f.ReadAt(context.Background(), buf, 0)
				if err == io.EOF {
					err = nil
				}
				return err
			}
			if tt.bad != "" {
				if err := read(tt.bad); !errors.Is(err, hfserr.ErrIntegrity) {
					t.Errorf("reading %s: %v, want ErrIntegrity", tt.bad, err)
				}
			}
			if tt.good != "" {
				if err := read(tt.good); err != nil {
					t.Errorf("reading %s: %v", tt.good, err)
				}
			}
		})
	}
}

func TestTOCIndexStoredAndFullPassBeside(t *testing.T) {
	files := tocFiles()
	blob, toc, diffID := estargzLayer(t, files, estargz.WithChunkSize(64<<10))
	dir := t.TempDir()
	ms, ds := newSource(true, blob)
	src := &peekSource{memSource: ms}
	size := int64(len(blob))
	if _, err := openIndexer(t, dir, src).LayerFor(context.Background(), ds[0], size, stargzAnn(toc)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ds[0].Hex()+".toc")); err != nil {
		t.Fatalf("TOC index not stored: %v", err)
	}
	peeked := src.peeked.Load()
	x := openIndexer(t, dir, src)
	l, err := x.LayerFor(context.Background(), ds[0], size, stargzAnn(toc))
	if err != nil {
		t.Fatal(err)
	}
	if src.peeked.Load() != peeked || ms.blobs[ds[0]].read.Load() != 0 {
		t.Errorf("a restart read the layer again instead of the stored TOC index")
	}
	checkFiles(t, l, ms.blobs[ds[0]], files)
	// The full pass (rootfs/, sha256/<diff_id>) is its own index.
	full, err := x.Layer(context.Background(), ds[0], size)
	if err != nil {
		t.Fatal(err)
	}
	if full.TOC.Kind != NoTOC || full.DiffID != diffID {
		t.Errorf("full pass: toc %v, diff_id %s, want %s", full.TOC.Kind, full.DiffID, diffID)
	}
	if again, err := x.Again(context.Background(), l); err != nil || again.TOC.Kind != EStargz {
		t.Errorf("Again of a TOC layer: %v", err)
	}
	// A stored TOC index of another TOC digest is not used.
	_, err = x.LayerTOC(context.Background(), ds[0], size, TOCRef{Kind: EStargz, Digest: digest.Of(nil)})
	if !errors.Is(err, hfserr.ErrIntegrity) {
		t.Errorf("TOC index for another digest: %v, want ErrIntegrity", err)
	}
}

func TestTOCUnusableFallsBackToAFullPass(t *testing.T) {
	files := tocFiles()
	blob, _, diffID := estargzLayer(t, files)
	blob, toc := rewriteStargzTOC(t, blob, func(toc map[string]any) {
		es := toc["entries"].([]any)
		toc["entries"] = append(es, map[string]any{"name": "odd", "type": "whiteout-of-the-future"})
	})
	ms, ds := newSource(true, blob)
	l, err := New(&peekSource{memSource: ms}, Options{}).LayerFor(context.Background(), ds[0], int64(len(blob)), stargzAnn(toc))
	if err != nil {
		t.Fatal(err)
	}
	// The TOC is rewritten, so the stream differs from the original's.
	if l.TOC.Kind != NoTOC || l.DiffID.IsZero() || l.DiffID == diffID {
		t.Errorf("indexed as %v with diff_id %s", l.TOC.Kind, l.DiffID)
	}
	checkFiles(t, l, ms.blobs[ds[0]], files)
}

func TestTOCOf(t *testing.T) {
	d := digest.Of([]byte("x"))
	tests := []struct {
		name string
		ann  map[string]string
		want TOCRef
		ok   bool
	}{
		{"none", nil, TOCRef{}, false},
		{"estargz", map[string]string{AnnotationStargzTOC: d.String()}, TOCRef{Kind: EStargz, Digest: d}, true},
		{"estargz bad digest", map[string]string{AnnotationStargzTOC: "md5:x"}, TOCRef{}, false},
		{"zstd:chunked", map[string]string{AnnotationZstdChecksum: d.String(), AnnotationZstdPosition: "3000980:2846:9449:1"},
			TOCRef{Kind: ZstdChunked, Digest: d, Offset: 3000980, Length: 2846, RawLength: 9449}, true},
		{"zstd:chunked io.github", map[string]string{annotationZstdChecksumGit: d.String(), annotationZstdPositionGit: "10:20:30:1"},
			TOCRef{Kind: ZstdChunked, Digest: d, Offset: 10, Length: 20, RawLength: 30}, true},
		{"zstd:chunked other type", map[string]string{AnnotationZstdChecksum: d.String(), AnnotationZstdPosition: "10:20:30:2"}, TOCRef{}, false},
		{"zstd:chunked bad position", map[string]string{AnnotationZstdChecksum: d.String(), AnnotationZstdPosition: "10:-20:30:1"}, TOCRef{}, false},
		{"both: zstd:chunked wins", map[string]string{AnnotationStargzTOC: d.String(), AnnotationZstdChecksum: d.String(), AnnotationZstdPosition: "1:2:3:1"},
			TOCRef{Kind: ZstdChunked, Digest: d, Offset: 1, Length: 2, RawLength: 3}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := TOCOf(tt.ann)
			if ok != tt.ok || got != tt.want {
				t.Errorf("TOCOf = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestVersion1IndexStillReads(t *testing.T) {
	blob, files := gzLayer(t)
	dir := t.TempDir()
	src, ds := newSource(true, blob)
	size := int64(len(blob))
	if _, err := openIndexer(t, dir, src).Layer(context.Background(), ds[0], size); err != nil {
		t.Fatal(err)
	}
	// Rewrite the stored index as version 1 wrote it.
	st, _ := OpenStore(dir, 0)
	ix, _, err := st.load(ds[0], size, nil)
	if err != nil || ix == nil {
		t.Fatalf("load: %v", err)
	}
	ix.Version = 1
	w, err := st.create()
	if err != nil {
		t.Fatal(err)
	}
	refs := ix.Windows
	for i := range refs {
		b, err := (&fileWindows{path: st.path(ds[0], false), base: storeHeader, refs: refs}).get(i)
		if err != nil {
			t.Fatal(err)
		}
		w.put(b)
	}
	if err := w.commit(ix); err != nil {
		t.Fatal(err)
	}
	read := src.blobs[ds[0]].read.Load()
	l, err := openIndexer(t, dir, src).Layer(context.Background(), ds[0], size)
	if err != nil {
		t.Fatal(err)
	}
	if got := src.blobs[ds[0]].read.Load() - read; l.Version != 1 || got != 0 {
		t.Errorf("the version 1 index was indexed again (version %d, %d bytes read)", l.Version, got)
	}
	checkFiles(t, l, src.blobs[ds[0]], files)
}
