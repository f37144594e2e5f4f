// Package fs is the thin go-fuse adapter of hashfs: it turns lookups and
// reads into calls on manifestview (names) and cache (bytes), and maps
// their errors to errno in one place (errno.go).
package fs

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/manifestview"
)

// Stater tells the size and media type of any digest of the repository,
// also ones never seen in a manifest (HEAD on the registry).
type Stater interface {
	Stat(ctx context.Context, d digest.Digest) (manifestview.Desc, error)
}

// Config wires the filesystem to the packages that do the work.
type Config struct {
	Repo    *manifestview.Repo
	Cache   *cache.Cache
	Stater  Stater
	TagTTL  time.Duration // entry timeout of tags/ symlinks
	Logger  *slog.Logger
	Timeout time.Duration // upper bound for one metadata operation; 0 => 2m
	// Status, if set, is served as JSON in the root's user.hashfs.status xattr.
	Status func() ([]byte, error)
}

// Root is the mount's root directory: sha256/, tags/, manifests/.
type Root struct {
	gofs.Inode
	readOnly
	cfg Config

	mtime time.Time // shown on every node: content has no meaningful mtime

	mu       sync.Mutex
	files    map[digest.Digest][]*gofs.Inode // open-able blob inodes, for Invalidate
	errors   int64                           // operations that failed with other than ENOENT
	failures []Failure                       // the most recent of them
}

var _ = (gofs.NodeOnAdder)((*Root)(nil))

// NewRoot returns the root node for cfg.
func NewRoot(cfg Config) *Root {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	return &Root{cfg: cfg, mtime: time.Now(), files: map[digest.Digest][]*gofs.Inode{}}
}

// OnAdd builds the fixed top level.
func (r *Root) OnAdd(ctx context.Context) {
	dir := fuse.S_IFDIR
	r.AddChild("sha256", r.NewPersistentInode(ctx, &shardDir{root: r}, gofs.StableAttr{Mode: uint32(dir)}), false)
	r.AddChild("tags", r.NewPersistentInode(ctx, &tagsDir{root: r}, gofs.StableAttr{Mode: uint32(dir)}), false)
	r.AddChild("manifests", r.NewPersistentInode(ctx, &manifestsDir{root: r}, gofs.StableAttr{Mode: uint32(dir)}), false)
}

// Getattr makes the root read-only in its mode bits too. Its attributes
// are not cached (1ns), so that after a crash stat(mountpoint) reports
// ENOTCONN instead of the dead mount's cached attributes.
func (r *Root) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.dirAttr(&out.Attr)
	out.SetTimeout(time.Nanosecond)
	return 0
}

// dirAttr fills the attributes every directory shares.
func (r *Root) dirAttr(a *fuse.Attr) {
	a.Mode = fuse.S_IFDIR | 0o555
	a.Nlink = 2
	r.times(a)
}

func (r *Root) times(a *fuse.Attr) {
	t := uint64(r.mtime.Unix())
	a.Mtime, a.Atime, a.Ctime = t, t, t
}

// Invalidate drops the kernel's page cache for every inode of d. It runs
// in its own goroutine: a notification sent while the kernel waits on a
// READ of the same inode would deadlock.
func (r *Root) Invalidate(d digest.Digest) {
	r.mu.Lock()
	nodes := append([]*gofs.Inode(nil), r.files[d]...)
	r.mu.Unlock()
	go func() {
		for _, n := range nodes {
			n.NotifyContent(0, 0)
		}
	}()
}

// forget drops n once the kernel has forgotten it, so that a long-lived
// daemon does not hold every inode it ever handed out.
func (r *Root) forget(d digest.Digest, n *gofs.Inode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[d] = slices.DeleteFunc(r.files[d], func(m *gofs.Inode) bool { return m == n })
	if len(r.files[d]) == 0 {
		delete(r.files, d)
	}
}

func (r *Root) remember(d digest.Digest, n *gofs.Inode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.files[d] {
		if m == n {
			return
		}
	}
	r.files[d] = append(r.files[d], n)
}

// opctx bounds a metadata operation so a hung registry cannot hang ls.
func (r *Root) opctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.Timeout)
}
