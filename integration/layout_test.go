package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/hashfs/hashfs/internal/seed"
)

const vostokHex = "9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37"

// pushSeed pushes the sample tags to repo and returns tag -> "sha256:<hex>".
func pushSeed(t *testing.T, repo string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	tags, err := seed.Push(ctx, repo)
	if err != nil {
		t.Fatalf("seed.Push %s: %v", repo, err)
	}
	out := map[string]string{}
	for tag, d := range tags {
		out[tag] = d.String()
	}
	for _, want := range []string{"vostok", "v1", "multi", "image"} {
		if out[want] == "" {
			t.Fatalf("seed.Push returned no digest for tag %q: %v", want, out)
		}
	}
	return out
}

// pushFile pushes one ORAS-style artifact holding data as title and
// returns the layer's "sha256:<hex>".
func pushFile(t *testing.T, repo, tag, title string, data []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if _, err := seed.PushArtifact(ctx, repo, tag, []seed.File{{Title: title, Data: data}}); err != nil {
		t.Fatalf("seed.PushArtifact %s:%s: %v", repo, tag, err)
	}
	return "sha256:" + sha256Hex(data)
}

// getxattr reads one extended attribute as a string.
func getxattr(path, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Getxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
}

// listxattr lists the extended attribute names of path.
func listxattr(t *testing.T, path string) []string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Listxattr(path, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", path, err)
	}
	var names []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			names = append(names, s)
		}
	}
	return names
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func readManifest(t *testing.T, path string) *v1.Manifest {
	t.Helper()
	m, err := v1.ParseManifest(bytes.NewReader(mustRead(t, path)))
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return m
}

