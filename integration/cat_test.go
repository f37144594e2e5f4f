package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/seed"
)

// flipBlobs corrupts the first byte of every blob body a registry sends.
func flipBlobs(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(&flipWriter{ResponseWriter: w}, r)
	})
}

// flipWhen corrupts blob bodies like flipBlobs while *on is true.
func flipWhen(on *atomic.Bool) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		flipped := flipBlobs(h)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if on.Load() {
				flipped.ServeHTTP(w, r)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

type flipWriter struct {
	http.ResponseWriter
	done bool
}

func (f *flipWriter) Write(b []byte) (int, error) {
	if !f.done && len(b) > 0 {
		f.done = true
		c := bytes.Clone(b)
		c[0] ^= 0xff
		return f.ResponseWriter.Write(c)
	}
	return f.ResponseWriter.Write(b)
}

// hashfsCmd runs the binary and returns stdout, stderr and the error.
func hashfsCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, hashfsBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// TestCatAndResolve: hashfs cat finds an id across sources in order,
// skipping one without it and one serving corrupted bytes, and writes
// nothing at all when no source verifies; hashfs resolve finds the id in
// a mount. Every id form works; bad ids fail clearly.
func TestCatAndResolve(t *testing.T) {
	vostok := seed.Vostok()
	sum := sha256.Sum256(vostok)
	hex := sha256Hex(vostok)
	empty := startGGCR(t, nil) + "/cat/data"
	good := startGGCR(t, nil) + "/cat/data"
	bad := startGGCR(t, flipBlobs) + "/cat/data"
	pushFile(t, good, "v1", "vostok.icecore.co2", vostok)
	pushFile(t, bad, "v1", "vostok.icecore.co2", vostok)
	pushFile(t, empty, "other", "other.bin", []byte("not the blob"))

	ids := []string{"hash://sha256/" + hex, "sha256:" + hex, hex, "sha256-" + base64.StdEncoding.EncodeToString(sum[:])}
	for _, id := range ids {
		out, errs, err := hashfsCmd(t, "cat", id, empty, bad, good)
		if err != nil || out != string(vostok) {
			t.Errorf("cat %s: %d bytes, err %v, want the fixture\n%s", id, len(out), err, errs)
		}
		// Both the source without the blob and the one whose bytes do not
		// verify are named as skipped.
		if strings.Count(errs, "trying the next") != 2 || !strings.Contains(errs, "content hashes to") {
			t.Errorf("cat %s: stderr does not say both sources were skipped, one for its bytes:\n%s", id, errs)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"only a corrupting source", []string{"cat", ids[0], bad}, "no source gave verified bytes"},
		{"id nowhere", []string{"cat", "sha256:" + strings.Repeat("0", 64), empty, good}, "no source gave verified bytes"},
		{"malformed id", []string{"cat", "hash://md5/abc", good}, "want hash://sha256/<hex>"},
		{"bad repository", []string{"cat", ids[0], "Bad//Repo"}, "repository"},
		{"a whole registry", []string{"cat", ids[0], "127.0.0.1:1"}, "whole registry"},
		{"not a layout", []string{"cat", ids[0], "oci:" + t.TempDir()}, "oci-layout"},
	} {
		out, errs, err := hashfsCmd(t, tc.args...)
		if err == nil || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %v, %d bytes on stdout, stderr %q; want a non-zero exit, no output, %q", tc.name, err, len(out), errs, tc.want)
		}
	}

	// A local OCI layout is a source too.
	layoutDir := filepath.Join(t.TempDir(), "layout")
	writeLayout(t, layoutDir, "v1", "vostok.icecore.co2", vostok)
	if out, errs, err := hashfsCmd(t, "cat", ids[1], empty, "oci:"+layoutDir); err != nil || out != string(vostok) {
		t.Errorf("cat from an oci: layout: %d bytes, %v\n%s", len(out), err, errs)
	}

	m := mount(t, good)
	want := filepath.Join(m.dir, "sha256", hex)
	for _, args := range [][]string{{"resolve", "--mount", m.dir, ids[3]}, {"resolve", ids[0]}} {
		out, errs, err := hashfsCmd(t, args...)
		if err != nil || strings.TrimSpace(out) != want {
			t.Errorf("%v = %q, %v (%s), want %s", args, out, err, errs, want)
		}
	}
	if got := mustRead(t, want); !bytes.Equal(got, vostok) {
		t.Error("the resolved path does not read the fixture")
	}
	if out, errs, err := hashfsCmd(t, "resolve", "--mount", m.dir, strings.Repeat("0", 64)); err == nil || out != "" || !strings.Contains(errs, "not found") {
		t.Errorf("resolve of an unknown id: %q, %v, %q", out, err, errs)
	}
}

