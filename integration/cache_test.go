package integration

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// forgetPages asks the kernel to forget the cached pages of one file, so
// that the next read goes to the daemon again.
func forgetPages(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Logf("fadvise DONTNEED %s: %v", path, err)
	}
}

// checkCachePerms asserts that the cache directory is private: 0700
// directories and 0600 files.
func checkCachePerms(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		perm := fi.Mode().Perm()
		switch {
		case d.IsDir() && perm != 0o700:
			t.Errorf("cache directory %s has mode %v, want 0700", p, perm)
		case fi.Mode().IsRegular() && perm != 0o600:
			t.Errorf("cache file %s has mode %v, want 0600", p, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
}

// TestCacheBudget reads more than the cache may hold: the chunk files
// never exceed --cache-max-size and evicted blobs read correctly again.
func TestCacheBudget(t *testing.T) {
	needFUSE(t)
	host := startGGCR(t, nil)
	repo := host + "/test/budget"
	const n, size, budget = 4, 6 << 20, 8 << 20
	digests := make([]string, n)
	for i := range digests {
		digests[i] = pushFile(t, repo, fmt.Sprintf("a%d", i), "blob.bin", randomBytes(t, size))
	}
	m := mount(t, repo, "--cache-max-size", "8MiB", "--chunk-size", "1MiB")
	chunks := filepath.Join(m.cacheDir, "chunks")

	check := func(i int, what string) {
		t.Helper()
		p := m.path(fmt.Sprintf("tags/a%d/blob.bin", i))
		if got := "sha256:" + hashFile(t, p); got != digests[i] {
			t.Errorf("%s a%d: hashes to %s, want %s", what, i, got, digests[i])
		}
		if used := dirBytes(t, chunks); used > budget {
			t.Errorf("after %s a%d the chunk files hold %d bytes, over the %d budget", what, i, used, budget)
		} else {
			t.Logf("after %s a%d the chunk files hold %d bytes", what, i, used)
		}
	}
	for i := range digests {
		check(i, "reading")
	}
	forgetPages(t, m.path("tags/a0/blob.bin"))
	check(0, "re-reading")
	checkCachePerms(t, m.cacheDir)
}

// TestKill9Remount kills the daemon in the middle of six reads, remounts
// on the same stale mountpoint with the same cache and reads everything
// correctly; no chunk is left without its table.
func TestKill9Remount(t *testing.T) {
	needFUSE(t)
	// Once shut, the registry answers each blob's first GET (a
	// verification's lone first span) and holds the rest until the gate
	// opens, so the readers are still waiting when the daemon is killed,
	// however fast the machine: a fixed pause of 300 ms let all six
	// finish first on a fast one.
	blobs := &gate{}
	var mu sync.Mutex
	armed, seen, held := false, map[string]bool{}, 0 // seen: blobs whose first GET went through
	host := startGGCR(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				mu.Lock()
				hold := armed && seen[r.URL.Path]
				seen[r.URL.Path] = armed
				if hold {
					held++
				}
				mu.Unlock()
				if hold && !blobs.wait(r.Context()) {
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	t.Cleanup(blobs.open) // before the registry closes
	repo := host + "/test/kill9"
	const n, size = 6, 16 << 20
	digests := make([]string, n)
	for i := range digests {
		digests[i] = pushFile(t, repo, fmt.Sprintf("k%d", i), "blob.bin", randomBytes(t, size))
	}
	mu.Lock()
	armed = true
	blobs.hold()
	mu.Unlock()
	m := mount(t, repo)
	dir, cacheDir := m.dir, m.cacheDir

	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cats := make([]*exec.Cmd, n)
	done := make(chan error, n)
	for i := range cats {
		cats[i] = exec.CommandContext(ctx, "cat", m.path(fmt.Sprintf("tags/k%d/blob.bin", i)))
		if err := cats[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cats {
		go func() { done <- c.Wait() }()
	}
	// Every blob takes more than one GET, so from the first one held no
	// reader can finish (the cache-wide bound on spans in flight can keep
	// some blobs from their first GET until others are done).
	if !waitFor(cmdTimeout, func() bool { mu.Lock(); defer mu.Unlock(); return held > 0 }) {
		t.Fatal("the registry held no blob GET")
	}
	finishedBefore := len(done)
	m.kill9()
	blobs.open()
	t.Logf("%d of %d readers had finished when the daemon was killed", finishedBefore, n)
	if finishedBefore != 0 {
		t.Errorf("%d readers were done before the kill: the test did not interrupt them", finishedBefore)
	}

	// The mount is stale: the kernel answers for it without a daemon.
	var serr, rerr error
	withTimeout(t, "stat of the stale mountpoint", func() {
		_, serr = os.Stat(dir)
		_, rerr = os.ReadDir(dir)
	})
	if !errors.Is(serr, syscall.ENOTCONN) {
		t.Errorf("stat of the mountpoint after kill -9: %v, want ENOTCONN", serr)
	}
	if !errors.Is(rerr, syscall.ENOTCONN) {
		t.Errorf("listing the mountpoint after kill -9: %v, want ENOTCONN", rerr)
	}
	failed := 0
	for range cats {
		if err := <-done; err != nil {
			failed++
		}
	}
	t.Logf("%d of %d readers failed because of the kill", failed, n)

	m2 := mountAt(t, dir, cacheDir, repo)
	if ms := mountsAt(t, dir); len(ms) != 1 {
		t.Errorf("after the remount %s has %d mounts stacked (%v), want the stale one detached", dir, len(ms), ms)
	}
	for i, d := range digests {
		p := m2.path(fmt.Sprintf("tags/k%d/blob.bin", i))
		if got := "sha256:" + sha256sum(t, p); got != d {
			t.Errorf("after the remount k%d hashes to %s, want %s", i, got, d)
		}
	}

	chunkDirs, err := filepath.Glob(filepath.Join(cacheDir, "chunks", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cd := range chunkDirs {
		files, _ := os.ReadDir(cd)
		if len(files) == 0 {
			continue
		}
		hexd := filepath.Base(cd)
		if _, err := os.Stat(filepath.Join(cacheDir, "tables", hexd)); err != nil {
			t.Errorf("chunks of %s (%d files) have no table: %v", hexd, len(files), err)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(cacheDir, "tmp")); len(tmp) > 0 {
		var names []string
		for _, e := range tmp {
			names = append(names, e.Name())
		}
		t.Logf("cache tmp/ holds %d entries after the remount: %s", len(tmp), strings.Join(names, " "))
	}
}
