package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/seed"
)

// TestDaemonAndFstab: "hashfs mount --daemon" returns once the mount is
// live or with the reason it failed, and mount(8) mounts a hashfs entry
// the way fstab does (mount.fuse3 runs "hashfs SOURCE MOUNTPOINT -o ..."),
// with mount flags given as options; hashfs unmount / umount end both.
func TestDaemonAndFstab(t *testing.T) {
	needFUSE(t)
	needTool(t, "mount.fuse3")
	repo := startGGCR(t, nil) + "/svc/data"
	pushFile(t, repo, "v1", "vostok.icecore.co2", seed.Vostok())
	read := func(mnt string) {
		t.Helper()
		if got := mustRead(t, filepath.Join(mnt, "tags/v1/vostok.icecore.co2")); !bytes.Equal(got, seed.Vostok()) {
			t.Fatalf("%s: wrong bytes", mnt)
		}
	}
	gone := func(mnt string) {
		t.Helper()
		if !waitFor(10*time.Second, func() bool { return len(mountsAt(t, mnt)) == 0 }) {
			t.Fatalf("%s still mounted", mnt)
		}
	}

	// --daemon
	mnt, logFile := t.TempDir(), filepath.Join(t.TempDir(), "hashfs.log")
	t.Cleanup(func() { tryCmd("umount", "-l", mnt) })
	start := time.Now()
	if _, errs, err := hashfsCmd(t, "mount", "--daemon", "--log-file", logFile, "--cache-dir", t.TempDir(), repo, mnt); err != nil {
		t.Fatalf("mount --daemon: %v: %s", err, errs)
	}
	if len(mountsAt(t, mnt)) != 1 {
		t.Fatalf("mount --daemon returned after %v but nothing is mounted", time.Since(start))
	}
	read(mnt)
	if _, errs, err := hashfsCmd(t, "unmount", mnt); err != nil {
		t.Fatalf("unmount: %v: %s", err, errs)
	}
	gone(mnt)
	if log := string(mustRead(t, logFile)); !strings.Contains(log, "mounted") {
		t.Errorf("--log-file has no mount line:\n%s", log)
	}
	_, errs, err := hashfsCmd(t, "mount", "--daemon", "--cache-dir", t.TempDir(), "127.0.0.1:1/no/registry", t.TempDir())
	if err == nil || !strings.Contains(errs, "registry unavailable") {
		t.Errorf("mount --daemon of an unreachable registry: %v, %q; want a non-zero exit with the reason", err, errs)
	}

	// mount(8), as an fstab line "<hashfs>#<repo> <mnt> fuse ro,cache_dir=...,verify=lazy 0 0" would
	fmnt := t.TempDir()
	t.Cleanup(func() { tryCmd("umount", "-l", fmnt) })
	opts := "ro,nosuid,nodev,cache_dir=" + t.TempDir() + ",verify=lazy,tag_ttl=5s"
	if out, err := tryCmd("mount", "-t", "fuse", hashfsBin+"#"+repo, fmnt, "-o", opts); err != nil {
		t.Fatalf("mount -t fuse ... -o %s: %v: %s", opts, err, out)
	}
	read(fmnt)
	if out, err := tryCmd("umount", fmnt); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}
	gone(fmnt)
	out, err := tryCmd("mount", "-t", "fuse", hashfsBin+"#"+repo, t.TempDir(), "-o", "ro,no_such_option=1")
	if err == nil || !strings.Contains(out+err.Error(), "no --no-such-option flag") {
		t.Errorf("mount with an unknown option: %v, %q", err, out)
	}
}

// TestContribUnits: the systemd units in contrib/ pass systemd-analyze
// verify (with ExecStart pointing at the binary under test). Starting
// them needs a booted systemd, which this machine does not run; the fstab
// form they use is exercised by TestDaemonAndFstab.
func TestContribUnits(t *testing.T) {
	needTool(t, "systemd-analyze")
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for src, dst := range map[string]string{"hashfs@.service": "hashfs@mnt-data.service", "mnt-data.mount": "mnt-data.mount"} {
		b := mustRead(t, filepath.Join(root, "contrib", src))
		b = bytes.ReplaceAll(b, []byte("/usr/local/bin/hashfs"), []byte(hashfsBin))
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := tryCmd("systemd-analyze", "verify", filepath.Join(dir, dst))
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify %s: %v\n%s", src, err, out)
		}
	}
}