func TestLayout(t *testing.T) {
	needFUSE(t)
	host := startGGCR(t, nil)
	repo := host + "/test/layout"
	tags := pushSeed(t, repo)
	m := mount(t, repo)

	t.Run("tags", func(t *testing.T) {
		ents, err := os.ReadDir(m.path("tags"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		if want := []string{"image", "multi", "v1", "vostok"}; !slices.Equal(names, want) {
			t.Errorf("tags/ lists %v, want %v", names, want)
		}
		for tag, d := range tags {
			p := m.path("tags/" + tag)
			fi, err := os.Lstat(p)
			if err != nil {
				t.Errorf("lstat %s: %v", p, err)
				continue
			}
			if fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s is %v, want a symlink", p, fi.Mode())
			}
			target, err := os.Readlink(p)
			if err != nil {
				t.Errorf("readlink %s: %v", p, err)
			} else if want := "../manifests/" + d; target != want {
				t.Errorf("readlink %s = %q, want %q", p, target, want)
			}
		}
	})

	vostokFile := m.path("tags/vostok/vostok.icecore.co2")
	t.Run("vostok bytes", func(t *testing.T) {
		if got := mustRead(t, vostokFile); !bytes.Equal(got, seed.Vostok()) {
			t.Errorf("%s: %d bytes (sha256 %s), want the fixture's %d bytes", vostokFile, len(got), sha256Hex(got), len(seed.Vostok()))
		}
		for _, rel := range []string{"sha256/" + vostokHex, "sha256/94/12/" + vostokHex} {
			if got := sha256sum(t, m.path(rel)); got != vostokHex {
				t.Errorf("sha256sum %s = %s, want %s", rel, got, vostokHex)
			}
		}
		ino := inode(t, vostokFile)
		for _, rel := range []string{"sha256/" + vostokHex, "sha256/94/12/" + vostokHex} {
			if got := inode(t, m.path(rel)); got != ino {
				t.Errorf("inode of %s = %d, want %d (as tags/vostok/vostok.icecore.co2)", rel, got, ino)
			}
		}
	})

	t.Run("xattrs", func(t *testing.T) {
		mustRead(t, vostokFile)
		names := listxattr(t, vostokFile)
		for _, want := range []string{"user.hashfs.digest", "user.hashfs.mediatype", "user.hashfs.cached", "user.hashfs.verified"} {
			if !slices.Contains(names, want) {
				t.Errorf("listxattr %s = %v, missing %s", vostokFile, names, want)
			}
		}
		mf := readManifest(t, m.path("tags/vostok/manifest.json"))
		if len(mf.Layers) != 1 {
			t.Fatalf("vostok manifest has %d layers, want 1", len(mf.Layers))
		}
		want := map[string]string{
			"user.hashfs.digest":    "sha256:" + vostokHex,
			"user.hashfs.mediatype": string(mf.Layers[0].MediaType),
			"user.hashfs.verified":  "true", // after a whole read
			"user.hashfs.cached":    strconv.Itoa(len(seed.Vostok())),
		}
		for name, w := range want {
			if got, err := getxattr(vostokFile, name); err != nil || got != w {
				t.Errorf("getxattr %s %s = %q, %v; want %q", vostokFile, name, got, err, w)
			}
		}
		if _, err := getxattr(vostokFile, "user.hashfs.nope"); !errors.Is(err, unix.ENODATA) {
			t.Errorf("getxattr of an unknown attribute: %v, want ENODATA", err)
		}
	})

	t.Run("sha256 listing", func(t *testing.T) {
		ents, err := os.ReadDir(m.path("sha256"))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range ents {
			if _, err := os.Lstat(m.path("sha256/" + e.Name())); err != nil {
				t.Errorf("lstat of listed sha256/%s: %v", e.Name(), err)
			}
			if e.Name() == vostokHex {
				found = true
			}
		}
		if !found {
			t.Errorf("sha256/ does not list %s after it was read (%d entries)", vostokHex, len(ents))
		}
		out := runCmd(t, "ls", "-l", m.path("sha256"))
		if !strings.Contains(out, vostokHex) {
			t.Errorf("ls -l sha256/ does not show %s:\n%s", vostokHex, out)
		}
	})

	t.Run("v1 manifest", func(t *testing.T) {
		dir := m.path("manifests/" + tags["v1"])
		raw := mustRead(t, filepath.Join(dir, "manifest.json"))
		if got := "sha256:" + sha256Hex(raw); got != tags["v1"] {
			t.Errorf("manifest.json hashes to %s, want %s", got, tags["v1"])
		}
		if _, err := os.Stat(m.path("tags/v1/data/notes.txt")); err != nil {
			t.Errorf("tags/v1/data/notes.txt: %v", err)
		}
		mf := readManifest(t, filepath.Join(dir, "manifest.json"))
		titles := map[string]bool{}
		for _, l := range append([]v1.Descriptor{mf.Config}, mf.Layers...) {
			p := filepath.Join(dir, "blobs", l.Digest.String())
			fi, err := os.Stat(p)
			if err != nil {
				t.Errorf("blobs/%s: %v", l.Digest, err)
				continue
			}
			if fi.Size() != l.Size {
				t.Errorf("blobs/%s has size %d, want %d", l.Digest, fi.Size(), l.Size)
			}
			if got := "sha256:" + sha256Hex(mustRead(t, p)); got != l.Digest.String() {
				t.Errorf("blobs/%s hashes to %s", l.Digest, got)
			}
			if title := l.Annotations["org.opencontainers.image.title"]; title != "" {
				titles[title] = true
				if got := "sha256:" + sha256Hex(mustRead(t, filepath.Join(dir, title))); got != l.Digest.String() {
					t.Errorf("%s hashes to %s, want %s", title, got, l.Digest)
				}
			}
		}
		for _, want := range []string{"vostok.icecore.co2", "README.txt", "data/notes.txt"} {
			if !titles[want] {
				t.Errorf("v1 manifest has no layer titled %q", want)
			}
		}
		ents, err := os.ReadDir(filepath.Join(dir, "blobs"))
		if err != nil {
			t.Fatal(err)
		}
		distinct := map[string]bool{mf.Config.Digest.String(): true}
		for _, l := range mf.Layers {
			distinct[l.Digest.String()] = true
		}
		for _, e := range ents {
			if !distinct[e.Name()] {
				t.Errorf("blobs/ lists %s, which the manifest does not name", e.Name())
			}
		}
		if len(ents) != len(distinct) {
			t.Errorf("blobs/ lists %d entries, want %d (config and layers)", len(ents), len(distinct))
		}
	})

	t.Run("config.json", func(t *testing.T) {
		if _, err := os.Stat(m.path("tags/vostok/config.json")); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("ORAS artifact with an empty config: stat config.json = %v, want ENOENT", err)
		}
		mf := readManifest(t, m.path("tags/image/manifest.json"))
		got := mustRead(t, m.path("tags/image/config.json"))
		if d := "sha256:" + sha256Hex(got); d != mf.Config.Digest.String() {
			t.Errorf("tags/image/config.json hashes to %s, want %s", d, mf.Config.Digest)
		}
	})

	t.Run("index", func(t *testing.T) {
		dir := m.path("tags/multi")
		raw := mustRead(t, filepath.Join(dir, "index.json"))
		if got := "sha256:" + sha256Hex(raw); got != tags["multi"] {
			t.Errorf("index.json hashes to %s, want %s", got, tags["multi"])
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		links := map[string]string{} // name -> child digest
		for _, c := range idx.Manifests {
			switch {
			case c.Platform == nil:
				links[c.Digest.String()] = c.Digest.String()
			case c.Platform.Variant != "":
				links[c.Platform.OS+"-"+c.Platform.Architecture+"-"+c.Platform.Variant] = c.Digest.String()
			default:
				links[c.Platform.OS+"-"+c.Platform.Architecture] = c.Digest.String()
			}
		}
		for _, want := range []string{"linux-amd64", "linux-arm64-v8"} {
			if links[want] == "" {
				t.Errorf("the multi index has no %s entry: %v", want, links)
			}
		}
		if len(links) != 3 {
			t.Errorf("the multi index has %d distinct entries, want 3 (two platforms and one without)", len(links))
		}
		for name, child := range links {
			p := filepath.Join(dir, name)
			target, err := os.Readlink(p)
			if err != nil {
				t.Errorf("readlink %s: %v", name, err)
				continue
			}
			if want := "../" + child; target != want {
				t.Errorf("readlink %s = %q, want %q", name, target, want)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Errorf("stat through %s: %v", name, err)
				continue
			}
			if !fi.IsDir() {
				t.Errorf("%s resolves to %v, want a directory", name, fi.Mode())
			}
			if _, err := os.Stat(filepath.Join(p, "manifest.json")); err != nil {
				t.Errorf("%s/manifest.json: %v", name, err)
			}
		}
	})

	t.Run("read-only", func(t *testing.T) {
		existing := vostokFile
		cases := []struct {
			name string
			op   func() error
		}{
			{"write existing", func() error { return os.WriteFile(existing, []byte("x"), 0o644) }},
			{"create new", func() error { return os.WriteFile(m.path("new.txt"), []byte("x"), 0o644) }},
			{"create in tags", func() error { return os.WriteFile(m.path("tags/new"), []byte("x"), 0o644) }},
			{"open O_RDWR", func() error {
				f, err := os.OpenFile(existing, os.O_RDWR, 0)
				if err == nil {
					f.Close()
				}
				return err
			}},
			{"mkdir", func() error { return os.Mkdir(m.path("sha256/newdir"), 0o755) }},
			{"remove file", func() error { return os.Remove(existing) }},
			{"remove tag", func() error { return os.Remove(m.path("tags/vostok")) }},
			{"rename", func() error { return os.Rename(existing, m.path("tags/vostok/renamed")) }},
			{"chmod", func() error { return os.Chmod(existing, 0o777) }},
			{"truncate", func() error { return os.Truncate(existing, 0) }},
			{"symlink", func() error { return os.Symlink("x", m.path("tags/newlink")) }},
			{"setxattr", func() error { return unix.Setxattr(existing, "user.hashfs.digest", []byte("sha256:00"), 0) }},
		}
		for _, c := range cases {
			var err error
			withTimeout(t, c.name, func() { err = c.op() })
			if !errors.Is(err, syscall.EROFS) {
				t.Errorf("%s: %v, want EROFS", c.name, err)
			}
		}
		if got := mustRead(t, existing); !bytes.Equal(got, seed.Vostok()) {
			t.Errorf("%s changed after the write attempts", existing)
		}
	})

	t.Run("not found", func(t *testing.T) {
		unknown := sha256Hex([]byte("never pushed"))
		cases := []string{
			"sha256/zz",
			"sha256/" + vostokHex[:63],
			"sha256/" + strings.ToUpper(vostokHex),
			"sha256/" + vostokHex + "0",
			"sha256/" + unknown,
			"sha256/" + unknown[:2] + "/" + unknown[2:4] + "/" + unknown,
			"sha256/94/13/" + vostokHex, // wrong shard for this digest
			"manifests/sha256:bad",
			"manifests/" + vostokHex,
			"manifests/sha256:" + unknown,
			"tags/no-such-tag",
			"tags/...",
			"tags/vostok/no-such-file",
			"nope",
		}
		for _, rel := range cases {
			var err error
			withTimeout(t, "stat "+rel, func() { _, err = os.Stat(m.path(rel)) })
			if !errors.Is(err, syscall.ENOENT) {
				t.Errorf("stat %s: %v, want ENOENT", rel, err)
			}
		}
		// ".." is resolved by the kernel: tags/.. is the mount's root.
		if a, b := inode(t, m.path("tags/..")), inode(t, m.dir); a != b {
			t.Errorf("tags/.. has inode %d, the root %d", a, b)
		}
	})
}