// TestCacheDirInUse: a second daemon on a cache directory that a live
// daemon owns exits with a clear line before mounting anything.
func TestCacheDirInUse(t *testing.T) {
	repo := startGGCR(t, nil) + "/lock/data"
	pushFile(t, repo, "v1", "vostok.icecore.co2", seed.Vostok())
	m := mount(t, repo)
	second := t.TempDir()
	_, errs, err := hashfsCmd(t, "mount", "--cache-dir", m.cacheDir, repo, second)
	if err == nil || !strings.Contains(errs, "in use by another hashfs process") {
		t.Fatalf("second daemon on %s: exit %v, stderr %q", m.cacheDir, err, errs)
	}
	if len(mountsAt(t, second)) != 0 {
		t.Fatal("the second daemon mounted anyway")
	}
	if got := mustRead(t, m.path("tags/v1/vostok.icecore.co2")); !bytes.Equal(got, seed.Vostok()) {
		t.Fatal("the first mount stopped serving")
	}
}

// TestUnmountCommand: hashfs unmount refuses a busy mount and a
// directory that is not a hashfs mount; once the mount is free it
// unmounts and the daemon exits 0.
func TestUnmountCommand(t *testing.T) {
	repo := startGGCR(t, nil) + "/unmount/data"
	pushFile(t, repo, "v1", "vostok.icecore.co2", seed.Vostok())
	m := mount(t, repo)
	if _, errs, err := hashfsCmd(t, "unmount", t.TempDir()); err == nil || !strings.Contains(errs, "not a hashfs mount") {
		t.Errorf("unmount of a plain directory: %v, %q", err, errs)
	}
	f, err := os.Open(m.path("tags/v1/vostok.icecore.co2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, errs, err := hashfsCmd(t, "unmount", m.dir); err == nil || !strings.Contains(errs, "--lazy") {
		t.Errorf("unmount while a file is open: %v, %q; want a refusal that suggests --lazy", err, errs)
	}
	f.Close()
	if _, errs, err := hashfsCmd(t, "unmount", m.dir); err != nil {
		t.Fatalf("unmount: %v: %s", err, errs)
	}
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not exit after its mount went away")
	}
	if err := m.cmd.ProcessState.ExitCode(); err != 0 {
		t.Errorf("daemon exit code %d after unmount", err)
	}
	if len(mountsAt(t, m.dir)) != 0 {
		t.Error("still mounted")
	}
}

// TestCacheCommands: hashfs cache ls, verify and prune on a daemon's
// cache directory once the daemon is gone; refused while it runs.
func TestCacheCommands(t *testing.T) {
	repo := startGGCR(t, nil) + "/cachecmd/data"
	data := randomBytes(t, 3<<20+123)
	hexd := strings.TrimPrefix(pushFile(t, repo, "v1", "blob.bin", data), "sha256:")
	m := mount(t, repo, "--chunk-size", "1MiB")
	if got := mustRead(t, m.path("tags/v1/blob.bin")); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes through the mount")
	}
	if _, errs, err := hashfsCmd(t, "cache", "ls", "--cache-dir", m.cacheDir); err == nil || !strings.Contains(errs, "in use") {
		t.Errorf("cache ls while the daemon runs: %v, %q", err, errs)
	}
	if exited, err := m.terminate(); !exited || err != nil {
		t.Fatalf("daemon did not stop cleanly: %v", err)
	}

	out, errs, err := hashfsCmd(t, "cache", "ls", "--cache-dir", m.cacheDir)
	wantRow := fmt.Sprintf("sha256:%s  %d  %d", hexd, len(data), len(data))
	if err != nil || !strings.Contains(strings.Join(strings.Fields(out), "  "), strings.Join(strings.Fields(wantRow), "  ")) {
		t.Errorf("cache ls = %q, %v (%s); want a row %q", out, err, errs, wantRow)
	}

	chunk := filepath.Join(m.cacheDir, "chunks", hexd[:2], hexd, "blob") // chunk i at i MiB
	raw, err := os.ReadFile(chunk)
	if err != nil {
		t.Fatal(err)
	}
	raw[2<<20+100] ^= 1
	if err := os.WriteFile(chunk, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = hashfsCmd(t, "cache", "verify", "--cache-dir", m.cacheDir)
	if err == nil || !strings.Contains(out, "4 chunks checked, 1 did not match") {
		t.Errorf("cache verify with one corrupt chunk: %q, %v", out, err)
	}
	if out, _, err = hashfsCmd(t, "cache", "verify", "--cache-dir", m.cacheDir); err != nil || !strings.Contains(out, "3 chunks checked, 0 did not match") {
		t.Errorf("cache verify after the repair: %q, %v", out, err)
	}
	out, _, err = hashfsCmd(t, "cache", "prune", "--cache-dir", m.cacheDir, "--max-size", "1MiB")
	if err != nil || !strings.Contains(out, "bytes of chunks remain") {
		t.Errorf("cache prune: %q, %v", out, err)
	}
	if n := dirBytes(t, filepath.Join(m.cacheDir, "chunks")); n > 1<<20 {
		t.Errorf("after prune to 1MiB the chunks take %d bytes", n)
	}
}