// TestStatusAndMetrics: hashfs status and the Prometheus metrics report
// the cache use, verified blobs, registry requests and a failed read.
func TestStatusAndMetrics(t *testing.T) {
	var flip atomic.Bool
	repo := startGGCR(t, flipWhen(&flip)) + "/status/data"
	good, bad := randomBytes(t, 300<<10), randomBytes(t, 200<<10)
	pushFile(t, repo, "good", "good.bin", good)
	badDigest := pushFile(t, repo, "bad", "bad.bin", bad)
	addr := freeAddr(t)
	m := mount(t, repo, "--metrics-addr", addr)
	if got := mustRead(t, m.path("tags/good/good.bin")); !bytes.Equal(got, good) {
		t.Fatal("wrong bytes")
	}
	flip.Store(true)
	if _, err := readFile(t, m.path("tags/bad/bad.bin")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a corrupted blob: %v, want EIO", err)
	}

	out, errs, err := hashfsCmd(t, "status", "--json", m.dir)
	if err != nil {
		t.Fatalf("status: %v: %s", err, errs)
	}
	var st struct {
		Repository string
		Cache      struct {
			Usage, Max    int64
			VerifiedBlobs int
		}
		Registry struct{ Requests, BlobBytes int64 }
		Errors   int64
		Recent   []struct{ Digest, Errno string } `json:"recent_failures"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v: %q", err, out)
	}
	if st.Repository != repo || st.Cache.Usage != int64(len(good)) || st.Cache.VerifiedBlobs != 1 ||
		st.Registry.Requests == 0 || st.Registry.BlobBytes < int64(len(good)+len(bad)) || st.Errors == 0 ||
		len(st.Recent) == 0 || st.Recent[len(st.Recent)-1].Digest != badDigest {
		t.Errorf("status = %+v", st)
	}
	human, _, err := hashfsCmd(t, "status", m.dir)
	if err != nil || !strings.Contains(human, "source:      "+repo) || !strings.Contains(human, badDigest) {
		t.Errorf("status:\n%s", human)
	}
	if _, errs, err := hashfsCmd(t, "status", t.TempDir()); err == nil || !strings.Contains(errs, "not a hashfs mount") {
		t.Errorf("status of a plain directory: %v, %q", err, errs)
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf("hashfs_cache_bytes{repository=%q} %d", repo, len(good)),
		fmt.Sprintf("hashfs_cache_verified_blobs{repository=%q} 1", repo),
		"# TYPE hashfs_registry_requests_total counter",
		fmt.Sprintf("hashfs_errors_total{repository=%q} ", repo),
		fmt.Sprintf("hashfs_source_requests_total{repository=%q,source=%q} ", repo, repo),
		// The corrupted blob's bytes were rejected once, at its one read.
		fmt.Sprintf("hashfs_source_rejected_total{repository=%q,source=%q} 1\n", repo, repo),
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

// TestPullAndPrefetch: hashfs pull writes an artifact's titled files,
// verified, with hostile titles kept inside DIR, and writes nothing from a
// registry serving corrupted bytes; hashfs prefetch fetches a tree of a
// mount into its cache with progress lines.
func TestPullAndPrefetch(t *testing.T) {
	var flip atomic.Bool
	repo := startGGCR(t, flipWhen(&flip)) + "/pull/data"
	files := []seed.File{
		{Title: "vostok.icecore.co2", Data: seed.Vostok()},
		{Title: "data/big.bin", Data: randomBytes(t, 3<<20)},
		{Title: "../escape.txt", Data: []byte("must stay inside DIR\n")},
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	md, err := seed.PushArtifact(ctx, repo, "v1", files)
	if err != nil {
		t.Fatal(err)
	}

	for _, ref := range []string{repo + ":v1", repo + "@" + md.String()} {
		dir := filepath.Join(t.TempDir(), "out")
		_, errs, err := hashfsCmd(t, "pull", ref, dir)
		if err != nil || !strings.Contains(errs, "100.0%") {
			t.Fatalf("pull %s: %v\n%s", ref, err, errs)
		}
		for _, f := range files[:2] {
			if got := mustRead(t, filepath.Join(dir, f.Title)); !bytes.Equal(got, f.Data) {
				t.Errorf("pull %s: %s has wrong bytes", ref, f.Title)
			}
		}
		esc := "sha256:" + sha256Hex(files[2].Data)
		if got := mustRead(t, filepath.Join(dir, esc)); !bytes.Equal(got, files[2].Data) {
			t.Errorf("the hostile title was not kept inside DIR as %s", esc)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape.txt")); err == nil {
			t.Error("a title escaped DIR")
		}
	}

	flip.Store(true)
	dir := filepath.Join(t.TempDir(), "out")
	if _, errs, err := hashfsCmd(t, "pull", repo+":v1", dir); err == nil || !strings.Contains(errs, "content hashes to") {
		t.Errorf("pull from a corrupting registry: %v\n%s", err, errs)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		var names []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if d != nil && d.Type().IsRegular() {
				names = append(names, p)
			}
			return nil
		})
		if len(names) != 0 {
			t.Errorf("a failed pull left files: %v", names)
		}
	}
	flip.Store(false)

	m := mount(t, repo)
	_, errs, err := hashfsCmd(t, "prefetch", m.path("tags/v1/"))
	if err != nil || !strings.Contains(errs, "100.0%") {
		t.Fatalf("prefetch: %v\n%s", err, errs)
	}
	for _, f := range files[:2] {
		p := m.path("tags/v1/" + f.Title)
		if v, _ := getxattr(p, "user.hashfs.verified"); v != "true" {
			t.Errorf("%s after prefetch: verified=%q", f.Title, v)
		}
		if v, _ := getxattr(p, "user.hashfs.cached"); v != fmt.Sprint(len(f.Data)) {
			t.Errorf("%s after prefetch: cached=%q, want %d", f.Title, v, len(f.Data))
		}
	}
}

// TestOffline: after a mount has seen tags and read a file, a daemon
// started with --offline serves them from the cache and the saved tags
// without a single registry request; what was never cached is EIO.
func TestOffline(t *testing.T) {
	var requests atomic.Int64
	repo := startGGCR(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			h.ServeHTTP(w, r)
		})
	}) + "/offline/data"
	cached, uncached := randomBytes(t, 2<<20), randomBytes(t, 100<<10)
	hexd := strings.TrimPrefix(pushFile(t, repo, "v1", "cached.bin", cached), "sha256:")
	pushFile(t, repo, "v2", "uncached.bin", uncached)
	cacheDir := t.TempDir()

	m := mountAt(t, t.TempDir(), cacheDir, repo)
	if ents, err := os.ReadDir(m.path("tags")); err != nil || len(ents) != 2 {
		t.Fatalf("tags/ = %v, %v", ents, err)
	}
	if _, err := os.ReadDir(m.path("tags/v2")); err != nil { // the manifest is cached, not its blob
		t.Fatal(err)
	}
	if got := mustRead(t, m.path("tags/v1/cached.bin")); !bytes.Equal(got, cached) {
		t.Fatal("wrong bytes online")
	}
	if exited, err := m.terminate(); !exited || err != nil {
		t.Fatalf("daemon did not stop: %v", err)
	}

	before := requests.Load()
	off := mountAt(t, t.TempDir(), cacheDir, repo, "--offline", "--tag-ttl", "1s")
	ents, err := os.ReadDir(off.path("tags"))
	if err != nil || len(ents) != 2 {
		t.Errorf("offline tags/ = %v, %v; want the 2 saved tags", ents, err)
	}
	if got := mustRead(t, off.path("tags/v1/cached.bin")); !bytes.Equal(got, cached) {
		t.Error("offline: wrong bytes for a cached file")
	}
	if got := mustRead(t, off.path("sha256/"+hexd)); !bytes.Equal(got, cached) {
		t.Error("offline: wrong bytes by digest")
	}
	if _, err := readFile(t, off.path("tags/v2/uncached.bin")); !errors.Is(err, syscall.EIO) {
		t.Errorf("offline read of an uncached blob: %v, want EIO", err)
	}
	if _, err := os.Stat(off.path("sha256/" + strings.Repeat("ab", 32))); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("offline lookup of an unknown digest: %v, want ENOENT", err)
	}
	if n := requests.Load() - before; n != 0 {
		t.Errorf("--offline made %d registry requests", n)
	}
}

// TestBackgroundPrefetchAndPull: prefetch --background and pull
// --background return once their arguments are checked, while the
// registry still holds back every blob, and finish detached: the blobs end
// up verified in the mount's cache and the files in DIR, with plain
// progress lines and a summary in the log. Bad arguments still fail the
// command itself, with the reason and no log left behind.
func TestBackgroundPrefetchAndPull(t *testing.T) {
	blobs := &gate{}
	repo := startGGCR(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && !blobs.wait(r.Context()) {
				return
			}
			h.ServeHTTP(w, r)
		})
	}) + "/bg/data"
	t.Cleanup(blobs.open) // before the registry closes
	files := []seed.File{
		{Title: "big.bin", Data: randomBytes(t, 6<<20)},
		{Title: "small/vostok.icecore.co2", Data: seed.Vostok()},
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if _, err := seed.PushArtifact(ctx, repo, "v1", files); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir() // TMPDIR of the commands: where a default log goes
	run := func(args ...string) (pid int, log string, errs string, err error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, hashfsBin, args...)
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		var out, eb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &eb
		err = cmd.Run()
		if err != nil {
			return 0, "", eb.String(), err
		}
		// hashfs NAME: running in the background as pid N; progress and errors go to LOG
		if _, serr := fmt.Sscanf(out.String()[strings.Index(out.String(), " as pid ")+1:], "as pid %d;", &pid); serr != nil || pid <= 0 {
			t.Fatalf("hashfs %s: no pid in %q", strings.Join(args, " "), out.String())
		}
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) }) // in case the test fails with it running
		_, log, _ = strings.Cut(strings.TrimSpace(out.String()), "progress and errors go to ")
		return pid, log, eb.String(), nil
	}
	// finished waits for the background job's summary and checks its log.
	finished := func(log, summary string) {
		t.Helper()
		var b []byte
		if !waitFor(cmdTimeout, func() bool {
			b, _ = os.ReadFile(log)
			return bytes.Contains(b, []byte(summary)) || bytes.Contains(b, []byte("hashfs: "))
		}) || !bytes.Contains(b, []byte(summary)) {
			t.Fatalf("%s has no %q:\n%s", log, summary, b)
		}
		if !bytes.Contains(b, []byte("100.0%")) || bytes.ContainsAny(b, "\r\033") {
			t.Errorf("%s: want plain progress lines ending at 100.0%%:\n%q", log, b)
		}
	}
	alive := func(pid int) bool {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err == nil && !bytes.Contains(st, []byte(") Z "))
	}

	m := mount(t, repo)
	blobs.hold()
	logFile := filepath.Join(t.TempDir(), "prefetch.log")
	pid, log, errs, err := run("prefetch", "--background", "--log-file", logFile, m.path("tags/v1/"))
	if err != nil {
		t.Fatalf("prefetch --background: %v: %s", err, errs)
	}
	if log != logFile || !alive(pid) {
		t.Errorf("prefetch --background: pid %d (alive %v), log %q; want a running job logging to %s", pid, alive(pid), log, logFile)
	}
	if v, _ := getxattr(m.path("tags/v1/big.bin"), "user.hashfs.verified"); v == "true" {
		t.Error("big.bin verified while the registry held every blob back")
	}
	blobs.open()
	finished(logFile, "prefetch done: ")
	for _, f := range files {
		p := m.path("tags/v1/" + f.Title)
		if v, _ := getxattr(p, "user.hashfs.verified"); v != "true" {
			t.Errorf("%s after prefetch --background: verified=%q", f.Title, v)
		}
		if v, _ := getxattr(p, "user.hashfs.cached"); v != fmt.Sprint(len(f.Data)) {
			t.Errorf("%s after prefetch --background: cached=%q, want %d", f.Title, v, len(f.Data))
		}
	}
	if !waitFor(10*time.Second, func() bool { return !alive(pid) }) {
		t.Errorf("the background prefetch (pid %d) did not exit", pid)
	}

	blobs.hold()
	dir := filepath.Join(t.TempDir(), "out")
	pid, log, errs, err = run("pull", "--background", repo+":v1", dir)
	if err != nil {
		t.Fatalf("pull --background: %v: %s", err, errs)
	}
	if filepath.Dir(log) != tmp || !alive(pid) {
		t.Errorf("pull --background: pid %d (alive %v), log %q; want a running job logging into TMPDIR %s", pid, alive(pid), log, tmp)
	}
	if _, err := os.Stat(filepath.Join(dir, "big.bin")); err == nil {
		t.Error("big.bin written while the registry held every blob back")
	}
	blobs.open()
	finished(log, "pull done: 2 files")
	for _, f := range files {
		if got := mustRead(t, filepath.Join(dir, f.Title)); !bytes.Equal(got, f.Data) {
			t.Errorf("pull --background: %s has wrong bytes", f.Title)
		}
	}
	os.Remove(log)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"prefetch", "--background", m.path("tags/nosuchtag")}, "no such file or directory"},
		{[]string{"prefetch", "--background", "--log-file", filepath.Join(t.TempDir(), "no/such/dir.log"), m.path("tags/v1")}, "--log-file: "},
		{[]string{"pull", "--background", repo + ":nosuchtag", t.TempDir()}, "nosuchtag"},
		{[]string{"pull", "--background", "127.0.0.1:1/no/registry:v1", t.TempDir()}, "127.0.0.1:1"},
		{[]string{"pull", "--background", repo + ":v1", "/proc/no/such/dir"}, "/proc/no/such/dir"},
		{[]string{"pull", "--daemon", repo + ":v1", t.TempDir()}, "--background"},
	} {
		_, _, errs, err := run(c.args...)
		if err == nil || !strings.Contains(errs, c.want) {
			t.Errorf("hashfs %s: %v, %q; want a non-zero exit saying %q", strings.Join(c.args, " "), err, errs, c.want)
		}
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("failed background commands left %d files in TMPDIR", len(ents))
	}
}

// gate holds back requests while it is shut; the zero gate is open.
type gate struct {
	mu sync.Mutex
	ch chan struct{} // nil when open
}

func (g *gate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch == nil {
		g.ch = make(chan struct{})
	}
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
}

// wait returns true once the gate is open, false if ctx ends first.
func (g *gate) wait(ctx context.Context) bool {
	g.mu.Lock()
	ch := g.ch
	g.mu.Unlock()
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}
