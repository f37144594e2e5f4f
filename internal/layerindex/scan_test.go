package layerindex

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// sampleFiles is a tree of every entry kind with bodies of several sizes.
func sampleFiles() []file {
	files := []file{
		dir("etc/"), reg("etc/hostname", []byte("hashfs\n")),
		symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
		reg("empty", nil),
		hardlink("etc/hostname.bak", "etc/hostname"),
	}
	for i := range 24 {
		files = append(files, reg(fmt.Sprintf("data/%02d/f.txt", i), text(uint64(i), 1000+i*4000)))
	}
	return files
}

func TestIndexAndReadEveryFormat(t *testing.T) {
	files := sampleFiles()
	tarball := makeTar(t, files)
	tests := []struct {
		name   string
		blob   []byte
		format Format
	}{
		{"tar", tarball, Tar},
		{"gzip", gz(t, tarball, gzip.DefaultCompression, 0), Gzip},
		{"gzip best speed", gz(t, tarball, gzip.BestSpeed, 0), Gzip},
		{"gzip stored", gz(t, tarball, gzip.NoCompression, 0), Gzip},
		{"gzip members", gz(t, tarball, gzip.DefaultCompression, 100<<10), Gzip},
		{"zstd", zst(t, tarball, 0), Zstd},
		{"zstd frames", zst(t, tarball, 200<<10), Zstd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, ds := newSource(true, tt.blob)
			x := New(src, Options{Span: 64 << 10})
			l, err := x.Layer(context.Background(), ds[0], int64(len(tt.blob)))
			if err != nil {
				t.Fatal(err)
			}
			if l.Format != tt.format {
				t.Fatalf("format %v, want %v", l.Format, tt.format)
			}
			if l.DiffID != digest.Of(tarball) || l.TarSize != int64(len(tarball)) {
				t.Fatalf("diff_id %s size %d, want %s size %d", l.DiffID, l.TarSize, digest.Of(tarball), len(tarball))
			}
			s := l.NewStream(src.blobs[ds[0]])
			defer s.Close()
			for _, f := range files {
				if f.typ != '0' {
					continue
				}
				n := l.Root.Walk(CleanName(f.name))
				if n == nil {
					t.Fatalf("%s not in the tree", f.name)
				}
				if got := readAll(t, OpenFile(s, n.Entry)); !bytes.Equal(got, f.body) {
					t.Fatalf("%s: read %d bytes, differs from the %d written", f.name, len(got), len(f.body))
				}
			}
			// The whole stream, read backwards in pieces, is the tar.
			got := make([]byte, len(tarball))
			for off := len(got) - 50000; ; off -= 50000 {
				off = max(off, 0)
				if _, err := s.ReadAt(context.Background(), got[off:min(off+50000, len(got))], int64(off)); err != nil {
					t.Fatalf("stream at %d: %v", off, err)
				}
				if off == 0 {
					break
				}
			}
			if !bytes.Equal(got, tarball) {
				t.Fatal("stream differs from the tar")
			}
		})
	}
}

func TestReadingOneFileFetchesOneSpan(t *testing.T) {
	var files []file
	for i := range 32 {
		files = append(files, reg(fmt.Sprintf("d/%02d", i), text(uint64(i), 128<<10)))
	}
	tarball := makeTar(t, files)
	blob := gz(t, tarball, gzip.DefaultCompression, 0)
	tests := []struct {
		name string
		span int64
	}{
		{"span 64KiB", 64 << 10},
		{"span 512KiB", 512 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, ds := newSource(true, blob)
			x := New(src, Options{Span: tt.span})
			l, err := x.Layer(context.Background(), ds[0], int64(len(blob)))
			if err != nil {
				t.Fatal(err)
			}
			mb := src.blobs[ds[0]]
			if got := mb.read.Load(); got != int64(len(blob)) {
				t.Fatalf("first pass read %d of %d bytes", got, len(blob))
			}
			mb.read.Store(0)
			n := l.Root.Walk("d/29")
			got := readAll(t, OpenFile(l.NewStream(mb), n.Entry))
			if !bytes.Equal(got, files[29].body) {
				t.Fatal("file differs")
			}
			// One file (128 KiB) plus at most a span on each side, compressed
			// to about 3/4, plus the read buffer.
			limit := (128<<10+2*tt.span)*3/4 + readBuffer
			t.Logf("read %d of %d compressed bytes for a 128 KiB file (%d checkpoints)", mb.read.Load(), len(blob), len(l.Checkpoints))
			if r := mb.read.Load(); r > limit || r == 0 {
				t.Fatalf("read %d compressed bytes, want at most %d", r, limit)
			}
		})
	}
}

