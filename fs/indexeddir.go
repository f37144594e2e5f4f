package fs

import (
	"context"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/hashfs/hashfs/internal/layerindex"
	"github.com/hashfs/hashfs/manifestview"
)

// indexedDir is the top of a tree that layer indexes describe: a layer
// (layers/<n>/, an ORAS directory) or an image's rootfs/. build makes the
// tree on first use; it is kept from then on.
type indexedDir struct {
	gofs.Inode
	readOnly
	root  *Root
	build func(ctx context.Context) (*layerindex.Node, error)
	what  string            // the operation, for the failure log
	desc  manifestview.Desc // the layer or manifest, for the failure log

	mu   sync.Mutex
	node *layerindex.Node
}

var (
	_ = (gofs.NodeLookuper)((*indexedDir)(nil))
	_ = (gofs.NodeReaddirer)((*indexedDir)(nil))
	_ = (gofs.NodeGetattrer)((*indexedDir)(nil))
)

// tree builds the tree once and returns it.
func (d *indexedDir) tree(ctx context.Context) (*layerindex.Node, syscall.Errno) {
	d.mu.Lock()
	n := d.node
	d.mu.Unlock()
	if n != nil {
		return n, 0
	}
	ctx, cancel := d.root.opctx(ctx)
	defer cancel()
	n, err := d.build(ctx)
	if err != nil {
		return nil, d.root.fail(d.what, d.desc, err)
	}
	d.mu.Lock()
	d.node = n
	d.mu.Unlock()
	return n, 0
}

// Getattr shows the tree top's tar entry once built; before that, and for
// a top without an entry of its own, a plain read-only directory.
func (d *indexedDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.mu.Lock()
	n := d.node
	d.mu.Unlock()
	if n == nil || n.Entry == nil {
		d.root.dirAttr(&out.Attr)
		return 0
	}
	d.root.tarAttr(&out.Attr, n)
	return 0
}

func (d *indexedDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n, errno := d.tree(ctx)
	if errno != 0 {
		return nil, errno
	}
	return d.root.tarLookup(ctx, d.EmbeddedInode(), n, name, out)
}

func (d *indexedDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	n, errno := d.tree(ctx)
	if errno != 0 {
		return nil, errno
	}
	return tarReaddir(n), 0
}
