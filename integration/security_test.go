package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// mountWithEnv is mount with extra environment for the daemon, given
// after the harness's own (the last value of a variable wins), so a test
// can hand the daemon a DOCKER_CONFIG of its own.
func mountWithEnv(t *testing.T, repo string, env []string, args ...string) *mnt {
	t.Helper()
	needFUSE(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	argv := append([]string{"mount", "--cache-dir", cacheDir}, args...)
	argv = append(argv, repo, dir)
	ctx, cancel := context.WithTimeout(context.Background(), daemonLifetime)
	m := &mnt{t: t, dir: dir, cacheDir: cacheDir, out: &syncBuffer{}, errBuf: &syncBuffer{}, exited: make(chan struct{})}
	m.cmd = exec.CommandContext(ctx, hashfsBin, argv...)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.errBuf
	m.cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir(), "REGISTRY_AUTH_FILE="+filepath.Join(t.TempDir(), "auth.json"))
	m.cmd.Env = append(m.cmd.Env, env...)
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
	if !waitFor(mountTimeout, func() bool {
		for _, e := range mountsAt(t, dir) {
			if e.fstype == "fuse.hashfs" {
				m.mountID = e.id
				return true
			}
		}
		select {
		case <-m.exited:
			return true
		default:
			return false
		}
	}) || m.mountID == "" {
		t.Fatalf("hashfs %s did not mount (exited: %v); stderr:\n%s", strings.Join(argv, " "), !daemonAlive(m), m.stderr())
	}
	return m
}

// dockerConfigEnv writes a Docker config.json with Basic credentials for
// registry and returns the DOCKER_CONFIG setting that points at it.
func dockerConfigEnv(t *testing.T, registry, user, pass string) []string {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{"auths": map[string]any{
		registry: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))},
	}}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"DOCKER_CONFIG=" + dir}
}

// TestSecurityReadOnly: every mutating system call on every kind of node
// fails with EROFS (EXDEV for a link from another file system, EINVAL or
// EBADF for ftruncate on a read-only descriptor), and nothing changes.
func TestSecurityReadOnly(t *testing.T) {
	row := reliabilityRow(t, 200, "security: read-only")
	needFUSE(t)
	host := startGGCR(t, nil)
	data := randomBytes(t, 64<<10)
	hexd := strings.TrimPrefix(pushFile(t, host+"/sec/ro", "v1", "file.txt", data), "sha256:")
	m := mount(t, host+"/sec/ro")
	file, titled := m.path("sha256/"+hexd), m.path("tags/v1/file.txt")
	wantBytes(t, "read before", timedRead(t, file, cmdTimeout), data)
	target, err := os.Readlink(m.path("tags/v1"))
	if err != nil {
		t.Fatal(err)
	}
	manDir := filepath.Join(m.path("tags"), target)
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	xattrBefore, _ := getxattr(file, "user.hashfs.digest")
	rofs := []syscall.Errno{syscall.EROFS}
	now := []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
	past := []unix.Timespec{unix.NsecToTimespec(1e9), unix.NsecToTimespec(1e9)}
	openFlags := func(p string, flags int) func() error {
		return func() error {
			f, err := os.OpenFile(p, flags, 0o644)
			if err == nil {
				f.Close()
			}
			return err
		}
	}
	ops := []struct {
		name string
		fn   func() error
		want []syscall.Errno
	}{
		{"open O_WRONLY", openFlags(file, os.O_WRONLY), rofs},
		{"open O_RDWR", openFlags(titled, os.O_RDWR), rofs},
		{"open O_RDONLY|O_TRUNC", openFlags(file, os.O_RDONLY|os.O_TRUNC), rofs},
		{"open O_WRONLY|O_APPEND", openFlags(file, os.O_WRONLY|os.O_APPEND), rofs},
		{"create in sha256/", openFlags(m.path("sha256/new"), os.O_CREATE|os.O_WRONLY), rofs},
		{"create in a manifest dir", openFlags(filepath.Join(manDir, "new"), os.O_CREATE|os.O_WRONLY|os.O_EXCL), rofs},
		{"truncate", func() error { return unix.Truncate(file, 0) }, rofs},
		{"ftruncate on a read-only fd", func() error {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			return unix.Ftruncate(int(f.Fd()), 0)
		}, []syscall.Errno{syscall.EINVAL, syscall.EBADF, syscall.EROFS}},
		{"utimes (set times)", func() error { return unix.UtimesNano(file, past) }, rofs},
		{"utimensat UTIME_NOW (touch)", func() error { return unix.UtimesNanoAt(unix.AT_FDCWD, titled, now, 0) }, rofs},
		{"utimes on a directory", func() error { return unix.UtimesNano(manDir, past) }, rofs},
		{"chmod", func() error { return os.Chmod(file, 0o666) }, rofs},
		{"chmod a directory", func() error { return os.Chmod(m.path("sha256"), 0o777) }, rofs},
		{"chown", func() error { return os.Lchown(file, 65534, 65534) }, rofs},
		{"setxattr", func() error { return unix.Setxattr(file, "user.test", []byte("x"), 0) }, rofs},
		{"setxattr replacing user.hashfs.verified", func() error { return unix.Setxattr(file, "user.hashfs.verified", []byte("true"), 0) }, rofs},
		{"removexattr", func() error { return unix.Removexattr(file, "user.hashfs.digest") }, rofs},
		{"link inside the mount", func() error { return os.Link(file, filepath.Join(manDir, "hardlink")) }, rofs},
		{"link into sha256/", func() error { return os.Link(titled, m.path("sha256/hardlink")) }, rofs},
		{"link from another file system", func() error { return os.Link(outside, m.path("tags/x")) }, []syscall.Errno{syscall.EXDEV, syscall.EROFS}},
		{"mknod fifo", func() error { return unix.Mknod(m.path("tags/fifo"), unix.S_IFIFO|0o644, 0) }, rofs},
		{"mknod regular", func() error { return unix.Mknod(filepath.Join(manDir, "node"), unix.S_IFREG|0o644, 0) }, rofs},
		{"mknod char device", func() error { return unix.Mknod(m.path("dev"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))) }, rofs},
		{"mkdir", func() error { return os.Mkdir(m.path("newdir"), 0o755) }, rofs},
		{"mkdir in a manifest dir", func() error { return os.Mkdir(filepath.Join(manDir, "newdir"), 0o755) }, rofs},
		{"symlink", func() error { return os.Symlink("../manifests", m.path("tags/evil")) }, rofs},
		{"rename a file", func() error { return os.Rename(titled, filepath.Join(manDir, "renamed")) }, rofs},
		{"rename a tag", func() error { return os.Rename(m.path("tags/v1"), m.path("tags/v2")) }, rofs},
		{"unlink a file", func() error { return os.Remove(file) }, rofs},
		{"unlink a tag", func() error { return unix.Unlink(m.path("tags/v1")) }, rofs},
		{"rmdir", func() error { return unix.Rmdir(m.path("sha256")) }, rofs},
		{"rmdir a manifest dir", func() error { return unix.Rmdir(manDir) }, rofs},
	}
	refused := 0
	for _, op := range ops {
		err := op.fn()
		var e syscall.Errno
		if !errors.As(err, &e) || !containsErrno(op.want, e) {
			t.Errorf("%s: %v, want one of %v", op.name, err, op.want)
			continue
		}
		refused++
	}
	wantBytes(t, "read after", timedRead(t, file, cmdTimeout), data)
	if fi, err := os.Stat(file); err != nil || fi.Size() != int64(len(data)) || fi.Mode().Perm() != 0o444 {
		t.Errorf("after the attempts: stat %v, %v; want %d bytes, mode 0444", fi, err, len(data))
	}
	if v, _ := getxattr(file, "user.hashfs.digest"); v != xattrBefore || v != "sha256:"+hexd {
		t.Errorf("user.hashfs.digest is %q after the attempts, want sha256:%s", v, hexd)
	}
	row.reader = fmt.Sprintf("%d of %d mutating calls refused: open for write/append/truncate, create, truncate, ftruncate, utimes, utimensat, chmod, chown, setxattr, removexattr, link, mknod (fifo, regular, char), mkdir, symlink, rename, unlink, rmdir", refused, len(ops))
	row.daemon = "EROFS from the read-only mount and from every node (EXDEV for a link from another file system, EINVAL for ftruncate of an O_RDONLY descriptor)"
	row.figures = "file bytes, size, mode 0444 and xattrs unchanged afterwards"
}

