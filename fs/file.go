package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/internal/hfserr"
	"github.com/hashfs/hashfs/manifestview"
)

// fileNode is one content-addressed file: a blob read through the cache,
// or a manifest document (doc) served from the verified document store.
type fileNode struct {
	gofs.Inode
	readOnly
	root *Root
	desc manifestview.Desc
	doc  bool
	docs Docs // where a document's bytes come from

	mu          sync.Mutex
	cachedOpens int      // handles the kernel reads through the daemon
	passOpens   int      // handles offered for passthrough; they share backing
	backing     *os.File // the blob's whole, verified file while passOpens > 0
	hadCached   bool     // an ordinary handle was opened since the last run of passthrough handles began (release.go)
	// passReady is closed once go-fuse is done with the ordinary
	// handles released before the current run of passthrough handles
	// began; nil if none needed waiting for.
	passReady chan struct{}
}

var (
	_ = (gofs.NodeGetattrer)((*fileNode)(nil))
	_ = (gofs.NodeOpener)((*fileNode)(nil))
	_ = (gofs.NodeReader)((*fileNode)(nil))
	_ = (gofs.NodeGetxattrer)((*fileNode)(nil))
	_ = (gofs.NodeListxattrer)((*fileNode)(nil))
	_ = (gofs.NodeOnForgetter)((*fileNode)(nil))
)

// OnForget is called when the kernel has dropped the inode.
func (f *fileNode) OnForget() { f.root.forget(f.desc.Digest, f.EmbeddedInode()) }

// newFile returns the inode for desc under parent. The inode number
// derives from the digest and the size, so a manifest that lies about a
// blob's size gets its own inode and cannot poison the honest one; the
// generation from the metadata desc shows (descGen), so that each path
// answers its own descriptor's xattrs.
func (r *Root) newFile(ctx context.Context, parent *gofs.Inode, docs Docs, desc manifestview.Desc, doc bool, out *fuse.EntryOut) *gofs.Inode {
	n := &fileNode{root: r, desc: desc, doc: doc, docs: docs}
	ch := parent.NewInode(ctx, n, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: desc.Digest.Ino(desc.Size), Gen: descGen(desc)})
	if out != nil {
		n.fill(&out.Attr)
	}
	r.remember(desc.Digest, ch)
	return ch
}

func (f *fileNode) fill(a *fuse.Attr) { f.root.contentAttr(a, f.desc.Digest, f.desc.Size) }

// Getattr reports a read-only regular file of the descriptor's size.
func (f *fileNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.fill(&out.Attr)
	return 0
}

// Open pins the blob in the cache for the life of the handle. Bytes the
// kernel keeps in its page cache were verified (strict, or lazy once the
// whole blob verified), so digest-addressed content keeps the page cache.
//
// When the kernel takes passthrough backing files and the blob is whole
// on disk (cache.Reader.Backing: in strict mode after waiting for its
// verification, as the first read would), the handle hands the kernel
// the blob's file and reads bypass the daemon. The kernel refuses to mix
// passthrough and ordinary opens of one inode (the open fails with EIO),
// so a node with ordinary handles open gets another ordinary one, and
// one with passthrough handles open gets another passthrough one.
func (f *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if isWriteOpen(flags) {
		return nil, 0, syscall.EROFS
	}
	if f.doc {
		ctx, cancel := f.root.opctx(ctx)
		defer cancel()
		doc, err := f.docs.Manifest(ctx, f.desc.Digest)
		if err != nil {
			return nil, 0, f.root.fail("open manifest", f.desc, err)
		}
		return &docHandle{body: doc.Body}, fuse.FOPEN_KEEP_CACHE, 0
	}
	c := f.root.cfg.Cache
	var fl uint32
	if c.Mode() == cache.Strict || c.Status(f.desc.Digest, f.desc.Size).Verified {
		fl = fuse.FOPEN_KEEP_CACHE
	}
	h := &blobHandle{root: f.root, node: f, desc: f.desc, r: c.Open(f.desc.Digest, f.desc.Size)}
	select {
	case <-f.root.decided:
	case <-ctx.Done():
		h.r.Close()
		return nil, 0, syscall.EINTR
	}
	f.mu.Lock()
	try := f.passOpens == 0 && f.cachedOpens == 0 && f.root.passthrough.Load()
	f.mu.Unlock()
	var backing *os.File
	if try {
		var err error
		if backing, err = h.r.Backing(ctx); err != nil {
			f.root.cfg.Logger.Debug("open without passthrough", "digest", f.desc.Digest.String(), "err", err)
		}
	}
	f.mu.Lock()
	var ready chan struct{} // to wait for before go-fuse registers a backing id
	first := false
	switch {
	case f.passOpens > 0:
		f.passOpens++
		h.pass = true
		ready = f.passReady
	case backing != nil && f.cachedOpens == 0:
		f.backing, backing = backing, nil
		f.passOpens = 1
		h.pass = true
		first, f.hadCached, f.passReady = f.hadCached, false, nil
		if first { // this run waits for go-fuse to finish those ordinary handles
			f.passReady = make(chan struct{})
			ready = f.passReady
		}
	default:
		f.cachedOpens++
		f.hadCached = true
	}
	f.mu.Unlock()
	if backing != nil {
		backing.Close()
	}
	// Before go-fuse registers a backing id for this run of passthrough
	// handles, it must be done with the ordinary handles released so
	// far; the run's later opens wait for its first one to see to that.
	if first {
		f.root.releasesDone()
		close(ready)
	} else if ready != nil {
		<-ready
	}
	return h, fl, 0
}

