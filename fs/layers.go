package fs

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
	"github.com/hashfs/hashfs/internal/layerindex"
	"github.com/hashfs/hashfs/manifestview"
)

// The files inside layers: manifests/sha256:<m>/layers/<n>/ (and an ORAS
// directory at its title) show a tar layer's tree as layerindex indexed
// it. Every compressed byte is read through the cache (cache.Reader), so
// what is served obeys the verification mode exactly like the blob; a
// layer listed from its TOC also checks every chunk of a file against
// the TOC's digest before serving it.

// cacheLayers is the layerindex.Source of the mount: the cache.
type cacheLayers struct{ c *cache.Cache }

func (s cacheLayers) Open(d digest.Digest, size int64) layerindex.BlobCloser {
	return s.c.Open(d, size)
}

// Peek reads a layer's TOC without waiting for the layer to verify: the
// layerindex checks it against the digest the manifest gives it.
func (s cacheLayers) Peek(ctx context.Context, d digest.Digest, size, off, n int64) ([]byte, error) {
	return s.c.Peek(ctx, d, size, off, n)
}

func (s cacheLayers) State(d digest.Digest, size int64) (bool, bool) {
	st := s.c.Status(d, size)
	return st.Verified, st.Quarantined
}

// newIndexer makes the mount's layer indexer, storing indexes in
// cfg.LayerIndexDir (in memory only when it is empty or unusable).
func newIndexer(cfg Config) *layerindex.Indexer {
	o := layerindex.Options{Logger: cfg.Logger}
	if cfg.LayerIndexDir != "" {
		st, err := layerindex.OpenStore(cfg.LayerIndexDir, cfg.LayerIndexMax)
		if err != nil {
			cfg.Logger.Warn("layer indexes kept in memory only", "err", err)
		}
		o.Store = st
	}
	return layerindex.New(cacheLayers{cfg.Cache}, o)
}

// layer answers the lookup of a tree's Layer node: the tar's root for
// layers/<n>, or for an ORAS directory the tar's directory at its title
// (the root if the tar has none). The layer is indexed on first use, not
// on lookup, so that ls layers/ is cheap: from its eStargz or
// zstd:chunked table of contents when the descriptor announces one (only
// the TOC is fetched, checked against the digest the manifest gives it),
// otherwise by a pass over the whole layer.
func (t *treeDir) layer(ctx context.Context, n *manifestview.Node, out *fuse.EntryOut) *gofs.Inode {
	desc, sub := n.Desc, ""
	if manifestview.IsUnpackDir(desc) {
		sub = layerindex.CleanName(desc.Annotations[manifestview.AnnotationTitle])
	}
	d := &indexedDir{root: t.root, what: "index layer", desc: desc,
		build: func(ctx context.Context) (*layerindex.Node, error) {
			l, err := t.root.layers.LayerFor(ctx, desc.Digest, desc.Size, desc.Annotations)
			if err != nil {
				return nil, err
			}
			if sub != "" {
				if s := l.Root.Walk(sub); s != nil && s.IsDir() {
					return s, nil
				}
			}
			return l.Root, nil
		}}
	t.root.dirAttr(&out.Attr)
	return t.NewInode(ctx, d, gofs.StableAttr{Mode: fuse.S_IFDIR})
}

// tarNode is what every node inside a layer or a rootfs has: its place in
// the index's tree, shown with the tar entry's attributes.
type tarNode struct {
	gofs.Inode
	readOnly
	root *Root
	node *layerindex.Node
}

var _ = (gofs.NodeGetattrer)((*tarNode)(nil))

func (t *tarNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	t.root.tarAttr(&out.Attr, t.node)
	return 0
}

// tarDir is a directory inside a layer or a rootfs.
type tarDir struct{ tarNode }

var (
	_ = (gofs.NodeLookuper)((*tarDir)(nil))
	_ = (gofs.NodeReaddirer)((*tarDir)(nil))
	_ = (gofs.NodeGetattrer)((*tarDir)(nil))
)

func (d *tarDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return d.root.tarLookup(ctx, d.EmbeddedInode(), d.node, name, out)
}

func (d *tarDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return tarReaddir(d.node), 0
}

