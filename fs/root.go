// Package fs is the thin go-fuse adapter of hashfs: it turns lookups and
// reads into calls on manifestview (names) and cache (bytes), and maps
// their errors to errno in one place (errno.go).
package fs

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/layerindex"
	"github.com/hashfs/hashfs/manifestview"
)

// Stater tells the size and media type of any digest of the repository,
// also ones never seen in a manifest (HEAD on the registry).
type Stater interface {
	Stat(ctx context.Context, d digest.Digest) (manifestview.Desc, error)
}

// Config wires the filesystem to the packages that do the work.
type Config struct {
	// Repo and Stater make a single-repository mount: sha256/, tags/ and
	// manifests/ at the root.
	Repo   *manifestview.Repo
	Stater Stater
	// Namespace, when set instead, makes a many-source mount: the root
	// has sha256/, answered by Index across every source, and one subtree
	// per repository (see Namespace).
	Namespace Namespace
	Index     Index

	Cache   *cache.Cache
	TagTTL  time.Duration // entry timeout of tags/ symlinks
	Logger  *slog.Logger
	Timeout time.Duration // upper bound for one metadata operation; 0 => 2m
	// Status, if set, is served as JSON in the root's user.hashfs.status xattr.
	Status func() ([]byte, error)
	// LayerIndexDir keeps the indexes of layers (see layers.go); "" keeps
	// them in memory only.
	LayerIndexDir string
	LayerIndexMax int64 // bytes of stored layer indexes; 0: no bound
}

// Root is the mount's root directory: sha256/, tags/, manifests/ of one
// repository, or sha256/ and the namespace of many.
type Root struct {
	gofs.Inode
	readOnly
	cfg Config

	mtime time.Time // shown on every node: content has no meaningful mtime

	passthrough atomic.Bool // the kernel takes cache files as backing files (Mount sets it)
	// decided is closed once Mount has asked the kernel about
	// passthrough: the kernel sends requests as soon as the mount is
	// live, and an open answered before then would read through the
	// daemon for as long as the file stays open.
	decided    chan struct{}
	decideOnce sync.Once
	// releasing orders RELEASEs before first passthrough opens (release.go).
	releasing sync.RWMutex

	layers *layerindex.Indexer // the files inside layers (layers.go)
	diffs  *diffIDSet          // diff_ids of the image configs read (diffid.go)

	mu       sync.Mutex
	files    map[digest.Digest][]*gofs.Inode // open-able blob inodes, for Invalidate
	errors   int64                           // operations that failed with other than ENOENT
	failures []Failure                       // the most recent of them
}

var (
	_ = (gofs.NodeOnAdder)((*Root)(nil))
	_ = (gofs.NodeLookuper)((*Root)(nil))
	_ = (gofs.NodeReaddirer)((*Root)(nil))
)

// NewRoot returns the root node for cfg.
func NewRoot(cfg Config) *Root {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	return &Root{cfg: cfg, mtime: time.Now(), files: map[digest.Digest][]*gofs.Inode{}, decided: make(chan struct{}),
		layers: newIndexer(cfg), diffs: newDiffIDSet()}
}

// OnAdd builds the fixed top level.
func (r *Root) OnAdd(ctx context.Context) {
	v := &view{repo: r.cfg.Repo, index: repoIndex{r.cfg.Repo, r.cfg.Stater}}
	names := reserved
	if r.cfg.Namespace != nil {
		v, names = &view{index: r.cfg.Index}, []string{"sha256"}
	}
	for _, name := range names {
		r.AddChild(name, r.NewPersistentInode(ctx, v.dir(r, name), gofs.StableAttr{Mode: fuse.S_IFDIR}), false)
	}
}

// Lookup finds the fixed directories, then (many-source) the namespace.
func (r *Root) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if ch := r.GetChild(name); ch != nil {
		r.dirAttr(&out.Attr)
		return ch, 0
	}
	if r.cfg.Namespace == nil {
		return nil, syscall.ENOENT
	}
	return r.nsLookup(ctx, r.EmbeddedInode(), "", name, out)
}

// Readdir lists the fixed directories and the namespace's top level.
func (r *Root) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	// Only the fixed directories and what the namespace lists: a name
	// merely looked up (below a registry without a catalog any name is a
	// possible namespace) is not listed.
	fixed := reserved
	if r.cfg.Namespace != nil {
		fixed = []string{"sha256"}
	}
	var ents []fuse.DirEntry
	for _, name := range fixed {
		ents = append(ents, fuse.DirEntry{Name: name, Mode: fuse.S_IFDIR})
	}
	if r.cfg.Namespace != nil {
		ents = append(ents, r.nsChildren(ctx, "", ents)...)
	}
	return gofs.NewListDirStream(ents), 0
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

// blksize is the st_blksize of a blob's file: the cache's chunk size (at
// most 4 MiB), as NFS reports its rsize. Readers that size their buffers
// by it (cat, cp, stdio, Python's io) then ask for whole chunks: one
// FUSE round trip per chunk for reads the daemon answers, and fewer
// system calls for those the kernel serves (passthrough, page cache).
func (r *Root) blksize() uint32 {
	return uint32(min(r.cfg.Cache.ChunkSize(), 4<<20))
}

// contentAttr fills the attributes of a read-only file holding the size
// bytes of digest d (a blob, or a layer's uncompressed tar).
func (r *Root) contentAttr(a *fuse.Attr, d digest.Digest, size int64) {
	a.Mode = fuse.S_IFREG | 0o444
	a.Size = uint64(size)
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = r.blksize()
	a.Ino = d.Ino(size)
	a.Nlink = 1
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