func TestBadLayers(t *testing.T) {
	tarball := makeTar(t, sampleFiles())
	good := gz(t, tarball, gzip.DefaultCompression, 0)
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-8] ^= 0xff
	tests := []struct {
		name string
		blob []byte
		want error
	}{
		{"not a tar", bytes.Repeat([]byte("hello world\n"), 100), hfserr.ErrInvalid},
		{"gzip crc", badCRC, hfserr.ErrIntegrity},
		{"truncated gzip", good[:len(good)/2], hfserr.ErrInvalid},
		{"gzip then garbage", append(bytes.Clone(good), "garbage!"...), hfserr.ErrInvalid},
		{"truncated zstd", zst(t, tarball, 0)[:1000], hfserr.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, ds := newSource(true, tt.blob)
			_, err := New(src, Options{}).Layer(context.Background(), ds[0], int64(len(tt.blob)))
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadErrorsKeepTheirKind(t *testing.T) {
	tarball := makeTar(t, sampleFiles())
	blob := gz(t, tarball, gzip.DefaultCompression, 0)
	src, ds := newSource(false, blob) // lazy: not verified yet
	x := New(src, Options{Span: 64 << 10})
	l, err := x.Layer(context.Background(), ds[0], int64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := l.Root.Walk("data/20/f.txt")
	if _, err := OpenFile(l.NewStream(src.blobs[ds[0]]), n.Entry).ReadAt(ctx, make([]byte, 10), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: %v", err)
	}
	src.set(false, true)
	if _, err := OpenFile(l.NewStream(src.blobs[ds[0]]), n.Entry).ReadAt(context.Background(), make([]byte, 10), 0); !errors.Is(err, hfserr.ErrIntegrity) {
		t.Fatalf("read of a quarantined layer: %v", err)
	}
}

func TestConcurrentReaders(t *testing.T) {
	files := sampleFiles()
	tarball := makeTar(t, files)
	blob := gz(t, tarball, gzip.DefaultCompression, 0)
	src, ds := newSource(true, blob)
	x := New(src, Options{Span: 64 << 10, Spans: 2}) // few cached spans: readers evict each other's
	var wg sync.WaitGroup
	shared := func() *Stream {
		l, err := x.Layer(context.Background(), ds[0], int64(len(blob)))
		if err != nil {
			t.Error(err)
			return nil
		}
		return l.NewStream(src.blobs[ds[0]])
	}()
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := x.Layer(context.Background(), ds[0], int64(len(blob)))
			if err != nil {
				t.Error(err)
				return
			}
			s := shared
			if g%2 == 0 {
				s = l.NewStream(src.blobs[ds[0]])
				defer s.Close()
			}
			for i := range files {
				f := files[(i+g*3)%len(files)]
				if f.typ != '0' {
					continue
				}
				n := l.Root.Walk(CleanName(f.name))
				if got := readAll(t, OpenFile(s, n.Entry)); !bytes.Equal(got, f.body) {
					t.Errorf("%s differs", f.name)
				}
			}
		}()
	}
	wg.Wait()
}

// A zstd layer of one frame has no checkpoints after the start: reading
// its files one after the other (each through its own Stream, as each
// open does) must continue decoding where the last read stopped, not
// decode the layer from its start for every file.
func TestZstdOneFrameInOrderDecodesOnce(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{3})
	var files []file
	for i := range 40 {
		raw := make([]byte, 192<<10)
		rng.Read(raw)
		files = append(files, reg(fmt.Sprintf("f/%02d", i), []byte(base64.StdEncoding.EncodeToString(raw))))
	}
	tarball := makeTar(t, files) // 10 MiB: one span longer than maxCachedSpan
	blob := zst(t, tarball, 0)
	src, ds := newSource(true, blob)
	l, err := New(src, Options{}).Layer(context.Background(), ds[0], int64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Checkpoints) != 1 || l.TarSize <= maxCachedSpan {
		t.Fatalf("%d checkpoints, %d bytes: want one long span", len(l.Checkpoints), l.TarSize)
	}
	mb := src.blobs[ds[0]]
	mb.read.Store(0)
	for _, f := range files {
		s := l.NewStream(mb)
		if got := readAll(t, OpenFile(s, l.Root.Walk(f.name).Entry)); !bytes.Equal(got, f.body) {
			t.Fatalf("%s differs", f.name)
		}
		s.Close()
	}
	if r := mb.read.Load(); r > int64(len(blob))+2*readBuffer {
		t.Fatalf("reading the files in order read %d compressed bytes of a %d-byte layer", r, len(blob))
	}
}

// limitBlob is a memBlob that records the readahead limits a reader
// passes it (cache.Reader's ReadAtWithin).
type limitBlob struct {
	*memBlob
	mu     sync.Mutex
	limits []int64
}

func (b *limitBlob) ReadAtWithin(ctx context.Context, p []byte, off, limit int64) (int, error) {
	b.mu.Lock()
	b.limits = append(b.limits, limit)
	b.mu.Unlock()
	return b.ReadAt(ctx, p, off)
}

// Reading one file tells the blob how far its compressed bytes go, so
// that the cache's readahead runs to the file's end across spans, and
// never past it.
func TestReadingAFileBoundsTheReadahead(t *testing.T) {
	var files []file
	for i := range 16 {
		files = append(files, reg(fmt.Sprintf("d/%02d", i), text(uint64(i), 512<<10)))
	}
	blob := gz(t, makeTar(t, files), gzip.DefaultCompression, 0)
	src, ds := newSource(true, blob)
	l, err := New(src, Options{Span: 64 << 10}).Layer(context.Background(), ds[0], int64(len(blob)))
	if err != nil {
		t.Fatal(err)
	}
	lb := &limitBlob{memBlob: src.blobs[ds[0]]}
	e := l.Root.Walk("d/09").Entry
	if got := readAll(t, OpenFile(l.NewStream(lb), e)); !bytes.Equal(got, files[9].body) {
		t.Fatal("file differs")
	}
	end := l.compressedEnd(e.Offset + e.Size)
	if end >= int64(len(blob)) {
		t.Fatalf("the file's compressed end %d is the layer's end: no bound to check", end)
	}
	// Every read, from the first span of the file on, says the same end:
	// the readahead may run ahead to it from the start, and no further.
	if len(lb.limits) < 2 {
		t.Fatalf("%d reads of the blob: want the file's several spans", len(lb.limits))
	}
	for i, lim := range lb.limits {
		if lim != end {
			t.Fatalf("read %d of %d: readahead limit %d, want the file's compressed end %d", i, len(lb.limits), lim, end)
		}
	}
}