// tarLookup finds name in dir and makes its inode.
func (r *Root) tarLookup(ctx context.Context, parent *gofs.Inode, dir *layerindex.Node, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	c := dir.Child(name)
	if c == nil {
		return nil, syscall.ENOENT
	}
	r.tarAttr(&out.Attr, c)
	mode := tarMode(c) &^ 0o7777
	switch mode {
	case fuse.S_IFDIR:
		return parent.NewInode(ctx, &tarDir{tarNode{root: r, node: c}}, gofs.StableAttr{Mode: mode}), 0
	case fuse.S_IFLNK:
		return parent.NewInode(ctx, &tarLink{tarNode{root: r, node: c}}, gofs.StableAttr{Mode: mode, Ino: tarIno(c)}), 0
	case fuse.S_IFREG:
		ch := parent.NewInode(ctx, &tarFile{tarNode{root: r, node: c}}, gofs.StableAttr{Mode: mode, Ino: tarIno(c)})
		r.remember(c.Layer.Digest, ch)
		return ch, 0
	}
	return parent.NewInode(ctx, &tarSpecial{tarNode{root: r, node: c}}, gofs.StableAttr{Mode: mode, Ino: tarIno(c)}), 0
}

func tarReaddir(dir *layerindex.Node) gofs.DirStream {
	ents := make([]fuse.DirEntry, 0, len(dir.Children))
	for _, c := range dir.Children {
		e := fuse.DirEntry{Name: c.Name, Mode: tarMode(c) &^ 0o7777}
		if !c.IsDir() {
			e.Ino = tarIno(c)
		}
		ents = append(ents, e)
	}
	return gofs.NewListDirStream(ents)
}

// tarIno numbers a file of a layer from the layer's digest and the
// entry, so that hard links share an inode (and the same file shows the
// same inode under layers/ and rootfs/).
func tarIno(n *layerindex.Node) uint64 {
	var b [32 + 8]byte
	copy(b[:], n.Layer.Digest[:])
	binary.LittleEndian.PutUint64(b[32:], uint64(n.ID))
	s := sha256.Sum256(b[:])
	return binary.LittleEndian.Uint64(s[:8]) | 1<<63
}

// tarMode is the file type and permission bits of a node, from its tar
// header (setuid, setgid and sticky kept: the mount is nosuid anyway).
func tarMode(n *layerindex.Node) uint32 {
	e := n.Entry
	if e == nil {
		return fuse.S_IFDIR | 0o755
	}
	perm := uint32(e.Mode) & 0o7777
	switch e.Type {
	case '5': // tar.TypeDir
		return fuse.S_IFDIR | perm
	case '2':
		return fuse.S_IFLNK | 0o777
	case '3':
		return syscall.S_IFCHR | perm
	case '4':
		return syscall.S_IFBLK | perm
	case '6':
		return syscall.S_IFIFO | perm
	}
	return fuse.S_IFREG | perm
}

// tarAttr fills a node's attributes from its tar header: mode, owner,
// size, mtime, device numbers, link count.
func (r *Root) tarAttr(a *fuse.Attr, n *layerindex.Node) {
	a.Mode = tarMode(n)
	a.Nlink = uint32(max(n.Nlink, 1))
	if !n.IsDir() {
		a.Ino = tarIno(n)
	}
	e := n.Entry
	if e == nil {
		r.times(a)
		return
	}
	a.Uid, a.Gid = uint32(e.UID), uint32(e.GID)
	switch a.Mode &^ 0o7777 {
	case fuse.S_IFREG:
		a.Size = uint64(e.Size)
	case fuse.S_IFLNK:
		a.Size = uint64(len(e.Linkname))
	case syscall.S_IFCHR, syscall.S_IFBLK:
		a.Rdev = uint32(unix.Mkdev(uint32(e.Devmajor), uint32(e.Devminor)))
	}
	a.Blocks = (a.Size + 511) / 512
	t := uint64(max(e.ModTime, 0))
	a.Mtime, a.Atime, a.Ctime = t, t, t
	ns := uint32(e.ModNsec)
	a.Mtimensec, a.Atimensec, a.Ctimensec = ns, ns, ns
}

// tarLink is a symbolic link of a layer: its target is shown verbatim,
// whatever it points at; hashfs never follows it.
type tarLink struct{ tarNode }

var (
	_ = (gofs.NodeReadlinker)((*tarLink)(nil))
	_ = (gofs.NodeGetattrer)((*tarLink)(nil))
)

func (l *tarLink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(l.node.Entry.Linkname), 0
}