// Read serves through the handle.
func (f *fileNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if r, ok := fh.(gofs.FileReader); ok {
		return r.Read(ctx, dest, off)
	}
	return nil, syscall.EBADF
}

type blobHandle struct {
	root *Root
	node *fileNode
	desc manifestview.Desc
	r    *cache.Reader
	pass bool // counted in node.passOpens: offered to the kernel for passthrough
}

var (
	_ = (gofs.FileReader)((*blobHandle)(nil))
	_ = (gofs.FileReleaser)((*blobHandle)(nil))
	_ = (gofs.FilePassthroughFder)((*blobHandle)(nil))
)

// PassthroughFd gives go-fuse the blob's file for the kernel to read,
// when Open chose passthrough. go-fuse asks once per inode while none of
// its handles holds a backing id; every later open of the inode shares
// that id, since all blob handles implement this interface.
func (h *blobHandle) PassthroughFd() (int, bool) {
	n := h.node
	n.mu.Lock()
	defer n.mu.Unlock()
	if !h.pass || n.backing == nil {
		return 0, false
	}
	return int(n.backing.Fd()), true
}

func (h *blobHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h.pass && h.root.passthrough.CompareAndSwap(true, false) {
		// go-fuse stops registering backing files after the kernel
		// refused one; stop waiting and hashing for passthrough opens.
		h.root.cfg.Logger.Info("the kernel refused a passthrough backing file; reads go through the daemon")
	}
	n, err := h.r.ReadAt(ctx, dest, off)
	// Only the cache's own bare io.EOF means end of blob: a transport
	// error may wrap io.EOF too ("Get …: EOF"), and must stay an error.
	if err != nil && err != io.EOF {
		return nil, h.root.fail("read", h.desc, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *blobHandle) Release(ctx context.Context) syscall.Errno {
	n := h.node
	n.mu.Lock()
	if !h.pass {
		n.cachedOpens--
	} else if n.passOpens--; n.passOpens == 0 {
		n.backing.Close()
		n.backing = nil
	}
	n.mu.Unlock()
	h.r.Close()
	return 0
}

type docHandle struct{ body []byte }

var _ = (gofs.FileReader)((*docHandle)(nil))

func (h *docHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.body)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(h.body[off:min(int64(len(h.body)), off+int64(len(dest)))]), 0
}

// fail logs err once with what was asked and returns its errno.
func (r *Root) fail(op string, desc manifestview.Desc, err error) syscall.Errno {
	e := toErrno(err)
	switch {
	case e == syscall.EINTR:
	case errors.Is(err, hfserr.ErrNotFound) && !errors.Is(err, hfserr.ErrInvalid):
		// Asking for a digest that is not there is routine (contentid probes).
		r.cfg.Logger.Debug(op+" failed", "digest", desc.Digest.String(), "errno", e.Error(), "err", err)
	default:
		r.cfg.Logger.Warn(op+" failed", "digest", desc.Digest.String(), "errno", e.Error(), "err", err)
		r.recordFailure(Failure{Time: time.Now(), Op: op, Digest: desc.Digest.String(), Errno: e.Error(), Err: err.Error()})
	}
	return e
}
