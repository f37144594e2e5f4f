package layerindex

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/hashfs/hashfs/internal/digest"
)

// file is one tar entry to write.
type file struct {
	name, link string
	typ        byte
	mode       int64
	body       []byte
}

func reg(name string, body []byte) file {
	return file{name: name, typ: tar.TypeReg, mode: 0o644, body: body}
}
func dir(name string) file { return file{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) file {
	return file{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}
func hardlink(name, target string) file {
	return file{name: name, link: target, typ: tar.TypeLink, mode: 0o644}
}

func makeTar(t testing.TB, files []file) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Linkname: f.link, Typeflag: f.typ, Mode: f.mode,
			Size: int64(len(f.body)), ModTime: time.Unix(1700000000, 0), Uid: 1000, Gid: 100}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gz compresses b as one gzip member, or as members of about split bytes.
func gz(t testing.TB, b []byte, level, split int) []byte {
	t.Helper()
	if split <= 0 {
		split = len(b) + 1
	}
	var out bytes.Buffer
	for len(b) > 0 || out.Len() == 0 {
		n := min(split, len(b))
		w, err := gzip.NewWriterLevel(&out, level)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b[:n])
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	return out.Bytes()
}

// zst compresses b as one zstd frame, or as frames of split bytes.
func zst(t testing.TB, b []byte, split int) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	if split <= 0 {
		return enc.EncodeAll(b, nil)
	}
	var out []byte
	for len(b) > 0 {
		n := min(split, len(b))
		out = enc.EncodeAll(b[:n], out)
		b = b[n:]
	}
	return out
}

// text returns n bytes of base64 of random bytes: compressible to about
// 3/4 with Huffman codes and no matches, so DEFLATE blocks end at odd
// bit offsets.
func text(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	raw := make([]byte, n)
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	return []byte(base64.StdEncoding.EncodeToString(raw)[:n])
}

// memBlob is a Blob in memory that counts the bytes read from it.
type memBlob struct {
	b    []byte
	read atomic.Int64
	fail atomic.Bool
}

func (m *memBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if m.fail.Load() {
		return 0, io.ErrClosedPipe
	}
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	m.read.Add(int64(n))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memBlob) Close() error { return nil }

// memSource serves memBlobs by digest.
type memSource struct {
	mu          sync.Mutex
	blobs       map[digest.Digest]*memBlob
	verified    bool
	quarantined bool
}

func newSource(verified bool, layers ...[]byte) (*memSource, []digest.Digest) {
	s := &memSource{blobs: map[digest.Digest]*memBlob{}, verified: verified}
	var ds []digest.Digest
	for _, l := range layers {
		d := digest.Of(l)
		s.blobs[d] = &memBlob{b: l}
		ds = append(ds, d)
	}
	return s, ds
}

func (s *memSource) Open(d digest.Digest, size int64) BlobCloser { return s.blobs[d] }

func (s *memSource) State(d digest.Digest, size int64) (bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.verified, s.quarantined
}

func (s *memSource) set(verified, quarantined bool) {
	s.mu.Lock()
	s.verified, s.quarantined = verified, quarantined
	s.mu.Unlock()
}

// readAll reads a whole File with small reads, as the kernel does.
func readAll(t testing.TB, f *File) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 128<<10)
	for off := int64(0); ; {
		n, err := f.ReadAt(context.Background(), buf, off)
		out = append(out, buf[:n]...)
		off += int64(n)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
}
