package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNonRootMount: a user without privileges (nobody) mounts through the
// setuid fusermount3, in the foreground and with --daemon; the mount is
// that user's (user_id in mountinfo), read-only, serves verified bytes to
// that user and EACCES to everyone else, root included, without
// --allow-other; hashfs unmount [--lazy] run by that user and SIGTERM end
// it through fusermount3 -u. Stock udev makes /dev/fuse 0666; the test
// does that for its duration when this machine keeps it 0600, after
// checking that a mount then fails naming /dev/fuse.
func TestNonRootMount(t *testing.T) {
	needFUSE(t)
	needTool(t, "sha256sum")
	if os.Geteuid() != 0 {
		missing(t, "root, to run hashfs as user nobody")
		return
	}
	fm, err := exec.LookPath("fusermount3")
	if err != nil {
		missing(t, "fusermount3: %v", err)
		return
	}
	if fi, err := os.Stat(fm); err != nil || fi.Mode()&os.ModeSetuid == 0 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		missing(t, "%s setuid root: %v %v", fm, fi.Mode(), err)
		return
	}
	nb := lookupNobody(t)

	// Everything nobody touches lives under a 0755 directory: the binary,
	// the cache directories, the mountpoints and the log.
	base, err := os.MkdirTemp("", "hashfs-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "hashfs")
	if err := copyFile(hashfsBin, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	nbDir := func(t *testing.T, name string) string {
		t.Helper()
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, nb.uid, nb.gid); err != nil {
			t.Fatal(err)
		}
		return p
	}
	home := nbDir(t, "home")
	asNobody := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(nb.uid), Gid: uint32(nb.gid), Groups: []uint32{}}}
		cmd.Dir = home
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "DOCKER_CONFIG=" + home, "REGISTRY_AUTH_FILE=" + filepath.Join(home, "auth.json")}
		return cmd
	}
	runNobody := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		out, err := asNobody(ctx, args...).CombinedOutput()
		return string(out), err
	}

	repo := startGGCR(t, nil) + "/nonroot/data"
	data := randomBytes(t, 3<<20)
	pushFile(t, repo, "v1", "data.bin", data)

	// checkMount asserts what a mount of nobody's looks like and does.
	checkMount := func(t *testing.T, mnt string) {
		t.Helper()
		var sup, opts string
		if !waitFor(mountTimeout, func() bool { opts, sup = mountOptions(t, mnt, "fuse.hashfs"); return sup != "" }) {
			t.Fatalf("no fuse.hashfs mount at %s", mnt)
		}
		want := fmt.Sprintf("user_id=%d", nb.uid)
		if !hasOption(sup, want) || !hasOption(sup, fmt.Sprintf("group_id=%d", nb.gid)) || hasOption(sup, "allow_other") {
			t.Errorf("%s: super options %q, want %s and no allow_other", mnt, sup, want)
		}
		for _, o := range []string{"ro", "nosuid", "nodev"} {
			if !hasOption(opts, o) {
				t.Errorf("%s: mount options %q lack %s", mnt, opts, o)
			}
		}
		out, err := runNobody("sha256sum", filepath.Join(mnt, "tags/v1/data.bin"))
		if err != nil {
			t.Fatalf("sha256sum as nobody: %v: %s", err, out)
		}
		if f := strings.Fields(out); len(f) == 0 || f[0] != sha256Hex(data) {
			t.Errorf("sha256sum as nobody: %q, want %s", out, sha256Hex(data))
		}
		// Without allow_other the kernel lets in only the mount's owner:
		// root gets EACCES too (fuse's allow_sys_admin_access is off).
		if _, err := os.Stat(filepath.Join(mnt, "tags/v1/data.bin")); !errors.Is(err, syscall.EACCES) {
			t.Errorf("root stat inside nobody's mount: %v, want EACCES", err)
		}
		if _, err := readFile(t, filepath.Join(mnt, "tags/v1/data.bin")); !errors.Is(err, syscall.EACCES) {
			t.Errorf("root read inside nobody's mount: %v, want EACCES", err)
		}
	}
	unmount := func(t *testing.T, mnt string, flags ...string) {
		t.Helper()
		if out, err := runNobody(append(append([]string{bin, "unmount"}, flags...), mnt)...); err != nil {
			t.Fatalf("hashfs unmount %s as nobody: %v: %s", strings.Join(flags, " "), err, out)
		}
		if !waitFor(10*time.Second, func() bool { return len(mountsAt(t, mnt)) == 0 }) {
			t.Fatalf("%s still mounted after hashfs unmount", mnt)
		}
	}
	// foreground starts "hashfs mount" as nobody and waits for its mount;
	// the channel gets its exit.
	foreground := func(t *testing.T, mnt, cacheDir string) (*exec.Cmd, <-chan error) {
		t.Helper()
		t.Cleanup(func() {
			if len(mountsAt(t, mnt)) > 0 {
				detach(mnt)
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), daemonLifetime)
		cmd := asNobody(ctx, bin, "mount", "--cache-dir", cacheDir, repo, mnt)
		logs := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait(); cancel() }()
		t.Cleanup(func() {
			cancel()
			if t.Failed() {
				t.Logf("hashfs log:\n%s", logs.String())
			}
		})
		checkMount(t, mnt)
		return cmd, exited
	}
	exitsCleanly := func(t *testing.T, exited <-chan error, after string) {
		t.Helper()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the daemon exited with %v after %s", err, after)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("the daemon did not exit after %s", after)
		}
	}

	if fi, err := os.Stat("/dev/fuse"); err == nil && fi.Mode().Perm()&0o006 != 0o006 {
		// This machine keeps /dev/fuse from users: fusermount3 fails, and
		// the reason must reach the user even through --daemon.
		t.Run("no access to /dev/fuse", func(t *testing.T) {
			out, err := runNobody(bin, "mount", "--daemon", "--cache-dir", nbDir(t, "ncache"), repo, nbDir(t, "nmnt"))
			if err == nil || !strings.Contains(out, "/dev/fuse: permission denied") {
				t.Errorf("mount --daemon as nobody with /dev/fuse %v: %v: %q; want a non-zero exit naming /dev/fuse", fi.Mode().Perm(), err, out)
			}
		})
	}
	fuseForAll(t)

	conf, _ := os.ReadFile("/etc/fuse.conf")
	if !slices.ContainsFunc(strings.Split(string(conf), "\n"), func(l string) bool { return strings.TrimSpace(l) == "user_allow_other" }) {
		// fusermount3 refuses allow_other to users unless fuse.conf allows it.
		t.Run("allow-other refused", func(t *testing.T) {
			out, err := runNobody(bin, "mount", "--daemon", "--allow-other", "--cache-dir", nbDir(t, "acache"), repo, nbDir(t, "amnt"))
			if err == nil || !strings.Contains(out, "user_allow_other in /etc/fuse.conf") {
				t.Errorf("mount --daemon --allow-other as nobody: %v: %q; want a non-zero exit naming user_allow_other", err, out)
			}
		})
	}

	t.Run("foreground", func(t *testing.T) {
		mnt, cacheDir := nbDir(t, "mnt"), nbDir(t, "cache")
		_, exited := foreground(t, mnt, cacheDir)
		unmount(t, mnt)
		exitsCleanly(t, exited, "hashfs unmount")
		if fi, err := os.Stat(filepath.Join(cacheDir, "lock")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(nb.uid) {
			t.Errorf("cache lock %v: want a file owned by nobody", err)
		}
	})

	t.Run("SIGTERM", func(t *testing.T) {
		mnt := nbDir(t, "smnt")
		cmd, exited := foreground(t, mnt, nbDir(t, "scache"))
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		exitsCleanly(t, exited, "SIGTERM")
		if len(mountsAt(t, mnt)) != 0 {
			t.Errorf("%s still mounted after SIGTERM", mnt)
		}
	})

	t.Run("daemon", func(t *testing.T) {
		mnt, cacheDir, logDir := nbDir(t, "dmnt"), nbDir(t, "dcache"), nbDir(t, "log")
		t.Cleanup(func() {
			if len(mountsAt(t, mnt)) > 0 {
				detach(mnt)
			}
		})
		logFile := filepath.Join(logDir, "hashfs.log")
		start := time.Now()
		if out, err := runNobody(bin, "mount", "--daemon", "--log-file", logFile, "--cache-dir", cacheDir, repo, mnt); err != nil {
			t.Fatalf("mount --daemon as nobody: %v: %s", err, out)
		}
		if len(mountsAt(t, mnt)) != 1 {
			t.Fatalf("mount --daemon returned after %v but nothing is mounted", time.Since(start))
		}
		checkMount(t, mnt)
		unmount(t, mnt, "--lazy")
		if !waitFor(10*time.Second, func() bool { b, _ := os.ReadFile(logFile); return strings.Contains(string(b), "unmounted") }) {
			b, _ := os.ReadFile(logFile)
			t.Errorf("the daemon logged no clean unmount:\n%s", b)
		}
		if out, err := runNobody(bin, "unmount", mnt); err == nil || !strings.Contains(out, "not a hashfs mount") {
			t.Errorf("hashfs unmount of a directory no longer mounted: %v: %s", err, out)
		}
	})
}

