package fetch

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// layoutFixture is an image layout written by ggcr with one image tagged v1.
type layoutFixture struct {
	dir     string
	path    layout.Path
	img     v1.Image
	man     []byte
	manD    digest.Digest
	manType string
	layer   []byte
	layerD  digest.Digest
}

func newLayoutFixture(t *testing.T) *layoutFixture {
	t.Helper()
	f := &layoutFixture{dir: t.TempDir()}
	var err error
	if f.path, err = layout.Write(f.dir, empty.Index); err != nil {
		t.Fatal(err)
	}
	if f.img, err = random.Image(2048, 2); err != nil {
		t.Fatal(err)
	}
	if err := f.path.AppendImage(f.img, layout.WithAnnotations(map[string]string{RefNameAnnotation: "v1"})); err != nil {
		t.Fatal(err)
	}
	f.man, _ = f.img.RawManifest()
	f.manD = digest.Of(f.man)
	mt, _ := f.img.MediaType()
	f.manType = string(mt)
	layers, _ := f.img.Layers()
	rc, _ := layers[0].Compressed()
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	f.layer = buf.Bytes()
	f.layerD = digest.Of(f.layer)
	return f
}

// writeBlob puts b under blobs/sha256 by hand and returns its digest.
func (f *layoutFixture) writeBlob(t *testing.T, b []byte) digest.Digest {
	t.Helper()
	d := digest.Of(b)
	if err := os.WriteFile(filepath.Join(f.dir, "blobs", "sha256", d.Hex()), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestOpenLayout(t *testing.T) {
	good := newLayoutFixture(t).dir
	for _, tc := range []struct {
		name  string
		setup func(dir string) // on an empty directory
		path  string           // instead of a prepared directory
		want  error
	}{
		{name: "ggcr layout", path: good},
		{name: "missing directory", path: filepath.Join(t.TempDir(), "nope"), want: hfserr.ErrNotFound},
		{name: "no oci-layout", setup: func(string) {}, want: hfserr.ErrNotFound},
		{name: "a file", path: filepath.Join(good, "oci-layout"), want: hfserr.ErrInvalid},
		{name: "garbled oci-layout", setup: func(dir string) {
			write(t, dir, "oci-layout", "{")
		}, want: hfserr.ErrInvalid},
		{name: "unsupported version", setup: func(dir string) {
			write(t, dir, "oci-layout", `{"imageLayoutVersion":"2.0.0"}`)
			write(t, dir, "index.json", `{"schemaVersion":2,"manifests":[]}`)
		}, want: hfserr.ErrInvalid},
		{name: "no index.json", setup: func(dir string) {
			write(t, dir, "oci-layout", `{"imageLayoutVersion":"1.0.0"}`)
		}, want: hfserr.ErrInvalid},
		{name: "garbled index.json", setup: func(dir string) {
			write(t, dir, "oci-layout", `{"imageLayoutVersion":"1.0.0"}`)
			write(t, dir, "index.json", `{"manifests":7}`)
		}, want: hfserr.ErrInvalid},
		{name: "minimal by hand", setup: func(dir string) {
			write(t, dir, "oci-layout", `{"imageLayoutVersion":"1.0.0"}`)
			write(t, dir, "index.json", `{"schemaVersion":2,"manifests":[]}`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if tc.setup != nil {
				path = t.TempDir()
				tc.setup(path)
			}
			l, err := OpenLayout(path)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("OpenLayout = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			abs, _ := filepath.Abs(path)
			if l.Name() != "oci:"+abs || l.Repository() != l.Name() {
				t.Errorf("Name, Repository = %q, %q", l.Name(), l.Repository())
			}
			if err := l.Ping(context.Background()); err != nil {
				t.Errorf("Ping: %v", err)
			}
		})
	}
}

func TestLayoutBlobs(t *testing.T) {
	f := newLayoutFixture(t)
	l, err := OpenLayout(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(f.layer))
	missing := digest.Of([]byte("missing"))
	for _, tc := range []struct {
		name   string
		d      digest.Digest
		off, n int64
		want   error
	}{
		{name: "whole", d: f.layerD, off: 0, n: size},
		{name: "middle", d: f.layerD, off: 10, n: 100},
		{name: "last byte", d: f.layerD, off: size - 1, n: 1},
		{name: "empty", d: f.layerD, off: 3, n: 0},
		{name: "past the end", d: f.layerD, off: size - 1, n: 2, want: hfserr.ErrInvalid},
		{name: "negative", d: f.layerD, off: -1, n: 2, want: hfserr.ErrInvalid},
		{name: "missing", d: missing, off: 0, n: 1, want: hfserr.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.FetchRange(context.Background(), tc.d, tc.off, tc.n)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil || !bytes.Equal(got, f.layer[tc.off:tc.off+tc.n]) {
				t.Fatalf("FetchRange = %d bytes, %v", len(got), err)
			}
		})
	}
	if got, err := l.StatBlob(context.Background(), f.layerD); err != nil || got != size {
		t.Errorf("StatBlob = %d, %v; want %d", got, err, size)
	}
	if _, err := l.StatBlob(context.Background(), missing); !errors.Is(err, hfserr.ErrNotFound) {
		t.Errorf("StatBlob(missing) = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.FetchRange(ctx, f.layerD, 0, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("FetchRange with a cancelled context = %v", err)
	}
}

func TestLayoutManifests(t *testing.T) {
	f := newLayoutFixture(t)
	l, err := OpenLayout(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	huge := append([]byte(`{"mediaType":"x","pad":"`), bytes.Repeat([]byte("x"), MaxManifestSize)...)
	huge = append(huge, `"}`...)
	hugeD := f.writeBlob(t, huge)
	bare := []byte(`{"schemaVersion":2,"config":{},"layers":[]}`)
	bareD := f.writeBlob(t, bare)
	corrupt := f.writeBlob(t, []byte(`{"mediaType":"a"}`))
	if err := os.WriteFile(filepath.Join(f.dir, "blobs", "sha256", corrupt.Hex()), []byte(`{"mediaType":"b"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref      string
		want     error
		wantD    digest.Digest
		wantType string
	}{
		{ref: "v1", wantD: f.manD, wantType: f.manType},
		{ref: f.manD.String(), wantD: f.manD, wantType: f.manType},
		{ref: bareD.String(), wantD: bareD, wantType: "application/vnd.oci.image.manifest.v1+json"},
		{ref: "v2", want: hfserr.ErrNotFound},
		{ref: "../../etc/passwd", want: hfserr.ErrInvalid},
		{ref: digest.Of([]byte("none")).String(), want: hfserr.ErrNotFound},
		{ref: f.layerD.String(), want: hfserr.ErrNotFound}, // a layer is not a manifest
		{ref: hugeD.String(), want: hfserr.ErrInvalid},
		{ref: corrupt.String(), want: hfserr.ErrIntegrity},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			doc, err := l.Manifest(context.Background(), tc.ref)
			desc, serr := l.StatManifest(context.Background(), tc.ref)
			if tc.want != nil {
				if !errors.Is(err, tc.want) || !errors.Is(serr, tc.want) {
					t.Fatalf("Manifest, StatManifest = %v, %v; want %v", err, serr, tc.want)
				}
				return
			}
			if err != nil || serr != nil {
				t.Fatalf("Manifest, StatManifest = %v, %v", err, serr)
			}
			if doc.Digest != tc.wantD || doc.MediaType != tc.wantType || digest.Of(doc.Body) != tc.wantD {
				t.Errorf("Manifest = %s %q", doc.Digest, doc.MediaType)
			}
			if desc != (Descriptor{Digest: tc.wantD, Size: int64(len(doc.Body)), MediaType: tc.wantType}) {
				t.Errorf("StatManifest = %+v", desc)
			}
		})
	}
}

// Tags follow index.json as it changes.
func TestLayoutTags(t *testing.T) {
	f := newLayoutFixture(t)
	l, err := OpenLayout(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if tags, err := l.Tags(ctx); err != nil || !slices.Equal(tags, []string{"v1"}) {
		t.Fatalf("Tags = %v, %v", tags, err)
	}
	img2, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"v2", "v1", "registry.example/repo:v3"} {
		if err := f.path.AppendImage(img2, layout.WithAnnotations(map[string]string{RefNameAnnotation: ref})); err != nil {
			t.Fatal(err)
		}
	}
	if tags, err := l.Tags(ctx); err != nil || !slices.Equal(tags, []string{"v1", "v2"}) {
		t.Fatalf("Tags after append = %v, %v", tags, err)
	}
	d2, _ := img2.Digest()
	doc, err := l.Manifest(ctx, "v2")
	if err != nil || doc.Digest.String() != d2.String() {
		t.Fatalf("Manifest(v2) = %s, %v", doc.Digest, err)
	}
	if doc, err := l.Manifest(ctx, "v1"); err != nil || doc.Digest != f.manD {
		t.Errorf("Manifest(v1) = %s, %v; the first entry should win", doc.Digest, err)
	}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