func containsErrno(list []syscall.Errno, e syscall.Errno) bool {
	for _, x := range list {
		if x == e {
			return true
		}
	}
	return false
}

// TestSecurityCredentials: a registry that requires Basic auth, a
// password that appears nowhere else, --debug: the daemon reads through
// the registry and its CDN, and neither its logs nor any file of its
// cache holds the password, its base64 or the CDN signature; the CDN
// never receives an Authorization header. A wrong password fails the
// mount without printing the password either.
func TestSecurityCredentials(t *testing.T) {
	row := reliabilityRow(t, 210, "security: credentials")
	needFUSE(t)
	host, _ := startDistribution(t)
	p := newFaultProxy(t, host)
	sig := "cdnsig" + sha256Hex(randomBytes(t, 16))[:24]
	cdn := newFakeCDN(t, host, sig)
	user, secret := "hashfs-ci", "Pw-"+sha256Hex(randomBytes(t, 16))[:28]
	p.set(func(f *faults) { f.cdn, f.basicUser, f.basicPass = cdn, user, secret })
	data := randomBytes(t, 2<<20)
	repoPath := "sec/creds"
	hexd := strings.TrimPrefix(pushFile(t, host+"/"+repoPath, "v1", "data.bin", data), "sha256:")
	repo := p.addr + "/" + repoPath
	m := mountWithEnv(t, repo, dockerConfigEnv(t, p.addr, user, secret), "--debug", "--chunk-size", "512KiB")

	wantBytes(t, "read by digest", timedRead(t, m.path("sha256/"+hexd), cmdTimeout), data)
	dropPageCache(t, m.path("tags/v1/data.bin"))
	wantBytes(t, "read by tag", timedRead(t, m.path("tags/v1/data.bin"), cmdTimeout), data)
	if _, err := os.ReadDir(m.path("tags")); err != nil {
		t.Errorf("ls tags/: %v", err)
	}
	if _, err := os.Stat(m.path("sha256/" + strings.Repeat("ab", 32))); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("stat of an unknown digest: %v, want ENOENT", err)
	}

	if p.st.authOK.Load() == 0 {
		t.Fatalf("no request reached the registry with the credentials")
	}
	if cdn.requests.Load() == 0 {
		t.Fatalf("no blob GET went to the CDN: the redirect check is vacuous")
	}
	if n := cdn.authLeaks.Load(); n != 0 {
		t.Errorf("the CDN received an Authorization header (%v) %d times", cdn.leakHeader.Load(), n)
	}
	debugLines := countLines(m.stderr(), "level=DEBUG")
	if debugLines == 0 {
		t.Errorf("--debug logged nothing at DEBUG: the log check is vacuous")
	}
	needles := map[string]string{
		"password":             secret,
		"base64(user:pass)":    base64.StdEncoding.EncodeToString([]byte(user + ":" + secret)),
		"base64(pass)":         base64.StdEncoding.EncodeToString([]byte(secret)),
		"base64url(user:pass)": base64.URLEncoding.EncodeToString([]byte(user + ":" + secret)),
		"CDN URL signature":    sig,
	}
	var leaks []string
	for what, s := range needles {
		if strings.Contains(m.stderr(), s) || strings.Contains(m.stdout(), s) {
			leaks = append(leaks, what+" in the daemon's output")
		}
	}
	files := 0
	err := filepath.WalkDir(m.cacheDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for what, s := range needles {
			if strings.Contains(path, s) {
				leaks = append(leaks, what+" in the cache path "+path)
			}
		}
		if !d.Type().IsRegular() {
			return nil
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for what, s := range needles {
			if bytes.Contains(b, []byte(s)) {
				leaks = append(leaks, what+" in the cache file "+path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Errorf("the cache directory holds no file: the cache check is vacuous")
	}
	for _, l := range leaks {
		t.Errorf("credential leak: %s", l)
	}

	// A wrong password: the mount fails, and says so without the password.
	wrong := "Wrong-" + sha256Hex(randomBytes(t, 16))[:20]
	out, exitErr := failedMount(t, repo, dockerConfigEnv(t, p.addr, user, wrong))
	if exitErr == nil {
		t.Errorf("a mount with a wrong password succeeded")
	}
	if strings.Contains(out, wrong) || strings.Contains(out, base64.StdEncoding.EncodeToString([]byte(user+":"+wrong))) {
		t.Errorf("the failed mount printed the wrong password: %s", out)
	}
	row.reader = "reads by digest and by tag through Basic auth and a CDN redirect: right bytes; a wrong password: the mount fails with `" + excerpt(strings.TrimSpace(lastLine(out))) + "`"
	row.daemon = fmt.Sprintf("sent credentials to the registry only (%d authenticated requests, %d Authorization headers at the CDN); %d DEBUG log lines and %d cache files hold neither the password, its base64 nor the CDN signature",
		p.st.authOK.Load(), cdn.authLeaks.Load(), debugLines, files)
	row.figures = fmt.Sprintf("%d leaks found", len(leaks))
	if len(leaks) > 0 {
		row.lost = "credentials leaked"
	}
}

// failedMount runs a mount that is expected to fail before mounting and
// returns its combined output and exit error. If it mounts after all, it
// is stopped and unmounted and the error is nil.
func failedMount(t *testing.T, repo string, env []string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hashfsBin, "mount", "--debug", "--cache-dir", t.TempDir(), repo, dir)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir(), "REGISTRY_AUTH_FILE="+filepath.Join(t.TempDir(), "auth.json"))
	cmd.Env = append(cmd.Env, env...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		return out.String(), err
	case <-time.After(30 * time.Second):
		cmd.Process.Signal(syscall.SIGTERM)
		<-errc
		detach(dir)
		return out.String(), nil
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestSecurityCacheDirPerms: with umask 000 and a pre-existing 0777 cache
// directory, the daemon's cache directory ends up 0700, every directory
// in it 0700 and every file 0600.
func TestSecurityCacheDirPerms(t *testing.T) {
	row := reliabilityRow(t, 220, "security: cache permissions")
	needFUSE(t)
	host := startGGCR(t, nil)
	data := randomBytes(t, 1500<<10)
	hexd := strings.TrimPrefix(pushFile(t, host+"/sec/perms", "v1", "data.bin", data), "sha256:")
	cacheDir := filepath.Join(t.TempDir(), "cache")
	old := syscall.Umask(0)
	err := os.Mkdir(cacheDir, 0o777)
	var m *mnt
	if err == nil {
		m = mountAt(t, t.TempDir(), cacheDir, host+"/sec/perms", "--chunk-size", "256KiB")
	}
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	wantBytes(t, "read by tag", timedRead(t, m.path("tags/v1/data.bin"), cmdTimeout), data)
	wantBytes(t, "read by digest", timedRead(t, m.path("sha256/"+hexd), cmdTimeout), data)
	if !waitFor(5*time.Second, func() bool { _, err := os.Stat(filepath.Join(cacheDir, "tables", hexd)); return err == nil }) {
		t.Errorf("no chunk table written for the blob")
	}
	var dirs, files int
	err = filepath.WalkDir(cacheDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch perm := fi.Mode().Perm(); {
		case d.IsDir():
			dirs++
			if perm != 0o700 {
				t.Errorf("directory %s has mode %#o, want 0700", path, perm)
			}
		case d.Type().IsRegular():
			files++
			if perm != 0o600 {
				t.Errorf("file %s has mode %#o, want 0600", path, perm)
			}
		default:
			t.Errorf("%s is neither a file nor a directory (%v)", path, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 {
		t.Errorf("only %d files in the cache after reading a blob and a manifest", files)
	}
	row.reader = "-"
	row.daemon = fmt.Sprintf("with umask 000 and a pre-existing 0777 cache dir: %d directories all 0700, %d files (chunks, tables, documents) all 0600", dirs, files)
	row.figures = "-"
}

// TestSecurityOtherUsers: without --allow-other another user (nobody)
// cannot even look into the mount; with it, nobody can read the 0444
// files but not write, create or remove anything.
func TestSecurityOtherUsers(t *testing.T) {
	row := reliabilityRow(t, 230, "security: other users")
	needFUSE(t)
	if os.Geteuid() != 0 {
		missing(t, "switching to user nobody needs root")
		return
	}
	needTool(t, "setpriv")
	host := startGGCR(t, nil)
	data := randomBytes(t, 100<<10)
	hexd := strings.TrimPrefix(pushFile(t, host+"/sec/users", "v1", "data.bin", data), "sha256:")
	base, err := os.MkdirTemp("", "hashfs-users-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) }) // registered first: runs after the unmounts
	for _, d := range []string{base, filepath.Join(base, "private"), filepath.Join(base, "shared")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	control := filepath.Join(base, "control.txt")
	if err := os.WriteFile(control, []byte("readable"), 0o644); err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) (string, error) {
		return tryCmd("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, args...)...)
	}
	if out, err := asNobody("cat", control); err != nil || out != "readable" {
		t.Fatalf("control: nobody cannot read a 0644 file next to the mounts: %q %v", out, err)
	}

	priv := mountAt(t, filepath.Join(base, "private"), t.TempDir(), host+"/sec/users")
	wantBytes(t, "root reads", timedRead(t, priv.path("sha256/"+hexd), cmdTimeout), data)
	_, catErr := asNobody("cat", priv.path("sha256/"+hexd))
	_, lsErr := asNobody("ls", priv.dir)
	for what, err := range map[string]error{"cat a file": catErr, "ls the mount": lsErr} {
		if err == nil || !strings.Contains(err.Error(), "Permission denied") {
			t.Errorf("without --allow-other, nobody could %s: %v; want Permission denied", what, err)
		}
	}

	shared := mountAt(t, filepath.Join(base, "shared"), t.TempDir(), host+"/sec/users", "--allow-other")
	file := shared.path("sha256/" + hexd)
	out, err := asNobody("sha256sum", file)
	if err != nil || !strings.HasPrefix(out, hexd) {
		t.Errorf("with --allow-other, nobody's sha256sum: %q %v; want %s", out, err, hexd)
	}
	if out, err := asNobody("cat", shared.path("tags/v1/data.bin")); err != nil || out != string(data) {
		t.Errorf("with --allow-other, nobody could not read by tag: %v", err)
	}
	writes := map[string][]string{
		"append to a file":  {"sh", "-c", "echo x >> " + file},
		"create a file":     {"sh", "-c", "echo x > " + shared.path("sha256/new")},
		"touch a file":      {"touch", file},
		"remove a tag":      {"rm", "-f", shared.path("tags/v1")},
		"make a directory":  {"mkdir", shared.path("tags/d")},
		"set an xattr":      {"setfattr", "-n", "user.x", "-v", "1", file},
		"truncate a file":   {"truncate", "-s", "0", file},
		"chmod a directory": {"chmod", "777", shared.path("sha256")},
	}
	denied := 0
	for what, argv := range writes {
		if argv[0] == "setfattr" {
			if _, err := exec.LookPath("setfattr"); err != nil {
				continue
			}
		}
		_, err := asNobody(argv...)
		if err == nil {
			t.Errorf("with --allow-other, nobody could %s", what)
			continue
		}
		if !strings.Contains(err.Error(), "Read-only file system") && !strings.Contains(err.Error(), "Permission denied") &&
			!strings.Contains(err.Error(), "Operation not permitted") {
			t.Errorf("with --allow-other, nobody's attempt to %s failed oddly: %v", what, err)
		}
		denied++
	}
	wantBytes(t, "after nobody's attempts", timedRead(t, file, cmdTimeout), data)
	row.reader = fmt.Sprintf("uid 65534 without --allow-other: `cat` and `ls` get EACCES (a 0644 file beside the mount reads fine); with --allow-other: reads the 0444 files correctly, %d write attempts refused (EROFS/EACCES/EPERM)", denied)
	row.daemon = "the kernel enforces it: no allow_other unless asked, default_permissions, files 0444, dirs 0555"
	row.figures = "-"
}

// badRepo pushes raw blobs and manifests to ggcr's in-process registry,
// which accepts any manifest.
type badRepo struct {
	t    *testing.T
	repo name.Repository
}

func (r badRepo) blob(data []byte) string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if err := remote.WriteLayer(r.repo, static.NewLayer(data, types.OCILayer), remote.WithContext(ctx)); err != nil {
		r.t.Fatalf("upload blob: %v", err)
	}
	return "sha256:" + sha256Hex(data)
}

func (r badRepo) put(tag string, body []byte, mediaType string) string {
	r.t.Helper()
	// A plain PUT: ggcr's remote.Put parses what it pushes.
	u := fmt.Sprintf("http://%s/v2/%s/manifests/%s", r.repo.RegistryStr(), r.repo.RepositoryStr(), tag)
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mediaType)
	resp, err := (&http.Client{Timeout: cmdTimeout}).Do(req)
	if err != nil {
		r.t.Fatalf("put manifest %s: %v", tag, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		r.t.Fatalf("put manifest %s: HTTP %d", tag, resp.StatusCode)
	}
	return sha256Hex(body)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// layer is one descriptor of a hand-written manifest.
func layer(mt, digest string, size int64, title string) map[string]any {
	d := map[string]any{"mediaType": mt, "digest": digest, "size": size}
	if title != "" {
		d["annotations"] = map[string]string{"org.opencontainers.image.title": title}
	}
	return d
}

// ociManifest is an OCI artifact manifest with the empty config.
func ociManifest(layers ...map[string]any) map[string]any {
	return map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"artifactType":  "application/vnd.hashfs.test",
		"config":        layer("application/vnd.oci.empty.v1+json", "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", 2, ""),
		"layers":        layers,
	}
}

// safeRead checks that a read of a path whose descriptor lies about the
// size gave an error or a prefix of the true bytes, never other bytes.
func safeRead(t *testing.T, what string, r readResult, truth []byte) string {
	t.Helper()
	if len(r.b) > len(truth) || !bytes.Equal(r.b, truth[:len(r.b)]) {
		t.Errorf("%s: WRONG BYTES: %d bytes that are not a prefix of the blob's %d (err %v)", what, len(r.b), len(truth), r.err)
		return "wrong bytes"
	}
	if r.err != nil {
		return fmt.Sprintf("%s after %d bytes", errnoName(r.err), len(r.b))
	}
	return fmt.Sprintf("%d correct bytes (a prefix), no error", len(r.b))
}

// honestRead reads sha256/<hex> and wants the true bytes and size. On a
// failure it says what the path showed and whether a read 1.2s later
// (past the strict failure memory) works, then goes on.
func honestRead(t *testing.T, m *mnt, what, hex string, truth []byte) string {
	t.Helper()
	p := m.path("sha256/" + hex)
	r := timedRead(t, p, cmdTimeout)
	fi, serr := os.Stat(p)
	if r.err == nil && bytes.Equal(r.b, truth) && serr == nil && fi.Size() == int64(len(truth)) {
		return "true bytes"
	}
	size := int64(-1)
	if serr == nil {
		size = fi.Size()
	}
	time.Sleep(1200 * time.Millisecond)
	again := timedRead(t, p, cmdTimeout)
	t.Errorf("%s: %d bytes, %v (stat size %d, %v; true size %d); 1.2s later: %d bytes, %v, right bytes: %v",
		what, len(r.b), r.err, size, serr, len(truth), len(again.b), again.err, bytes.Equal(again.b, truth))
	return fmt.Sprintf("FAILED (%s, stat size %d of %d)", errnoName(r.err), size, len(truth))
}

// TestBadInput: malformed digests, tags and paths; manifests that are not
// JSON, too large, lie about sizes, carry hostile titles, bad descriptors
// or unknown media types; an index with hostile platforms and a missing
// child. Each gives a clear errno or is shown safely, no read returns
// wrong bytes, and the daemon stays up and serving.
func TestBadInput(t *testing.T) {
	row := reliabilityRow(t, 80, "bad input: paths, digests, manifests")
	needFUSE(t)
	host := startGGCR(t, nil)
	repoName := host + "/bad/input"
	repo, err := name.NewRepository(repoName)
	if err != nil {
		t.Fatal(err)
	}
	br := badRepo{t, repo}
	good := randomBytes(t, 200<<10)
	goodHex := strings.TrimPrefix(pushFile(t, repoName, "good", "good.bin", good), "sha256:")
	br.blob([]byte("{}"))
	goodTarget := func() string { // manifests/sha256:<good manifest>
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		d, err := remote.Head(repo.Tag("good"), remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		return d.Digest.Hex
	}()

	notJSON := br.put("notjson", []byte("this is { not JSON"), "application/vnd.oci.image.manifest.v1+json")
	pad := strings.Repeat("p", 4<<20+1024)
	huge := br.put("huge", mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"layers": []any{}, "annotations": map[string]string{"pad": pad}}), "application/vnd.oci.image.manifest.v1+json")

	longer, shorter := randomBytes(t, 300<<10), randomBytes(t, 300<<10)
	lh, sh := br.blob(longer), br.blob(shorter)
	liesHex := br.put("lies", mustJSON(t, ociManifest(
		layer(string(types.OCILayer), lh, int64(len(longer))+10, "longer.bin"),
		layer(string(types.OCILayer), sh, int64(len(shorter))-10, "shorter.bin"),
	)), "application/vnd.oci.image.manifest.v1+json")

	titles := []string{"../escape.bin", "/etc/passwd-hashfs", "a\x00b", strings.Repeat("n", 4096), "dup.txt", "dup.txt",
		"ok/nested/file.txt", "manifest.json", "blobs", "sub/../../escape2.bin", ".", "sha256:" + goodHex, strings.Repeat("d/", 60) + "deep.txt",
		strings.Repeat("x", 256)}
	fallback := map[int]bool{0: true, 1: true, 2: true, 3: true, 5: true, 7: true, 8: true, 9: true, 10: true, 11: true, 13: true}
	tblobs := make([][]byte, len(titles))
	var tlayers []map[string]any
	for i, title := range titles {
		tblobs[i] = []byte(fmt.Sprintf("title blob %d %s\n", i, sha256Hex(randomBytes(t, 8))))
		tlayers = append(tlayers, layer("text/plain", br.blob(tblobs[i]), int64(len(tblobs[i])), title))
	}
	titlesBody := mustJSON(t, ociManifest(tlayers...))
	titlesHex := br.put("titles", titlesBody, "application/vnd.oci.image.manifest.v1+json")

	unknownData, unknownCfg := randomBytes(t, 10<<10), []byte(`{"whatever": true}`)
	ud, uc := br.blob(unknownData), br.blob(unknownCfg)
	br.put("unknown", mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.example.never-heard-of+json",
		"config": layer("application/x-unknown-config", uc, int64(len(unknownCfg)), ""),
		"layers": []any{layer("application/x-never-heard-of", ud, int64(len(unknownData)), "thing.dat")}}), "application/vnd.example.never-heard-of+json")

	valid := []byte("the one valid descriptor\n")
	vd := br.blob(valid)
	br.put("baddesc", mustJSON(t, ociManifest(
		layer("text/plain", "sha512:"+strings.Repeat("ab", 64), 3, "x512"),
		layer("text/plain", "sha256:zz", 3, "xzz"),
		layer("text/plain", "", 3, "xempty"),
		layer("text/plain", "sha256:"+strings.Repeat("A", 64), 3, "xupper"),
		layer("text/plain", vd, -5, "xneg"),
		layer("text/plain", vd, int64(len(valid)), "valid.txt"),
	)), "application/vnd.oci.image.manifest.v1+json")

	missingHex := sha256Hex(randomBytes(t, 32))
	mdesc := func(hex, os, arch string) map[string]any {
		return map[string]any{"mediaType": "application/x-child", "digest": "sha256:" + hex, "size": 100,
			"platform": map[string]string{"os": os, "architecture": arch}}
	}
	br.put("index", mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{mdesc(goodTarget, "../..", "x"), mdesc(missingHex, "linux", "arm64"), mdesc(goodTarget, "linux", "amd64"),
			mdesc(notJSON, "linux", "amd64")}}), "application/vnd.oci.image.index.v1+json")

	m := mount(t, repoName)
	wantBytes(t, "good file", timedRead(t, m.path("tags/good/good.bin"), cmdTimeout), good)
	var notes []string

	// Malformed and unknown names.
	unknownHex := sha256Hex(randomBytes(t, 32))
	enoent := []syscall.Errno{syscall.ENOENT}
	paths := []struct {
		path string
		want []syscall.Errno
	}{
		{"sha256/zz", enoent},
		{"sha256/" + goodHex[:63], enoent},
		{"sha256/" + goodHex + "0", enoent},
		{"sha256/" + strings.ToUpper(goodHex), enoent},
		{"sha256/sha256:" + goodHex, enoent},
		{"sha256/" + unknownHex, enoent},
		{"sha256/" + strings.Repeat("a", 300), []syscall.Errno{syscall.ENAMETOOLONG, syscall.ENOENT}},
		{"sha256/zz/zz/" + goodHex, enoent},
		{"sha256/" + goodHex[:2] + "/" + goodHex[2:4] + "/" + unknownHex, enoent},
		{"sha256/" + goodHex + "/x", []syscall.Errno{syscall.ENOTDIR, syscall.ENOENT}},
		{"manifests/sha256:zz", enoent},
		{"manifests/notadigest", enoent},
		{"manifests/sha512:" + strings.Repeat("ab", 64), enoent},
		{"manifests/sha256:" + unknownHex, enoent},
		{"manifests/sha256:" + goodTarget + "/no-such-file", enoent},
		{"tags/no-such-tag", enoent},
		{"tags/bad tag!", enoent},
		{"tags/.hidden", enoent},
		{"tags/" + strings.Repeat("t", 200), enoent},
		{"no-such-top", enoent},
	}
	for _, pc := range paths {
		var err error
		withTimeout(t, "lstat "+pc.path, func() { _, err = os.Lstat(m.path(pc.path)) })
		var e syscall.Errno
		if !errors.As(err, &e) || !containsErrno(pc.want, e) {
			t.Errorf("lstat %s: %v, want %v", excerpt(pc.path), err, pc.want)
		}
	}
	notes = append(notes, fmt.Sprintf("%d malformed/unknown digests, tags and names: ENOENT (ENAMETOOLONG over 255 bytes)", len(paths)))

	// Not JSON, and over 4 MiB.
	for _, c := range []struct {
		tag, hex string
		want     []syscall.Errno
	}{{"notjson", notJSON, []syscall.Errno{syscall.ENOENT, syscall.EIO}}, {"huge", huge, enoent}} {
		var err error
		withTimeout(t, "stat tags/"+c.tag, func() { _, err = os.Stat(m.path("tags/" + c.tag + "/")) })
		var e syscall.Errno
		if !errors.As(err, &e) || !containsErrno(c.want, e) {
			t.Errorf("stat tags/%s/: %v, want %v", c.tag, err, c.want)
		}
		withTimeout(t, "stat manifest dir", func() { _, err = os.Stat(m.path("manifests/sha256:" + c.hex)) })
		if !errors.As(err, &e) || !containsErrno(c.want, e) {
			t.Errorf("stat manifests/sha256:%s (%s): %v, want %v", c.hex[:12], c.tag, err, c.want)
		}
		notes = append(notes, fmt.Sprintf("%s manifest: %s", c.tag, errnoName(err)))
	}

	// Sizes that lie: cold through the lie, then honest, then the lie again.
	liesDir := m.path("manifests/sha256:" + liesHex)
	lhex, shex := strings.TrimPrefix(lh, "sha256:"), strings.TrimPrefix(sh, "sha256:")
	lr := timedRead(t, filepath.Join(liesDir, "longer.bin"), cmdTimeout)
	o1 := safeRead(t, "size+10, cold", lr, longer)
	h1 := honestRead(t, m, "honest path of the size+10 blob, after the lie", lhex, longer)
	o2 := safeRead(t, "size+10, warm", timedRead(t, filepath.Join(liesDir, "longer.bin"), cmdTimeout), longer)
	h2 := honestRead(t, m, "honest path of the size-10 blob, before the lie", shex, shorter)
	o3 := safeRead(t, "size-10, warm", timedRead(t, filepath.Join(liesDir, "shorter.bin"), cmdTimeout), shorter)
	h3 := honestRead(t, m, "honest path of the size-10 blob, after the lie", shex, shorter)
	h4 := honestRead(t, m, "honest path of the size+10 blob, at the end", lhex, longer)
	notes = append(notes, fmt.Sprintf("descriptor size +10: %s cold, %s warm; size -10: %s; honest sha256/<hex> paths: %s / %s / %s / %s", o1, o2, o3, h1, h2, h3, h4))

	// Hostile titles.
	tdir := m.path("manifests/sha256:" + titlesHex)
	seen := map[string]bool{}
	var walkErr error
	withTimeout(t, "walk the titles manifest", func() {
		walkErr = filepath.WalkDir(tdir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(tdir, path)
			seen[rel] = true
			if len(d.Name()) > 255 || d.Name() == ".." || strings.HasPrefix(rel, "..") {
				t.Errorf("unsafe name in the manifest tree: %q", excerpt(rel))
			}
			if d.Type().IsRegular() && rel != "manifest.json" {
				dg, err := getxattr(path, "user.hashfs.digest")
				if err != nil {
					t.Errorf("xattr of %s: %v", excerpt(rel), err)
					return nil
				}
				r := timedRead(t, path, cmdTimeout)
				if r.err != nil || "sha256:"+sha256Hex(r.b) != dg {
					t.Errorf("%s: read %d bytes, %v; its digest is %s", excerpt(rel), len(r.b), r.err, dg)
				}
			}
			return nil
		})
	})
	if walkErr != nil {
		t.Errorf("walking the titles manifest: %v", walkErr)
	}
	wantBytes(t, "manifest.json is the document", timedRead(t, filepath.Join(tdir, "manifest.json"), cmdTimeout), titlesBody)
	for i := range titles {
		fb := "sha256:" + sha256Hex(tblobs[i])
		if fallback[i] && !seen[fb] {
			t.Errorf("title %q: no fallback entry %s", excerpt(titles[i]), fb[:19])
		}
	}
	wantBytes(t, "ok/nested/file.txt", timedRead(t, filepath.Join(tdir, "ok/nested/file.txt"), cmdTimeout), tblobs[6])
	wantBytes(t, "dup.txt (first wins)", timedRead(t, filepath.Join(tdir, "dup.txt"), cmdTimeout), tblobs[4])
	wantBytes(t, "deep title", timedRead(t, filepath.Join(tdir, strings.Repeat("d/", 60)+"deep.txt"), cmdTimeout), tblobs[12])
	if fi, err := os.Stat(filepath.Join(tdir, "blobs")); err != nil || !fi.IsDir() {
		t.Errorf("blobs/ in the titles manifest: %v %v, want the directory", fi, err)
	}
	for _, p := range []string{filepath.Join(filepath.Dir(m.dir), "escape.bin"), filepath.Join(filepath.Dir(m.dir), "escape2.bin"),
		m.path("escape.bin"), m.path("manifests/escape.bin"), m.path("escape2.bin")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("a title escaped its manifest directory: %s exists", p)
		}
	}
	notes = append(notes, fmt.Sprintf("%d hostile titles (.., absolute, NUL, 4 KiB and 256-byte names, duplicates, reserved names, digest-shaped): shown under sha256:<hex> fallback names inside the manifest directory, %d entries in all, each reading its own digest's bytes", len(fallback), len(seen)))

	// Unknown media types.
	ur := timedRead(t, m.path("tags/unknown/thing.dat"), cmdTimeout)
	if ur.err == nil {
		wantBytes(t, "unknown media type", ur, unknownData)
		if mt, err := getxattr(m.path("tags/unknown/thing.dat"), "user.hashfs.mediatype"); err != nil || mt != "application/x-never-heard-of" {
			t.Errorf("user.hashfs.mediatype = %q, %v", mt, err)
		}
		notes = append(notes, "unknown media types: shown, the layer's type in user.hashfs.mediatype")
	} else {
		var e syscall.Errno
		if !errors.As(ur.err, &e) || !containsErrno([]syscall.Errno{syscall.ENOENT, syscall.EIO}, e) {
			t.Errorf("unknown media type: %v, want the bytes or ENOENT/EIO", ur.err)
		}
		notes = append(notes, "unknown media types: "+errnoName(ur.err))
	}

	// Bad descriptors: skipped, the valid one shown.
	wantBytes(t, "the valid descriptor among bad ones", timedRead(t, m.path("tags/baddesc/valid.txt"), cmdTimeout), valid)
	ents, err := os.ReadDir(m.path("tags/baddesc/blobs"))
	if err != nil {
		t.Fatal(err)
	}
	var blobNames []string
	for _, e := range ents {
		blobNames = append(blobNames, e.Name())
	}
	const emptyConfig = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	if want := []string{vd, emptyConfig}; len(blobNames) != 2 || !slicesContains(blobNames, vd) || !slicesContains(blobNames, emptyConfig) {
		t.Errorf("blobs/ of the bad-descriptor manifest: %v, want only %v (the valid layer and the config)", blobNames, want)
	}
	for _, n := range []string{"x512", "xzz", "xempty", "xupper", "xneg"} {
		if _, err := os.Lstat(m.path("tags/baddesc/" + n)); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("bad descriptor %s: %v, want ENOENT", n, err)
		}
	}
	notes = append(notes, "descriptors with sha512/malformed/empty/uppercase digests or negative sizes: skipped, the valid one shown")

	// An index with hostile platforms, a duplicate and a missing child.
	idx := m.path("tags/index")
	if tgt, err := os.Readlink(filepath.Join(idx, "linux-arm64")); err != nil || tgt != "../sha256:"+missingHex {
		t.Errorf("linux-arm64 -> %q, %v", tgt, err)
	}
	if _, err := os.Stat(filepath.Join(idx, "linux-arm64/")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("following the link to a missing child: %v, want ENOENT", err)
	}
	if _, err := os.Stat(filepath.Join(idx, "linux-amd64", "good.bin")); err != nil {
		t.Errorf("linux-amd64/good.bin: %v", err)
	}
	ients, err := os.ReadDir(idx)
	if err != nil {
		t.Fatal(err)
	}
	var inames []string
	for _, e := range ients {
		inames = append(inames, e.Name())
		if strings.Contains(e.Name(), "..") {
			t.Errorf("index entry %q", e.Name())
		}
	}
	for _, want := range []string{"sha256:" + goodTarget, "sha256:" + notJSON, "index.json"} {
		if !slicesContains(inames, want) {
			t.Errorf("index directory %v has no %s", inames, want)
		}
	}
	notes = append(notes, "index: platform `../..` and a duplicate platform become sha256:<child> links, a missing child's link gives ENOENT")

	if !daemonAlive(m) {
		t.Fatalf("the daemon died; stderr:\n%s", m.stderr())
	}
	dropPageCache(t, m.path("tags/good/good.bin"))
	wantBytes(t, "good file at the end", timedRead(t, m.path("tags/good/good.bin"), cmdTimeout), good)
	if strings.Contains(m.stderr(), "panic") {
		t.Errorf("the daemon logged a panic:\n%s", m.stderr())
	}
	// No name from a manifest reaches the cache: every path under it is
	// made of the fixed names, hex digests and chunk numbers.
	cacheName := regexp.MustCompile(`^(lock|chunk-size|tags-[0-9a-f]{16}\.json|chunks|tables|docs|layerindex|tmp|blob|stamp|[0-9a-f]{2}|[0-9a-f]{64}|[0-9]+|w-[0-9]+)$`) // w-N: a temp file being written
	cachePaths := 0
	filepath.WalkDir(m.cacheDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == m.cacheDir {
			return nil
		}
		cachePaths++
		if !cacheName.MatchString(d.Name()) {
			t.Errorf("cache path %s is not made of digests and chunk numbers", p)
		}
		return nil
	})
	notes = append(notes, fmt.Sprintf("cache dir afterwards: %d paths, all digests, chunk numbers or fixed names", cachePaths))

	var hugeLog string
	if !waitFor(2*time.Second, func() bool { hugeLog = firstLine(m.stderr(), huge, "limit"); return hugeLog != "" }) {
		t.Errorf("no log line says why the %d-byte manifest sha256:%s is refused", 4<<20+1024, huge[:12])
	}
	if i := strings.Index(hugeLog, "manifest is "); i >= 0 {
		hugeLog = strings.TrimSuffix(hugeLog[i:], `"`)
	}
	row.reader = strings.Join(notes, "; ")
	row.daemon = "stayed up and kept serving; the too-large manifest logged `" + excerpt(strings.TrimSpace(hugeLog)) + "`"
	row.figures = fmt.Sprintf("%d bad paths, 6 bad manifests and 1 bad index in %s", len(paths), "one mount")
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