type account struct{ uid, gid int }

// lookupNobody finds the unprivileged account the test mounts as.
func lookupNobody(t *testing.T) account {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		missing(t, "user nobody: %v", err)
		return account{}
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		t.Fatalf("user nobody: uid %q gid %q", u.Uid, u.Gid)
	}
	return account{uid, gid}
}

// fuseForAll makes /dev/fuse 0666, as udev does on a stock system, and
// puts its mode back when the test ends.
func fuseForAll(t *testing.T) {
	t.Helper()
	fi, err := os.Stat("/dev/fuse")
	if err != nil {
		missing(t, "/dev/fuse: %v", err)
		return
	}
	if fi.Mode().Perm() == 0o666 {
		return
	}
	if err := os.Chmod("/dev/fuse", 0o666); err != nil {
		missing(t, "chmod 0666 /dev/fuse: %v", err)
		return
	}
	t.Cleanup(func() {
		if err := os.Chmod("/dev/fuse", fi.Mode().Perm()); err != nil {
			t.Errorf("restoring /dev/fuse to %v: %v", fi.Mode().Perm(), err)
		}
	})
}

// mountOptions returns the per-mount and the super options of the mount
// of type fstype at dir, or empty strings when there is none.
func mountOptions(t *testing.T, dir, fstype string) (opts, super string) {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent maj:min root point opts [tags] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		a, b := strings.Fields(pre), strings.Fields(post)
		if ok && len(a) >= 6 && len(b) >= 3 && unescapeMount(a[4]) == dir && b[0] == fstype {
			opts, super = a[5], b[2]
		}
	}
	return opts, super
}

func hasOption(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// copyFile copies src to dst with mode.
func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}