// tarSpecial is a device or fifo of a layer: attributes only (the mount
// is nodev).
type tarSpecial struct{ tarNode }

var _ = (gofs.NodeGetattrer)((*tarSpecial)(nil))

// tarFile is a regular file of a layer.
type tarFile struct{ tarNode }

var (
	_ = (gofs.NodeGetattrer)((*tarFile)(nil))
	_ = (gofs.NodeOpener)((*tarFile)(nil))
	_ = (gofs.NodeReader)((*tarFile)(nil))
	_ = (gofs.NodeOnForgetter)((*tarFile)(nil))
)

func (f *tarFile) OnForget() { f.root.forget(f.node.Layer.Digest, f.EmbeddedInode()) }

// Open reads through a Stream of the layer that pins the layer in the
// cache for the life of the handle. The page cache is kept when what
// reaches it is verified: always in strict mode, in lazy mode once the
// layer verified.
func (f *tarFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if isWriteOpen(flags) {
		return nil, 0, syscall.EROFS
	}
	l, errno := f.root.live(ctx, f.node.Layer)
	if errno != 0 {
		return nil, 0, errno
	}
	e := f.node.Entry
	if l != f.node.Layer {
		e = &l.Entries[f.node.ID] // indexed again: entries keep their numbers
	}
	return f.root.openStream(l, func(s *layerindex.Stream) streamReader { return layerindex.OpenFile(s, e) })
}

// live returns l, or l indexed again if it was dropped since (see fresh).
func (r *Root) live(ctx context.Context, l *layerindex.Layer) (*layerindex.Layer, syscall.Errno) {
	if !l.Dead() {
		return l, 0
	}
	ctx, cancel := r.opctx(ctx)
	defer cancel()
	return r.fresh(ctx, l)
}

// fresh returns the layer indexed again after l was dropped (a stored
// index found damaged, a lazy layer that failed and verified since).
func (r *Root) fresh(ctx context.Context, l *layerindex.Layer) (*layerindex.Layer, syscall.Errno) {
	desc := manifestview.Desc{Digest: l.Digest, Size: l.Size}
	nl, err := r.layers.Again(ctx, l)
	if err != nil {
		return nil, r.fail("index layer", desc, err)
	}
	if len(nl.Entries) != len(l.Entries) || nl.DiffID != l.DiffID {
		return nil, r.fail("index layer", desc, fmt.Errorf("layer %s indexed again differs: %w", l.Digest, hfserr.ErrIntegrity))
	}
	return nl, 0
}

func (f *tarFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if r, ok := fh.(gofs.FileReader); ok {
		return r.Read(ctx, dest, off)
	}
	return nil, syscall.EBADF
}

// streamReader is what a handle reads: a file of a layer, or the whole
// uncompressed stream.
type streamReader interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
}

// openStream opens a handle reading what mk makes of a Stream of l.
func (r *Root) openStream(l *layerindex.Layer, mk func(*layerindex.Stream) streamReader) (gofs.FileHandle, uint32, syscall.Errno) {
	if err := l.Check(); err != nil {
		return nil, 0, r.fail("open in layer", manifestview.Desc{Digest: l.Digest, Size: l.Size}, err)
	}
	c := r.cfg.Cache
	var fl uint32
	if c.Mode() == cache.Strict || c.Status(l.Digest, l.Size).Verified {
		fl = fuse.FOPEN_KEEP_CACHE
	}
	blob := c.Open(l.Digest, l.Size)
	s := l.NewStream(blob)
	return &streamHandle{root: r, layer: manifestview.Desc{Digest: l.Digest, Size: l.Size}, s: s, blob: blob, r: mk(s)}, fl, 0
}

type streamHandle struct {
	root  *Root
	layer manifestview.Desc
	s     *layerindex.Stream
	blob  *cache.Reader
	r     streamReader
}

var (
	_ = (gofs.FileReader)((*streamHandle)(nil))
	_ = (gofs.FileReleaser)((*streamHandle)(nil))
)

func (h *streamHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.r.ReadAt(ctx, dest, off)
	// Only a bare io.EOF is the end: a transport error may wrap one.
	if err != nil && err != io.EOF {
		return nil, h.root.fail("read in layer", h.layer, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *streamHandle) Release(ctx context.Context) syscall.Errno {
	h.s.Close()
	h.blob.Close()
	return 0
}
