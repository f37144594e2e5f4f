package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// passthroughOpens counts the opens the daemon answered with a
// passthrough backing file, from its --fuse-debug log.
func passthroughOpens(m *mnt) int {
	return len(regexp.MustCompile(`backing=\d+ PASSTHROUGH`).FindAllString(m.stderr(), -1))
}

// epollHackNode is the node id of go-fuse's own probe file (it opens
// and releases ".go-fuse-epoll-hack" at mount): not a file of ours.
const epollHackNode = "18446744073709551615"

// fuseReleases counts the RELEASE requests of our files that reached the
// daemon, and how many of those it has answered (its handler has run, so
// the handle no longer counts as open).
func fuseReleases(m *mnt) (received, answered int) {
	log := m.stderr()
	for _, r := range regexp.MustCompile(`rx (\d+): RELEASE n(\d+)`).FindAllStringSubmatch(log, -1) {
		if r[2] == epollHackNode {
			continue
		}
		received++
		if strings.Contains(log, "tx "+r[1]+":") {
			answered++
		}
	}
	return received, answered
}

// fuseReads counts the READ requests that reached the daemon.
func fuseReads(m *mnt) int {
	return len(regexp.MustCompile(`rx \d+: READ n`).FindAllString(m.stderr(), -1))
}

// TestPassthroughStrict: as root, a strict open of a cold blob waits for
// its verification and hands the kernel the cache's verified file: the
// right bytes arrive and no READ reaches the daemon, also for a second
// open and after a restart (TestStampedRestart: the file is stamped).
func TestPassthroughStrict(t *testing.T) {
	needFUSE(t)
	if os.Geteuid() != 0 {
		missing(t, "FUSE passthrough needs CAP_SYS_ADMIN")
		return
	}
	host := startGGCR(t, nil)
	repo := host + "/test/passthrough"
	data := randomBytes(t, 5<<20+333)
	hexd := strings.TrimPrefix(pushFile(t, repo, "v1", "blob.bin", data), "sha256:")
	m := mount(t, repo, "--chunk-size", "256KiB", "--fuse-debug")
	if strings.Contains(m.stderr(), "FUSE passthrough off") {
		t.Skipf("the kernel refused passthrough: %s", firstLine(m.stderr(), "FUSE passthrough off"))
	}
	file := m.path("sha256/" + hexd)
	// st_blksize is the chunk size, so cat and stdio read whole chunks.
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err != nil || st.Blksize != 256<<10 {
		t.Errorf("stat: st_blksize %d (err %v), want the chunk size %d", st.Blksize, err, 256<<10)
	}
	for i := 0; i < 2; i++ {
		if got := mustRead(t, file); !bytes.Equal(got, data) {
			t.Fatalf("read %d: wrong bytes", i)
		}
	}
	if n, r := passthroughOpens(m), fuseReads(m); n < 2 || r != 0 {
		t.Errorf("%d passthrough opens and %d READs reached the daemon; want 2 and 0", n, r)
	}

	dir, cacheDir := m.dir, m.cacheDir
	if exited, err := m.terminate(); !exited || err != nil {
		t.Fatalf("daemon did not stop: %v", err)
	}
	m2 := mountAt(t, dir, cacheDir, repo, "--chunk-size", "256KiB", "--fuse-debug", "--debug")
	if got := mustRead(t, file); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes after a restart")
	}
	if n, r := passthroughOpens(m2), fuseReads(m2); n != 1 || r != 0 {
		t.Errorf("after a restart: %d passthrough opens and %d READs; want 1 and 0", n, r)
	}
	if strings.Contains(m2.stderr(), "blob verified") {
		t.Error("the blob was fetched and verified again after the restart")
	}
}

