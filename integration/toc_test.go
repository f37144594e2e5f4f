package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The layers of these tests carry a table of contents (eStargz built
// with the estargz library, zstd:chunked written by skopeo): listing
// layers/0/ fetches the TOC, not the layer, in strict mode too; a lazy
// read of one file fetches that file's chunks; a TOC or chunk that does
// not match its digest is EIO.

// tocTree is a layer's files: many large ones (half random, half text),
// one deep target near the end, small files, a symlink and a hard link.
type tocTree struct {
	entries    []tarEntry
	target     string
	targetBody []byte
}

func makeTOCTree(mib int, seed byte) tocTree {
	tt := tocTree{entries: []tarEntry{td("etc/", 0o755), tf("etc/hostname", 0o644, "toc\n"),
		tl("etc/localtime", "/usr/share/zoneinfo/UTC"),
		{name: "etc/hostname.bak", link: "etc/hostname", typ: tar.TypeLink, mode: 0o644}}}
	eachBigFile(mib, seed, 3, func(name string, body []byte, isTarget bool) {
		if isTarget {
			tt.target, tt.targetBody = name, body
		}
		tt.entries = append(tt.entries, tarEntry{name: name, typ: tar.TypeReg, mode: 0o644, body: body})
	})
	tt.entries = append(tt.entries, tf("../../escape.txt", 0o644, "clamped\n"))
	return tt
}

// pushEstargz builds an eStargz layer of entries with the estargz library
// and pushes a one-layer OCI image with ggcr's remote.Write: the layer
// keeps its bytes, its media type is the OCI tar+gzip one, the config's
// diff_id is computed from it, and its only annotation is the TOC digest
// (oras push would also title the layer, making it an ORAS file).
// It returns the layer's digest, size and bytes.
func pushEstargz(t *testing.T, ref string, entries []tarEntry) (string, int64, []byte) {
	t.Helper()
	var plain bytes.Buffer
	writeTar(t, &plain, entries)
	b, err := estargz.Build(io.NewSectionReader(bytes.NewReader(plain.Bytes()), 0, int64(plain.Len())),
		estargz.WithCompressionLevel(gzip.BestSpeed), estargz.WithChunkSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := io.ReadAll(b)
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1),
		mutate.Addendum{Layer: layer, Annotations: map[string]string{estargz.TOCJSONDigestAnnotation: b.TOCDigest().String()}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, _ := layer.Digest()
	return d.String(), int64(len(blob)), blob
}

// pushZstdChunked writes a one-layer OCI layout of entries (an
// uncompressed tar) and copies it into the registry with skopeo
// --dest-compress-format zstd:chunked. It returns the layer's digest and
// size.
func pushZstdChunked(t *testing.T, ref string, entries []tarEntry) (string, int64) {
	t.Helper()
	needTool(t, "skopeo")
	layout := filepath.Join(t.TempDir(), "layout")
	var plain bytes.Buffer
	writeTar(t, &plain, entries)
	blob := func(b []byte) map[string]any {
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		p := filepath.Join(layout, "blobs", "sha256", h)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return map[string]any{"digest": "sha256:" + h, "size": len(b)}
	}
	withType := func(m map[string]any, mt string) map[string]any { m["mediaType"] = mt; return m }
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + sha256Hex(plain.Bytes())}}})
	man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": withType(blob(cfg), "application/vnd.oci.image.config.v1+json"),
		"layers": []any{withType(blob(plain.Bytes()), "application/vnd.oci.image.layer.v1.tar")}})
	md := withType(blob(man), "application/vnd.oci.image.manifest.v1+json")
	md["annotations"] = map[string]string{"org.opencontainers.image.ref.name": "v1"}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{md}})
	os.WriteFile(filepath.Join(layout, "index.json"), idx, 0o644)
	os.WriteFile(filepath.Join(layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	runCmd(t, "skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false", "--dest-compress-format", "zstd:chunked",
		"oci:"+layout+":v1", "docker://"+ref)
	var got struct {
		Layers []struct {
			Digest      string            `json:"digest"`
			Size        int64             `json:"size"`
			Annotations map[string]string `json:"annotations"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(crane(t, "manifest", "--insecure", ref)), &got); err != nil || len(got.Layers) != 1 {
		t.Fatalf("manifest of %s: %v", ref, err)
	}
	l := got.Layers[0]
	if l.Annotations["io.containers.zstd-chunked.manifest-position"] == "" && l.Annotations["io.github.containers.zstd-chunked.manifest-position"] == "" {
		t.Fatalf("skopeo wrote no zstd:chunked annotations: %v", l.Annotations)
	}
	t.Logf("skopeo's zstd:chunked layer: %d bytes, annotations %v", l.Size, l.Annotations)
	return l.Digest, l.Size
}

// listLong is `ls -lR`: every name under root with its lstat.
func listLong(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	for _, p := range tree(t, root) {
		st := lstat(t, filepath.Join(root, strings.TrimSuffix(p, "/")))
		out = append(out, fmt.Sprintf("%s %o %d", p, st.Mode, st.Size))
	}
	return out
}

// checkTOCLayer lists layers/0/ of manifest md through a strict mount
// behind p, checking the registry sent a small fraction of the layer,
// then reads every file.
func checkTOCLayer(t *testing.T, p *proxy, repo, md, ld string, size int64, tt tocTree) {
	t.Helper()
	m := mount(t, p.host+"/"+repo)
	before := p.blobBytes(ld)
	names := listLong(t, m.path(md+"/layers/0"))
	listed := p.blobBytes(ld) - before
	t.Logf("strict: ls -lR layers/0/ (%d names) fetched %d bytes of the %d-byte layer (%.3f%%)",
		len(names), listed, size, 100*float64(listed)/float64(size))
	if listed == 0 || listed > size/100 {
		t.Errorf("listing fetched %d bytes of a %d-byte layer: want the TOC only", listed, size)
	}
	for _, want := range []string{"deep/a/b/c/d/e/target.txt", "escape.txt", "etc/hostname.bak", "etc/localtime"} {
		if !slices.ContainsFunc(names, func(s string) bool { return strings.HasPrefix(s, want+" ") }) {
			t.Errorf("layers/0/ lacks %s: %v", want, names[:min(len(names), 12)])
		}
	}
	if a, b := lstat(t, m.path(md+"/layers/0/etc/hostname")), lstat(t, m.path(md+"/layers/0/etc/hostname.bak")); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard link: inodes %d %d, nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	if got, err := os.Readlink(m.path(md + "/layers/0/etc/localtime")); err != nil || got != "/usr/share/zoneinfo/UTC" {
		t.Errorf("symlink: %q %v", got, err)
	}
	start := time.Now()
	for _, e := range tt.entries {
		if e.typ != tar.TypeReg {
			continue
		}
		n := strings.TrimPrefix(e.name, "../../")
		if got := mustRead(t, m.path(md+"/layers/0/"+n)); !bytes.Equal(got, e.body) {
			t.Errorf("layers/0/%s: %d bytes, differ from the %d written", n, len(got), len(e.body))
		}
	}
	t.Logf("strict: read every file in %v, the registry sent %d bytes of the layer in all",
		time.Since(start).Round(time.Millisecond), p.blobBytes(ld)-before)
}

// checkLazyRead reads the target alone in a lazy mount behind p.
func checkLazyRead(t *testing.T, p *proxy, repo, md, ld string, size int64, tt tocTree) {
	t.Helper()
	m := mount(t, p.host+"/"+repo, "--verify", "lazy", "--chunk-size", "256KiB")
	before := p.blobBytes(ld)
	if got := mustRead(t, m.path(md+"/layers/0/"+tt.target)); !bytes.Equal(got, tt.targetBody) {
		t.Fatalf("lazy %s: %d bytes, differ", tt.target, len(got))
	}
	fetched := p.blobBytes(ld) - before
	t.Logf("lazy: reading %s (%d KiB) fetched %d KiB of the %d MiB layer (%.2f%%), TOC included",
		tt.target, len(tt.targetBody)>>10, fetched>>10, size>>20, 100*float64(fetched)/float64(size))
	// The file's compressed bytes (no larger than the file: half of the
	// files are random), the TOC, and at most a chunk of 256 KiB at each
	// end of the file's range: the cache's readahead stops at the end of
	// the chunk the decoder reads, so nothing past the file is fetched.
	if bound := int64(len(tt.targetBody)) + 3*256<<10; fetched < int64(len(tt.targetBody))/2 || fetched > bound {
		t.Errorf("a lazy read of one %d-byte file fetched %d bytes of the %d-byte layer: want at most %d",
			len(tt.targetBody), fetched, size, bound)
	}
}

// checkTOCModes runs the strict listing checks and the lazy read check
// on one TOC layer, as subtests.
func checkTOCModes(t *testing.T, p *proxy, repo, md, ld string, size int64, tt tocTree) {
	t.Run("strict", func(t *testing.T) {
		checkTOCLayer(t, p, repo, md, ld, size, tt)
	})
	t.Run("lazy", func(t *testing.T) {
		checkLazyRead(t, p, repo, md, ld, size, tt)
	})
}

func TestTOCEstargz(t *testing.T) {
	mib := 80
	host, _ := startDistribution(t)
	tt := makeTOCTree(mib, 11)
	ref := host + "/toc/estargz:v1"
	start := time.Now()
	ld, size, _ := pushEstargz(t, ref, tt.entries)
	t.Logf("built and pushed a %d MiB eStargz layer in %v", size>>20, time.Since(start).Round(time.Second))
	md := manifestOf(t, ref)
	p := newProxy(t, host)
	checkTOCModes(t, p, "toc/estargz", md, ld, size, tt)
	t.Run("rootfs and diff_id", func(t *testing.T) {
		m := mount(t, p.host+"/toc/estargz")
		// The full pass shows the tar as any unpacker would: with the
		// TOC's own entry and estargz's landmark file.
		got := tree(t, m.path(md+"/rootfs"))
		for _, want := range []string{"deep/a/b/c/d/e/target.txt", "escape.txt", "stargz.index.json"} {
			if !slices.Contains(got, want) {
				t.Errorf("rootfs/ lacks %s", want)
			}
		}
		if b := mustRead(t, m.path(md+"/rootfs/"+tt.target)); !bytes.Equal(b, tt.targetBody) {
			t.Errorf("rootfs/%s differs", tt.target)
		}
		checkDiffIDs(t, m, md, 1)
	})
}

func TestTOCZstdChunked(t *testing.T) {
	host, _ := startDistribution(t)
	tt := makeTOCTree(72, 12)
	ref := host + "/toc/zstd:v1"
	start := time.Now()
	ld, size := pushZstdChunked(t, ref, tt.entries)
	t.Logf("skopeo wrote and pushed a %d MiB zstd:chunked layer in %v", size>>20, time.Since(start).Round(time.Second))
	md := manifestOf(t, ref)
	p := newProxy(t, host)
	checkTOCModes(t, p, "toc/zstd", md, ld, size, tt)
	t.Run("rootfs and diff_id", func(t *testing.T) {
		m := mount(t, p.host+"/toc/zstd")
		if b := mustRead(t, m.path(md+"/rootfs/"+tt.target)); !bytes.Equal(b, tt.targetBody) {
			t.Errorf("rootfs/%s differs", tt.target)
		}
		checkDiffIDs(t, m, md, 1)
	})
}

// registryBlob is the file docker-registry stores blob d in.
func registryBlob(storage, d string) string {
	h := strings.TrimPrefix(d, "sha256:")
	return filepath.Join(storage, "docker", "registry", "v2", "blobs", "sha256", h[:2], h, "data")
}

// flipAt XORs one byte of a file.
func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x55
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// readNothing opens path and reads once: it must fail with EIO having
// returned no byte.
func readNothing(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("open %s: %v, want EIO", path, err)
		}
		return
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	n, err := f.Read(buf)
	if n != 0 || !errors.Is(err, syscall.EIO) {
		t.Errorf("read %s: %d bytes, %v; want 0 bytes and EIO", path, n, err)
	}
}

// TestTOCCorrupt: a registry that stores a corrupted TOC makes layers/0/
// EIO (no listing from it) having fetched only the footer and the TOC;
// one that stores a corrupted chunk lists the layer but reads the file
// holding that chunk as EIO with no byte served, lazily too.
func TestTOCCorrupt(t *testing.T) {
	host, storage := startDistribution(t)
	small := func(seed byte) tocTree { return makeTOCTree(10, seed) }
	t.Run("toc", func(t *testing.T) {
		tt := small(21)
		ref := host + "/toc/badtoc:v1"
		ld, size, blob := pushEstargz(t, ref, tt.entries)
		tocOff, _, err := estargz.OpenFooter(io.NewSectionReader(bytes.NewReader(blob), 0, size))
		if err != nil {
			t.Fatal(err)
		}
		flipAt(t, registryBlob(storage, ld), tocOff+40)
		md := manifestOf(t, ref)
		p := newProxy(t, host)
		for _, mode := range []string{"strict", "lazy"} {
			m := mount(t, p.host+"/toc/badtoc", "--verify", mode, "--lazy-verify-max", "64KiB", "--chunk-size", "256KiB")
			before := p.blobBytes(ld)
			if _, err := os.ReadDir(m.path(md + "/layers/0")); !errors.Is(err, syscall.EIO) {
				t.Errorf("%s: listing a layer whose TOC is corrupted: %v, want EIO", mode, err)
			}
			fetched := p.blobBytes(ld) - before
			t.Logf("%s: the failed listing fetched %d bytes of the %d-byte layer", mode, fetched, size)
			if fetched > size/20 {
				t.Errorf("%s: a corrupted TOC fetched %d bytes of %d", mode, fetched, size)
			}
		}
	})
	t.Run("chunk", func(t *testing.T) {
		tt := small(22)
		ref := host + "/toc/badchunk:v1"
		ld, size, blob := pushEstargz(t, ref, tt.entries)
		r, err := estargz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, size))
		if err != nil {
			t.Fatal(err)
		}
		e, ok := r.Lookup(tt.target)
		if !ok {
			t.Fatalf("%s not in the TOC", tt.target)
		}
		flipAt(t, registryBlob(storage, ld), e.Offset+4096)
		md := manifestOf(t, ref)
		for _, mode := range []string{"lazy", "strict"} {
			m := mount(t, host+"/toc/badchunk", "--verify", mode, "--lazy-verify-max", "64KiB", "--chunk-size", "256KiB")
			if got := tree(t, m.path(md+"/layers/0")); !slices.Contains(got, tt.target) {
				t.Fatalf("%s: layers/0/ lacks %s", mode, tt.target)
			}
			readNothing(t, m.path(md+"/layers/0/"+tt.target))
			if mode == "lazy" {
				// Another file's chunks are served under the lazy rules.
				if got := string(mustRead(t, m.path(md+"/layers/0/etc/hostname"))); got != "toc\n" {
					t.Errorf("lazy: etc/hostname reads %q", got)
				}
			}
		}
	})
}
