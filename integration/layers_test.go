package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// craneVersion is the crane the tests use; `make deps` installs it.
const craneVersion = "v0.22.1"

// needCrane returns the crane binary: on PATH, or where `go install` put it.
func needCrane(t *testing.T) string {
	t.Helper()
	return needGoTool(t, "crane", "github.com/google/go-containerregistry/cmd/crane@"+craneVersion)
}

// crane runs crane with an empty Docker config and returns its output.
func crane(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(needCrane(t), args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.Output(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * cmdTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("crane %s took longer than %v", strings.Join(args, " "), 5*cmdTimeout)
	}
	if err != nil {
		t.Fatalf("crane %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// tarEntry is one entry of a test layer.
type tarEntry struct {
	name, link string
	typ        byte
	mode       int64
	uid, gid   int
	major      int64
	minor      int64
	body       []byte
}

func tf(name string, mode int64, body string) tarEntry {
	return tarEntry{name: name, typ: tar.TypeReg, mode: mode, body: []byte(body)}
}
func td(name string, mode int64) tarEntry { return tarEntry{name: name, typ: tar.TypeDir, mode: mode} }
func tl(name, target string) tarEntry {
	return tarEntry{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}

// writeTar writes entries as a tar to w.
func writeTar(t *testing.T, w io.Writer, entries []tarEntry) {
	t.Helper()
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0), Devmajor: e.major, Devminor: e.minor,
			Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// layerFile writes entries to a file in dir: a tar, or with gz a tar.gz.
func layerFile(t *testing.T, dir, name string, gz bool, entries []tarEntry) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !gz {
		writeTar(t, f, entries)
		return p
	}
	z := gzip.NewWriter(f)
	writeTar(t, z, entries)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// manifestOf returns "manifests/sha256:<m>" for a pushed reference.
func manifestOf(t *testing.T, ref string) string {
	t.Helper()
	return "manifests/" + crane(t, "digest", "--insecure", ref)
}

// diffIDsOf reads the config.json of a manifest directory in a mount.
func diffIDsOf(t *testing.T, m *mnt, dir string) []string {
	t.Helper()
	var c struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(mustRead(t, m.path(dir+"/config.json")), &c); err != nil {
		t.Fatal(err)
	}
	return c.RootFS.DiffIDs
}

// checkDiffIDs hashes sha256/<diff_id> (both layouts) for every layer.
func checkDiffIDs(t *testing.T, m *mnt, dir string, n int) {
	t.Helper()
	ids := diffIDsOf(t, m, dir)
	if len(ids) != n {
		t.Fatalf("%d diff_ids, want %d", len(ids), n)
	}
	for _, id := range ids {
		h := strings.TrimPrefix(id, "sha256:")
		for _, p := range []string{"sha256/" + h, "sha256/" + h[:2] + "/" + h[2:4] + "/" + h} {
			if got := sha256sum(t, m.path(p)); got != h {
				t.Errorf("%s hashes to %s", p, got)
			}
		}
	}
}

// tree lists every path under root ("dir/" for directories), sorted.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	slices.Sort(out)
	return out
}

func lstat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

// TestLayerContents: an image pushed with crane append shows its tar's
// files, directories, modes, owners, symlinks (verbatim), hard links
// (one inode), devices and fifos under layers/0/; hostile names stay
// inside; rootfs/ shows the same; sha256/<diff_id> hashes to itself.
func TestLayerContents(t *testing.T) {
	host, _ := startDistribution(t)
	dir := t.TempDir()
	entries := []tarEntry{
		td("bin/", 0o755), tf("bin/tool", 0o4755, "#!/bin/sh\necho tool\n"),
		td("etc/", 0o755), {name: "etc/conf", typ: tar.TypeReg, mode: 0o640, uid: 1234, gid: 5678, body: []byte("conf\n")},
		{name: "etc/conf.hard", link: "etc/conf", typ: tar.TypeLink, mode: 0o640},
		tl("etc/conf.sym", "conf"),
		tl("evil-shadow", "/etc/shadow"),
		tl("up", "../../../../etc/passwd"),
		tf("../../etc/passwd", 0o644, "not the host's passwd\n"),
		tf("/abs", 0o644, "absolute\n"),
		tf("../escape-dir/inner", 0o644, "inner\n"),
		td("tmp/", 0o1777),
		td("private/", 0o700), tf("private/secret", 0o600, "s3cret\n"),
		td("dev/", 0o755), {name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		{name: "fifo", typ: tar.TypeFifo, mode: 0o644},
	}
	layer := layerFile(t, dir, "layer.tar.gz", true, entries)
	ref := host + "/layers/contents:v1"
	crane(t, "append", "--insecure", "-f", layer, "-t", ref)
	m := mount(t, host+"/layers/contents")
	md := manifestOf(t, ref)
	root := m.path(md + "/layers/0")

	want := []string{"abs", "bin/", "bin/tool", "dev/", "dev/null", "escape-dir/", "escape-dir/inner", "etc/",
		"etc/conf", "etc/conf.hard", "etc/conf.sym", "etc/passwd", "evil-shadow", "fifo", "private/",
		"private/secret", "tmp/", "up"}
	if got := tree(t, root); !slices.Equal(got, want) {
		t.Fatalf("layers/0:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if got := tree(t, m.path(md+"/rootfs")); !slices.Equal(got, want) {
		t.Fatalf("rootfs:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	tests := []struct {
		path     string
		mode     uint32 // type and permission bits
		uid, gid uint32
		nlink    uint64
		rdev     uint64
	}{
		{"bin/tool", syscall.S_IFREG | 0o4755, 0, 0, 1, 0},
		{"etc/conf", syscall.S_IFREG | 0o640, 1234, 5678, 2, 0},
		{"etc/conf.hard", syscall.S_IFREG | 0o640, 1234, 5678, 2, 0},
		{"etc/conf.sym", syscall.S_IFLNK | 0o777, 0, 0, 1, 0},
		{"tmp", syscall.S_IFDIR | 0o1777, 0, 0, 2, 0},
		{"private", syscall.S_IFDIR | 0o700, 0, 0, 2, 0},
		{"private/secret", syscall.S_IFREG | 0o600, 0, 0, 1, 0},
		{"dev/null", syscall.S_IFCHR | 0o666, 0, 0, 1, unix.Mkdev(1, 3)},
		{"fifo", syscall.S_IFIFO | 0o644, 0, 0, 1, 0},
	}
	for _, tt := range tests {
		st := lstat(t, filepath.Join(root, tt.path))
		if st.Mode != tt.mode || st.Uid != tt.uid || st.Gid != tt.gid || st.Nlink != tt.nlink || st.Rdev != tt.rdev {
			t.Errorf("%s: mode %o uid %d gid %d nlink %d rdev %x; want %o %d %d %d %x",
				tt.path, st.Mode, st.Uid, st.Gid, st.Nlink, st.Rdev, tt.mode, tt.uid, tt.gid, tt.nlink, tt.rdev)
		}
		if st.Mtim.Sec != 1700000000 {
			t.Errorf("%s: mtime %d", tt.path, st.Mtim.Sec)
		}
	}
	if a, b := lstat(t, filepath.Join(root, "etc/conf")), lstat(t, filepath.Join(root, "etc/conf.hard")); a.Ino != b.Ino {
		t.Errorf("hard links have inodes %d and %d", a.Ino, b.Ino)
	}
	for name, target := range map[string]string{"evil-shadow": "/etc/shadow", "up": "../../../../etc/passwd", "etc/conf.sym": "conf"} {
		if got, err := os.Readlink(filepath.Join(root, name)); err != nil || got != target {
			t.Errorf("readlink %s = %q, %v; want %q", name, got, err, target)
		}
	}
	for name, body := range map[string]string{"etc/passwd": "not the host's passwd\n", "abs": "absolute\n",
		"etc/conf.hard": "conf\n", "private/secret": "s3cret\n", "bin/tool": "#!/bin/sh\necho tool\n"} {
		if got := string(mustRead(t, filepath.Join(root, name))); got != body {
			t.Errorf("%s reads %q, want %q", name, got, body)
		}
	}
	checkDiffIDs(t, m, md, 1)
}

// TestRootfsWhiteouts: rootfs/ of a two-layer image (the second pushed
// with crane append on the first) applies whiteouts and opaque
// directories, and lists exactly what `crane export` writes.
func TestRootfsWhiteouts(t *testing.T) {
	host, _ := startDistribution(t)
	dir := t.TempDir()
	base := layerFile(t, dir, "base.tar", false, []tarEntry{
		tf("keep", 0o644, "keep\n"), tf("gone", 0o644, "gone\n"),
		td("tree/", 0o755), td("tree/x/", 0o755), tf("tree/x/y", 0o644, "y\n"),
		td("opq/", 0o755), tf("opq/old", 0o644, "old\n"), td("opq/sub/", 0o755), tf("opq/sub/deep", 0o644, "deep\n"),
		tf("replaced", 0o644, "old\n"),
		td("dir2file/", 0o755), tf("dir2file/child", 0o644, "child\n"),
		td("merged/", 0o755), tf("merged/lower", 0o644, "lower\n"),
	})
	top := layerFile(t, dir, "top.tar.gz", true, []tarEntry{
		tf(".wh.gone", 0o644, ""), tf(".wh.tree", 0o644, ""),
		td("opq/", 0o755), tf("opq/.wh..wh..opq", 0o644, ""), tf("opq/new", 0o644, "new\n"),
		tf("replaced", 0o600, "new\n"),
		tf("dir2file", 0o644, "now a file\n"),
		td("merged/", 0o750), tf("merged/upper", 0o644, "upper\n"),
	})
	crane(t, "append", "--insecure", "-f", base, "-t", host+"/layers/wh:v1")
	ref := host + "/layers/wh:v2"
	crane(t, "append", "--insecure", "-f", top, "-b", host+"/layers/wh:v1", "-t", ref)
	m := mount(t, host+"/layers/wh")
	md := manifestOf(t, ref)

	want := []string{"dir2file", "keep", "merged/", "merged/lower", "merged/upper", "opq/", "opq/new", "replaced"}
	got := tree(t, m.path(md+"/rootfs"))
	if !slices.Equal(got, want) {
		t.Fatalf("rootfs:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	// crane export is the reference for what a merged image contains.
	var exported []string
	out := filepath.Join(dir, "export.tar")
	crane(t, "export", "--insecure", ref, out)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean(h.Name)
		if h.Typeflag == tar.TypeDir {
			name += "/"
		}
		exported = append(exported, name)
	}
	slices.Sort(exported)
	if !slices.Equal(got, exported) {
		t.Errorf("rootfs differs from crane export:\n  %s\ncrane export:\n  %s", strings.Join(got, "\n  "), strings.Join(exported, "\n  "))
	}
	for name, body := range map[string]string{"replaced": "new\n", "dir2file": "now a file\n", "merged/lower": "lower\n", "opq/new": "new\n"} {
		if got := string(mustRead(t, m.path(md+"/rootfs/"+name))); got != body {
			t.Errorf("rootfs/%s reads %q, want %q", name, got, body)
		}
	}
	if st := lstat(t, m.path(md+"/rootfs/merged")); st.Mode&0o777 != 0o750 {
		t.Errorf("rootfs/merged has mode %o: the upper layer's directory should win", st.Mode&0o777)
	}
	// layers/1 shows the whiteout files themselves.
	if _, err := os.Lstat(m.path(md + "/layers/1/.wh.gone")); err != nil {
		t.Errorf("layers/1/.wh.gone: %v", err)
	}
	checkDiffIDs(t, m, md, 2)

	// prefetch of the image reads its files (manifest.json, config.json,
	// blobs/ of the config and the 2 layers), not the files inside
	// layers/ and rootfs/ again.
	out, errs, err := hashfsCmd(t, "prefetch", m.path(md))
	if err != nil || !strings.Contains(out+errs, "prefetch done: 5 files") {
		t.Errorf("prefetch of an image: %v\n%s%s", err, out, errs)
	}
}

// TestSkopeoOCILayout: an OCI layout with a tar+zstd layer of several
// frames and a plain tar layer, copied with skopeo, shows both layers,
// the rootfs and the diff_id tars.
func TestSkopeoOCILayout(t *testing.T) {
	needTool(t, "skopeo")
	host, _ := startDistribution(t)
	dir := t.TempDir()
	var big []byte
	for i := range 6 {
		big = append(big, bytes.Repeat([]byte(fmt.Sprintf("line %d of a compressible file\n", i)), 40000)...)
	}
	var t1, t2 bytes.Buffer
	writeTar(t, &t1, []tarEntry{td("usr/", 0o755), tf("usr/big.txt", 0o644, string(big)), tf("usr/small", 0o644, "small\n")})
	writeTar(t, &t2, []tarEntry{tf("usr/small", 0o644, "replaced\n"), tf("top", 0o644, "top\n")})
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	var zl []byte // frames of 256 KiB, as zstd:chunked writes many
	for rest := t1.Bytes(); len(rest) > 0; {
		n := min(len(rest), 256<<10)
		zl = enc.EncodeAll(rest[:n], zl)
		rest = rest[n:]
	}
	enc.Close()
	layout := filepath.Join(dir, "layout")
	blob := func(b []byte) string {
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		p := filepath.Join(layout, "blobs", "sha256", h)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return "sha256:" + h
	}
	desc := func(mt string, b []byte) map[string]any {
		return map[string]any{"mediaType": mt, "digest": blob(b), "size": len(b)}
	}
	sum1, sum2 := sha256.Sum256(t1.Bytes()), sha256.Sum256(t2.Bytes())
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(sum1[:]), "sha256:" + hex.EncodeToString(sum2[:])}}})
	man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": desc("application/vnd.oci.image.config.v1+json", cfg),
		"layers": []any{desc("application/vnd.oci.image.layer.v1.tar+zstd", zl), desc("application/vnd.oci.image.layer.v1.tar", t2.Bytes())}})
	mdesc := desc("application/vnd.oci.image.manifest.v1+json", man)
	mdesc["annotations"] = map[string]string{"org.opencontainers.image.ref.name": "v1"}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{mdesc}})
	os.WriteFile(filepath.Join(layout, "index.json"), idx, 0o644)
	os.WriteFile(filepath.Join(layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	ref := host + "/layers/skopeo:v1"
	runCmd(t, "skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false", "oci:"+layout+":v1", "docker://"+ref)

	if mt := crane(t, "manifest", "--insecure", ref); !strings.Contains(mt, "application/vnd.oci.image.layer.v1.tar+zstd") {
		t.Fatalf("skopeo did not keep the zstd layer: %s", mt)
	}
	m := mount(t, host+"/layers/skopeo")
	md := manifestOf(t, ref)
	if got := mustRead(t, m.path(md+"/layers/0/usr/big.txt")); !bytes.Equal(got, big) {
		t.Errorf("layers/0/usr/big.txt: %d bytes, differs", len(got))
	}
	if got := string(mustRead(t, m.path(md+"/rootfs/usr/small"))); got != "replaced\n" {
		t.Errorf("rootfs/usr/small reads %q", got)
	}
	if got := tree(t, m.path(md+"/rootfs")); !slices.Equal(got, []string{"top", "usr/", "usr/big.txt", "usr/small"}) {
		t.Errorf("rootfs: %v", got)
	}
	checkDiffIDs(t, m, md, 2)
}

// TestOrasDirectory: a directory pushed with oras appears unpacked at
// its title (and under layers/0/), its blob still under blobs/.
func TestOrasDirectory(t *testing.T) {
	host, _ := startDistribution(t)
	o := newOras(t)
	os.MkdirAll(filepath.Join(o.dir, "results", "sub"), 0o755)
	os.WriteFile(filepath.Join(o.dir, "results", "a.csv"), []byte("x,y\n1,2\n"), 0o644)
	os.WriteFile(filepath.Join(o.dir, "results", "sub", "b.txt"), []byte("b\n"), 0o600)
	os.WriteFile(filepath.Join(o.dir, "notes.txt"), []byte("notes\n"), 0o644)
	d := o.digestOf("push", "--plain-http", host+"/layers/oras:v1", "results", "notes.txt")
	m := mount(t, host+"/layers/oras")
	md := "manifests/" + d
	if got := tree(t, m.path(md+"/results")); !slices.Equal(got, []string{"a.csv", "sub/", "sub/b.txt"}) {
		t.Fatalf("results/: %v", got)
	}
	if got := string(mustRead(t, m.path(md+"/results/sub/b.txt"))); got != "b\n" {
		t.Errorf("results/sub/b.txt reads %q", got)
	}
	if st := lstat(t, m.path(md+"/results/sub/b.txt")); st.Mode&0o777 != 0o600 {
		t.Errorf("results/sub/b.txt mode %o", st.Mode&0o777)
	}
	if got := string(mustRead(t, m.path(md+"/notes.txt"))); got != "notes\n" {
		t.Errorf("notes.txt reads %q", got)
	}
	if fi, err := os.Stat(m.path(md + "/layers")); err != nil || !fi.IsDir() {
		t.Errorf("layers/: %v", err)
	}
	if _, err := os.Stat(m.path(md + "/rootfs")); !os.IsNotExist(err) {
		t.Errorf("an artifact has rootfs/: %v", err)
	}
}

// eachBigFile makes about mib MiB of 2.5 MiB files from seed, half random
// bytes (stored blocks when gzipped) and half base64 text (Huffman blocks
// ending at any bit), one at a time; the file fromEnd places before the
// last is deep/a/b/c/d/e/target.txt.
func eachBigFile(mib int, seed byte, fromEnd int, yield func(name string, body []byte, isTarget bool)) {
	rng := rand.NewChaCha8([32]byte{seed})
	const fileSize = 5 << 19
	n := mib << 20 / fileSize
	for i := range n {
		body := make([]byte, fileSize)
		rng.Read(body)
		name := fmt.Sprintf("data/%03d/blob.bin", i)
		if i%2 == 1 {
			body = []byte(base64.StdEncoding.EncodeToString(body)[:fileSize])
			name = fmt.Sprintf("text/%03d/page.txt", i)
		}
		if i == n-fromEnd {
			name = "deep/a/b/c/d/e/target.txt"
		}
		yield(name, body, i == n-fromEnd)
	}
}

// bigLayer writes a tar.gz of about mib MiB in many files (eachBigFile)
// and returns the name and bytes of the one deep near its end.
func bigLayer(t *testing.T, path string, mib int) (string, []byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	z, _ := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	tw := tar.NewWriter(z)
	target, targetName := []byte(nil), ""
	eachBigFile(mib, 7, 7, func(name string, body []byte, isTarget bool) {
		if isTarget {
			target, targetName = body, name
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0)}); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return targetName, target
}

// TestBigGzipLayerRandomAccess: the first look inside a ~500 MiB gzip
// layer reads it whole once and stores its index; after the chunks are
// pruned and the mount restarted, reading one file near the end fetches
// a small fraction of the layer (counted at a proxy in front of the
// registry), in strict mode, every chunk checked against the layer's
// trusted chunk table.
func TestBigGzipLayerRandomAccess(t *testing.T) {
	mib := 550
	if testing.Short() {
		mib = 64
	}
	host, _ := startDistribution(t)
	dir := t.TempDir()
	layer := filepath.Join(dir, "big.tar.gz")
	start := time.Now()
	name, body := bigLayer(t, layer, mib)
	fi, _ := os.Stat(layer)
	ref := host + "/layers/big:v1"
	crane(t, "append", "--insecure", "-f", layer, "-t", ref)
	t.Logf("made and pushed a %d MiB gzip layer (%d MiB of tar) in %v", fi.Size()>>20, mib, time.Since(start).Round(time.Second))
	var man struct {
		Layers []struct {
			Digest string `json:"digest"`
			Size   int64  `json:"size"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(crane(t, "manifest", "--insecure", ref)), &man); err != nil || len(man.Layers) != 1 {
		t.Fatalf("manifest: %v", err)
	}
	ld, size := man.Layers[0].Digest, man.Layers[0].Size
	p := newProxy(t, host)
	cacheDir := t.TempDir()
	md := manifestOf(t, ref)
	want := sha256Hex(body)

	m := mountAt(t, t.TempDir(), cacheDir, p.host+"/layers/big")
	start = time.Now()
	if got := sha256Hex(mustRead(t, m.path(md+"/layers/0/"+name))); got != want {
		t.Fatalf("%s through the first mount hashes to %s", name, got)
	}
	first := p.blobBytes(ld)
	t.Logf("first look: indexed and read %s in %v, fetching %d MiB of the %d MiB layer", name,
		time.Since(start).Round(100*time.Millisecond), first>>20, size>>20)
	if first < size || first > size+size/10 {
		t.Errorf("the first pass fetched %d bytes of a %d-byte layer: want it once", first, size)
	}
	ixi, err := os.Stat(filepath.Join(cacheDir, "layerindex", strings.TrimPrefix(ld, "sha256:")))
	if err != nil {
		t.Fatalf("no stored index: %v", err)
	}
	t.Logf("stored index: %d KiB (%.2f%% of the layer)", ixi.Size()>>10, 100*float64(ixi.Size())/float64(size))
	// The uncompressed tar hashes to its diff_id through the mount.
	start = time.Now()
	ids := diffIDsOf(t, m, md)
	if len(ids) != 1 {
		t.Fatalf("%d diff_ids", len(ids))
	}
	h := strings.TrimPrefix(ids[0], "sha256:")
	if got := hashSlowFile(t, m.path("sha256/"+h)); got != h {
		t.Errorf("sha256/%s hashes to %s", h, got)
	}
	t.Logf("sha256/<diff_id> (%d MiB) hashed to itself in %v", mib, time.Since(start).Round(100*time.Millisecond))
	m.shutdown()
	if out, errOut, err := hashfsCmd(t, "cache", "prune", "--cache-dir", cacheDir, "--max-size", "0"); err != nil {
		t.Fatalf("cache prune: %v\n%s%s", err, out, errOut)
	}
	if n := dirBytes(t, filepath.Join(cacheDir, "chunks")); n > 0 {
		t.Fatalf("after prune to 0 the chunks take %d bytes", n)
	}

	m2 := mountAt(t, t.TempDir(), cacheDir, p.host+"/layers/big")
	before := p.blobBytes(ld)
	start = time.Now()
	if got := sha256Hex(mustRead(t, m2.path(md+"/layers/0/"+name))); got != want {
		t.Fatalf("%s after the restart hashes to %s", name, got)
	}
	fetched := p.blobBytes(ld) - before
	t.Logf("after a restart with the stored index and no cached chunks: read %s (%d KiB) in %v, fetching %d KiB of the %d MiB layer (%.2f%%)",
		name, len(body)>>10, time.Since(start).Round(time.Millisecond), fetched>>10, size>>20, 100*float64(fetched)/float64(size))
	if fetched == 0 || fetched > size/50 {
		t.Errorf("reading one %d KiB file fetched %d bytes of the %d-byte layer: want a small fraction", len(body)>>10, fetched, size)
	}
}

// hashSlowFile hashes a large file through the mount, allowing it more
// than the usual command timeout on a busy machine.
func hashSlowFile(t *testing.T, path string) string {
	t.Helper()
	type result struct {
		sum string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		f, err := os.Open(path)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		h := sha256.New()
		_, err = io.Copy(h, f)
		ch <- result{hex.EncodeToString(h.Sum(nil)), err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("hash %s: %v", path, r.err)
		}
		return r.sum
	case <-time.After(5 * cmdTimeout):
		t.Fatalf("hashing %s took longer than %v", path, 5*cmdTimeout)
		return ""
	}
}

// TestLayerVerification: in strict mode nothing inside a layer is shown
// before the layer verified (a corrupting proxy makes layers/0 and rootfs
// EIO, and the same paths work once the registry is right); in lazy mode
// files inside a large layer are served at once and the index is stored
// only after the background verification.
func TestLayerVerification(t *testing.T) {
	host, _ := startDistribution(t)
	dir := t.TempDir()
	body := randomBytes(t, 3<<20)
	entries := []tarEntry{tf("data/random.bin", 0o644, string(body)), tf("small", 0o644, "small\n")}
	var plain bytes.Buffer
	writeTar(t, &plain, entries)
	diffID := sha256Hex(plain.Bytes())
	ref := host + "/layers/verify:v1"
	crane(t, "append", "--insecure", "-f", layerFile(t, dir, "l.tar.gz", true, entries), "-t", ref)
	md := manifestOf(t, ref)
	p := newProxy(t, host)

	t.Run("strict", func(t *testing.T) {
		p.flip.Store(true)
		m := mount(t, p.host+"/layers/verify")
		for _, d := range []string{"/layers/0", "/rootfs"} {
			if _, err := os.ReadDir(m.path(md + d)); !errors.Is(err, syscall.EIO) {
				t.Errorf("listing %s of a corrupted layer: %v, want EIO", d, err)
			}
		}
		if _, err := os.Stat(filepath.Join(m.cacheDir, "layerindex", strings.TrimPrefix(digestOfFile(t, m, md), "sha256:"))); !os.IsNotExist(err) {
			t.Errorf("an index of the corrupted layer was stored: %v", err)
		}
		p.flip.Store(false)
		time.Sleep(1500 * time.Millisecond)
		if got := mustRead(t, m.path(md+"/layers/0/data/random.bin")); !bytes.Equal(got, body) {
			t.Errorf("layers/0/data/random.bin once the registry is right: %d bytes, differs", len(got))
		}
		if got := sha256sum(t, m.path("sha256/"+diffID)); got != diffID {
			t.Errorf("sha256/<diff_id> hashes to %s", got)
		}
	})
	t.Run("lazy", func(t *testing.T) {
		m := mount(t, p.host+"/layers/verify", "--verify", "lazy", "--lazy-verify-max", "64KiB", "--chunk-size", "256KiB")
		idx := filepath.Join(m.cacheDir, "layerindex", strings.TrimPrefix(digestOfFile(t, m, md), "sha256:"))
		if got := string(mustRead(t, m.path(md+"/layers/0/small"))); got != "small\n" {
			t.Fatalf("layers/0/small reads %q", got)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			// Each open asks whether the layer verified meanwhile.
			if got := mustRead(t, m.path(md+"/layers/0/data/random.bin")); !bytes.Equal(got, body) {
				t.Fatalf("layers/0/data/random.bin: %d bytes, differs", len(got))
			}
			if _, err := os.Stat(idx); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the index was not stored within 30s of the layer's background verification")
			}
			time.Sleep(1500 * time.Millisecond) // verification starts once the layer goes unread for 1s
		}
	})
}

// digestOfFile returns the digest of the only layer of manifest dir md.
func digestOfFile(t *testing.T, m *mnt, md string) string {
	t.Helper()
	var man struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(mustRead(t, m.path(md+"/manifest.json")), &man); err != nil || len(man.Layers) != 1 {
		t.Fatalf("manifest.json: %v", err)
	}
	return man.Layers[0].Digest
}