// TestPassthroughMixedOpens: the kernel fails an open with EIO if one
// inode has passthrough and ordinary opens at once. A lazy open of a
// blob not verified yet is ordinary; opens while it stays open must be
// ordinary too, even after the blob verified, and the first open once it
// is closed gets the backing file.
func TestPassthroughMixedOpens(t *testing.T) {
	needFUSE(t)
	if os.Geteuid() != 0 {
		missing(t, "FUSE passthrough needs CAP_SYS_ADMIN")
		return
	}
	host := startGGCR(t, nil)
	repo := host + "/test/ptmixed"
	data := randomBytes(t, 8<<20)
	hexd := strings.TrimPrefix(pushFile(t, repo, "v1", "blob.bin", data), "sha256:")
	m := mount(t, repo, "--verify", "lazy", "--lazy-verify-max", "1MiB", "--chunk-size", "1MiB", "--fuse-debug")
	if strings.Contains(m.stderr(), "FUSE passthrough off") {
		t.Skipf("the kernel refused passthrough: %s", firstLine(m.stderr(), "FUSE passthrough off"))
	}
	file := m.path("sha256/" + hexd)
	first, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	buf := make([]byte, 4096)
	if _, err := first.ReadAt(buf, 3<<20); err != nil || !bytes.Equal(buf, data[3<<20:3<<20+4096]) {
		t.Fatalf("lazy read: %v", err)
	}
	if !waitFor(30*time.Second, func() bool {
		v, err := getxattr(file, "user.hashfs.verified")
		return err == nil && v == "true"
	}) {
		t.Fatal("the blob did not verify in the background")
	}
	if got := mustRead(t, file); !bytes.Equal(got, data) { // while first is open
		t.Fatal("wrong bytes from a second open")
	}
	if n := passthroughOpens(m); n != 0 {
		t.Errorf("%d passthrough opens while an ordinary open was held", n)
	}
	first.Close()
	// The kernel sends RELEASE after close returns, in the background: an
	// open that overtakes it, or comes before the daemon has answered it,
	// still finds an ordinary handle.
	if !waitFor(5*time.Second, func() bool { _, answered := fuseReleases(m); return answered >= 2 }) {
		received, answered := fuseReleases(m)
		t.Fatalf("%d RELEASEs answered (%d received) after two opens were closed", answered, received)
	}
	if got := mustRead(t, file); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes once the first open was closed")
	}
	if n := passthroughOpens(m); n != 1 {
		t.Errorf("%d passthrough opens once every ordinary open was closed, want 1", n)
	}
}

// TestStampedRestart: a daemon that verified a blob stamps its cache
// file before it exits (cache/stamp.go); the next daemon hands the
// kernel the unchanged file without hashing it, and a file changed while
// no daemon ran is hashed first: the changed chunk is fetched again from
// the registry, readers get the blob's bytes, and the file is stamped
// again.
func TestStampedRestart(t *testing.T) {
	needFUSE(t)
	if os.Geteuid() != 0 {
		missing(t, "FUSE passthrough needs CAP_SYS_ADMIN")
		return
	}
	host, _ := startDistribution(t)
	p := newProxy(t, host)
	data := randomBytes(t, 6<<20+77)
	hexd := strings.TrimPrefix(pushFile(t, host+"/test/stamped", "v1", "blob.bin", data), "sha256:")
	repo := p.host + "/test/stamped"
	args := []string{"--chunk-size", "256KiB"}
	m := mount(t, repo, args...)
	if strings.Contains(m.stderr(), "FUSE passthrough off") {
		t.Skipf("the kernel refused passthrough: %s", firstLine(m.stderr(), "FUSE passthrough off"))
	}
	file := m.path("sha256/" + hexd)
	if got := mustRead(t, file); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes from a cold read")
	}
	dir, cacheDir := m.dir, m.cacheDir
	stop := func(m *mnt) {
		t.Helper()
		if exited, err := m.terminate(); !exited || err != nil {
			t.Fatalf("daemon did not stop: %v", err)
		}
	}
	stop(m)
	blobDir := filepath.Join(cacheDir, "chunks", hexd[:2], hexd)
	if _, err := os.Stat(filepath.Join(blobDir, "stamp")); err != nil {
		t.Fatalf("no stamp once the daemon that verified the blob stopped: %v", err)
	}
	steps := []struct {
		name    string
		change  func(t *testing.T)
		stamped string // in the "cache opened" log line
		gets    int64  // blob GETs for the read
	}{
		{name: "file unchanged", stamped: "stamped_blobs=1", gets: 0},
		{name: "one byte changed while no daemon ran", change: func(t *testing.T) {
			f, err := os.OpenFile(filepath.Join(blobDir, "blob"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{^data[3<<20+5]}, 3<<20+5); err != nil {
				t.Fatal(err)
			}
		}, stamped: "stamped_blobs=0", gets: 1},
		{name: "hashed again and stamped again", stamped: "stamped_blobs=1", gets: 0},
	}
	for _, st := range steps {
		if st.change != nil {
			st.change(t)
		}
		g0 := p.gets.Load()
		m := mountAt(t, dir, cacheDir, repo, args...)
		if got := mustRead(t, file); !bytes.Equal(got, data) {
			t.Errorf("%s: wrong bytes after the restart", st.name)
		}
		if !strings.Contains(m.stderr(), st.stamped) {
			t.Errorf("%s: the cache did not open with %s: %s", st.name, st.stamped, firstLine(m.stderr(), "cache opened"))
		}
		if n := p.gets.Load() - g0; n != st.gets {
			t.Errorf("%s: %d blob GETs, want %d", st.name, n, st.gets)
		}
		stop(m)
	}
}
