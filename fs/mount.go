package fs

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Kernel-facing settings. Reads arrive in up to 1 MiB requests (MaxWrite
// also sets max_read and max_pages), and the kernel reads ahead 1 MiB,
// matching the default chunk size.
const (
	maxRequest    = 1 << 20
	maxReadAhead  = 1 << 20
	maxBackground = 64
	// Digest-addressed content never changes: entries and attributes
	// may be cached for as long as the kernel likes.
	immutableTimeout = time.Hour
	// An unknown digest may be pushed later: forget "no such file" soon.
	negativeTimeout = 5 * time.Second
)

// MountOptions are the user's choices for the mount itself.
type MountOptions struct {
	FsName     string // shown in /proc/mounts, e.g. hashfs:ghcr.io/ns/repo
	AllowOther bool   // let other users in; permissions are then enforced by the kernel
	FuseDebug  bool   // log every FUSE request
	Logger     *slog.Logger
}

// Mount mounts root at dir: mount(2) directly when root, fusermount3
// otherwise. It returns once the kernel has the mount.
func Mount(dir string, root *Root, o MountOptions) (*fuse.Server, error) {
	if err := CheckMountpoint(dir, o.Logger); err != nil {
		return nil, err
	}
	mo := fuse.MountOptions{
		FsName:        o.FsName,
		Name:          "hashfs",
		AllowOther:    o.AllowOther,
		Debug:         o.FuseDebug,
		MaxWrite:      maxRequest,
		MaxReadAhead:  maxReadAhead,
		MaxBackground: maxBackground,
		DirectMount:   true,
		// Reads answer from memory; splicing would only add a pipe (and
		// fails for 1 MiB replies, which exceed the default pipe size).
		DisableSplice:    true,
		DirectMountFlags: syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY,
		Options:          []string{"default_permissions"},
	}
	if os.Geteuid() != 0 {
		mo.Options = append(mo.Options, "ro") // fusermount3 understands ro; mount(2) takes it as a flag
	}
	if o.Logger != nil {
		mo.Logger = log.New(os.Stderr, "fuse: ", 0)
	}
	long, neg := immutableTimeout, negativeTimeout
	raw := gofs.NewNodeFS(root, &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &long,
		AttrTimeout:     &long,
		NegativeTimeout: &neg,
	})
	// What gofs.Mount does, with RELEASEs ordered before passthrough
	// opens (release.go).
	srv, err := fuse.NewServer(releaseOrder{raw, &root.releasing}, dir, &mo)
	if err == nil {
		go srv.Serve()
		err = srv.WaitMount()
	}
	if err != nil {
		// go-fuse ends fusermount's exit status with a newline.
		return nil, fmt.Errorf("mount %s: %s (%s)", dir, strings.TrimSpace(err.Error()), mountHint(o.AllowOther))
	}
	if err := setReadahead(dir, maxReadAhead); err != nil && o.Logger != nil {
		o.Logger.Debug("kernel readahead left at its default", "err", err)
	}
	if err := enablePassthrough(srv, root); err != nil && o.Logger != nil {
		o.Logger.Info("FUSE passthrough off: every read goes through the daemon", "reason", err)
	}
	root.decideOnce.Do(func() { close(root.decided) })
	return srv, nil
}

// mountHint is the likeliest reason a mount failed. fusermount3 opens
// /dev/fuse as the calling user, which stock udev allows (0666), and
// lets users ask for allow_other only if /etc/fuse.conf says so.
func mountHint(allowOther bool) string {
	if os.Geteuid() != 0 {
		if err := unix.Access("/dev/fuse", unix.R_OK|unix.W_OK); err != nil {
			return fmt.Sprintf("/dev/fuse: %v; mounting as a user needs it readable and writable by all, 0666, as udev makes it", err)
		}
		if conf, _ := os.ReadFile("/etc/fuse.conf"); allowOther && !userAllowOther(string(conf)) {
			return "--allow-other as a user needs user_allow_other in /etc/fuse.conf"
		}
	}
	return "is fuse3 installed and /dev/fuse usable?"
}

// userAllowOther reports whether a fuse.conf enables user_allow_other.
func userAllowOther(conf string) bool {
	for _, line := range strings.Split(conf, "\n") {
		if strings.TrimSpace(line) == "user_allow_other" {
			return true
		}
	}
	return false
}

// CheckMountpoint makes sure dir is a directory we can mount on. A stale
// mount left by a killed daemon ("transport endpoint is not connected")
// is detached first. statfs is asked rather than stat: the kernel may
// answer stat from cached attributes of the dead mount's root.
func CheckMountpoint(dir string, logger *slog.Logger) error {
	var sfs syscall.Statfs_t
	err := syscall.Statfs(dir, &sfs)
	if errors.Is(err, syscall.ENOTCONN) {
		if logger != nil {
			logger.Warn("detaching stale mount left by a previous daemon", "mountpoint", dir)
		}
		if err := Detach(dir); err != nil {
			return fmt.Errorf("mountpoint %s is a stale mount: %w", dir, err)
		}
		err = syscall.Statfs(dir, &sfs)
	}
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	if sfs.Type == fuseSuperMagic && isHashfsMount(dir) {
		return fmt.Errorf("mountpoint %s: a hashfs mount is already there; unmount it first", dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", dir)
	}
	return nil
}

const fuseSuperMagic = 0x65735546

// isHashfsMount reports whether dir itself is the root of a live hashfs mount.
func isHashfsMount(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	ms, _ := Mounts()
	return slices.Contains(ms, abs)
}

// Mounts lists the mountpoints of hashfs mounts (fuse.hashfs in
// /proc/self/mountinfo).
func Mounts() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint opts... - fstype source superopts
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		if ok && len(f) >= 5 && strings.HasPrefix(post, "fuse.hashfs ") {
			out = append(out, unescapeMountinfo(f[4]))
		}
	}
	return out, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Detach lazily unmounts dir: umount2(MNT_DETACH) as root, else
// fusermount3 -u -z.
func Detach(dir string) error {
	uerr := syscall.Unmount(dir, syscall.MNT_DETACH)
	if uerr == nil {
		return nil
	}
	if out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("could not detach %s: %v; fusermount3: %v: %s", dir, uerr, err, out)
	}
	return nil
}

// setReadahead raises the kernel's readahead window for the mount, which
// is 128 KiB for a new FUSE mount whatever max_readahead says: sequential
// readers then arrive in requests of up to n bytes. It needs root (it
// writes /sys/class/bdi/<major:minor>/read_ahead_kb).
func setReadahead(dir string, n int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(p, []byte(fmt.Sprint(n>>10)), 0)
}
