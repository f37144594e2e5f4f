package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mountTimeout bounds how long a daemon may take to show its mount.
const mountTimeout = 20 * time.Second

// daemonLifetime bounds how long any daemon may run before it is killed.
const daemonLifetime = 8 * time.Minute

// mnt is one running hashfs daemon and its mount.
type mnt struct {
	t        *testing.T
	dir      string // the mountpoint
	cacheDir string
	cmd      *exec.Cmd
	out      *syncBuffer // standard output
	errBuf   *syncBuffer // standard error
	exited   chan struct{}
	waitErr  error
	mountID  string // from /proc/self/mountinfo
	killed   bool   // kill9 was called: no clean exit is expected
}

// mount runs `hashfs mount --cache-dir <tmp> args... repo <tmp>` and
// waits for the mount.
func mount(t *testing.T, repo string, args ...string) *mnt {
	t.Helper()
	return mountAt(t, t.TempDir(), t.TempDir(), repo, args...)
}

// mountAt is mount with a chosen mountpoint and cache directory.
func mountAt(t *testing.T, dir, cacheDir, repo string, args ...string) *mnt {
	t.Helper()
	needFUSE(t)
	argv := append([]string{"mount", "--cache-dir", cacheDir}, args...)
	argv = append(argv, repo, dir)
	return startDaemon(t, dir, cacheDir, argv...)
}

// startDaemon starts the binary with argv, waits until a new fuse.hashfs
// mount shows up at dir and registers the clean-shutdown check.
func startDaemon(t *testing.T, dir, cacheDir string, argv ...string) *mnt {
	t.Helper()
	// A stale mount at dir answers ENOTCONN to lstat: keep dir as given then.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	before := map[string]bool{}
	for _, e := range mountsAt(t, dir) {
		before[e.id] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), daemonLifetime)
	m := &mnt{t: t, dir: dir, cacheDir: cacheDir, out: &syncBuffer{}, errBuf: &syncBuffer{}, exited: make(chan struct{})}
	m.cmd = exec.CommandContext(ctx, hashfsBin, argv...)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.errBuf
	// No credentials of this machine's user may leak into the tests.
	m.cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir(), "REGISTRY_AUTH_FILE="+filepath.Join(t.TempDir(), "auth.json"))
	if err := m.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start hashfs: %v", err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		cancel()
		close(m.exited)
	}()
	t.Cleanup(m.shutdown)

	deadline := time.Now().Add(mountTimeout)
	for {
		for _, e := range mountsAt(t, dir) {
			// A mount id may be reused once a stale mount is detached, so
			// an old id counts when the mount answers statfs again.
			if e.fstype == "fuse.hashfs" && (!before[e.id] || liveMount(dir)) {
				m.mountID = e.id
				return m
			}
		}
		select {
		case <-m.exited:
			t.Fatalf("hashfs %s exited before mounting (%v); stderr:\n%s", strings.Join(argv, " "), m.waitErr, m.stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no fuse.hashfs mount at %s within %v; stderr:\n%s", dir, mountTimeout, m.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// path is the absolute path of rel inside the mount.
func (m *mnt) path(rel string) string { return filepath.Join(m.dir, rel) }

// stderr is what the daemon wrote to standard error so far.
func (m *mnt) stderr() string { return m.errBuf.String() }

// stdout is what the daemon wrote to standard output so far.
func (m *mnt) stdout() string { return m.out.String() }

// kill9 kills the daemon with SIGKILL and waits for it to be gone,
// leaving its mount stale.
func (m *mnt) kill9() {
	m.t.Helper()
	m.killed = true
	if err := m.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		m.t.Fatalf("kill -9: %v", err)
	}
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		m.t.Fatalf("hashfs did not die after SIGKILL")
	}
}

// terminate sends SIGTERM and waits up to 10s for the daemon to exit. It
// reports whether the daemon exited in time, and its exit error.
func (m *mnt) terminate() (bool, error) {
	select {
	case <-m.exited:
		return true, m.waitErr
	default:
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return false, err
	}
	select {
	case <-m.exited:
		return true, m.waitErr
	case <-time.After(10 * time.Second):
		return false, fmt.Errorf("no exit within 10s of SIGTERM")
	}
}

// mounted reports whether this daemon's mount is still in the mount table.
func (m *mnt) mounted() bool {
	for _, e := range mountsAt(m.t, m.dir) {
		if e.id == m.mountID {
			return true
		}
	}
	return false
}

// shutdown is the cleanup: SIGTERM, a clean exit 0 and no mount left.
// Whatever happens, nothing stays mounted or running.
func (m *mnt) shutdown() {
	t := m.t
	if !m.killed {
		ok, err := m.terminate()
		switch {
		case !ok:
			t.Errorf("hashfs did not exit after SIGTERM: %v", err)
		case err != nil:
			t.Errorf("hashfs exited with %v after SIGTERM", err)
		case m.mounted():
			t.Errorf("hashfs exited but its mount at %s is still there", m.dir)
		}
	}
	select {
	case <-m.exited:
	default:
		m.cmd.Process.Kill()
		<-m.exited
	}
	if m.mounted() {
		detach(m.dir)
	}
	if t.Failed() {
		t.Logf("hashfs stderr (%s):\n%s", m.dir, m.stderr())
	}
}

// detach lazily unmounts dir, with fusermount3 or umount.
func detach(dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if exec.CommandContext(ctx, "fusermount3", "-u", "-z", dir).Run() == nil {
		return
	}
	exec.CommandContext(ctx, "umount", "-l", dir).Run()
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	id, point, fstype, source string
}

// mountsAt lists the mounts whose mount point is dir.
func mountsAt(t *testing.T, dir string) []mountEntry {
	t.Helper()
	var all []mountEntry
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		e, ok := parseMountinfo(sc.Text())
		if ok && e.point == dir {
			all = append(all, e)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return all
}

// parseMountinfo parses "id parent maj:min root point opts [tags] - fstype source superopts".
func parseMountinfo(line string) (mountEntry, bool) {
	pre, post, ok := strings.Cut(line, " - ")
	if !ok {
		return mountEntry{}, false
	}
	a, b := strings.Fields(pre), strings.Fields(post)
	if len(a) < 5 || len(b) < 2 {
		return mountEntry{}, false
	}
	return mountEntry{id: a[0], point: unescapeMount(a[4]), fstype: b[0], source: b[1]}, true
}

// unescapeMount undoes the octal escapes (\040 and friends) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// syncBuffer is a bytes.Buffer safe for a writing process and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// liveMount reports whether a FUSE filesystem at dir answers statfs (a
// dead FUSE mount answers ENOTCONN; once detached, statfs reaches the
// directory underneath, which is not FUSE).
func liveMount(dir string) bool {
	const fuseSuperMagic = 0x65735546
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == fuseSuperMagic
}
