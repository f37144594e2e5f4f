package fs

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sync/errgroup"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
	"github.com/hashfs/hashfs/internal/layerindex"
	"github.com/hashfs/hashfs/manifestview"
)

// rootfsDir is manifests/sha256:<m>/rootfs/: the image's layers merged
// in order with whiteouts applied, what `crane export` writes, built
// from the layers' indexes on first use. Every layer must match its
// diff_id in the image config (as containerd requires before unpacking);
// otherwise the directory answers EIO.
type rootfsDir struct {
	gofs.Inode
	readOnly
	root *Root
	view *view
	desc manifestview.Desc // the manifest

	mu   sync.Mutex
	node *layerindex.Node
}

var (
	_ = (gofs.NodeLookuper)((*rootfsDir)(nil))
	_ = (gofs.NodeReaddirer)((*rootfsDir)(nil))
	_ = (gofs.NodeGetattrer)((*rootfsDir)(nil))
)

// rootfs answers the lookup of a tree's Rootfs node.
func (t *treeDir) rootfs(ctx context.Context, n *manifestview.Node, out *fuse.EntryOut) *gofs.Inode {
	t.root.dirAttr(&out.Attr)
	return t.NewInode(ctx, &rootfsDir{root: t.root, view: t.view, desc: n.Desc}, gofs.StableAttr{Mode: fuse.S_IFDIR})
}

// indexParallel is how many layers of one image are indexed at once.
const indexParallel = 3

func (d *rootfsDir) tree(ctx context.Context) (*layerindex.Node, syscall.Errno) {
	d.mu.Lock()
	n := d.node
	d.mu.Unlock()
	if n != nil {
		return n, 0
	}
	ctx, cancel := d.root.opctx(ctx)
	defer cancel()
	layers, err := d.root.imageLayers(ctx, d.view.repo, d.desc.Digest)
	if err != nil {
		return nil, d.root.fail("build rootfs", d.desc, err)
	}
	n = layerindex.Merge(layers)
	d.mu.Lock()
	d.node = n
	d.mu.Unlock()
	return n, 0
}

// imageLayers indexes every layer of image manifest m and checks each
// against its diff_id.
func (r *Root) imageLayers(ctx context.Context, docs Docs, m digest.Digest) ([]*layerindex.Layer, error) {
	doc, err := docs.Manifest(ctx, m)
	if err != nil {
		return nil, err
	}
	im, err := manifestview.ImageOf(doc)
	if err != nil {
		return nil, err
	}
	if !im.IsImage {
		return nil, fmt.Errorf("manifest %s is not an image of tar layers: %w", m, hfserr.ErrInvalid)
	}
	diffIDs, err := r.diffIDs(ctx, m, im)
	if err != nil {
		return nil, err
	}
	layers := make([]*layerindex.Layer, len(im.Layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(indexParallel)
	for i, desc := range im.Layers {
		g.Go(func() error {
			l, err := r.layers.Layer(gctx, desc.Digest, desc.Size)
			if err != nil {
				return err
			}
			if l.DiffID != diffIDs[i] {
				return fmt.Errorf("layer %d (%s) decompresses to %s, the config says %s: %w",
					i, desc.Digest, l.DiffID, diffIDs[i], hfserr.ErrIntegrity)
			}
			layers[i] = l
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return layers, nil
}

func (d *rootfsDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
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

func (d *rootfsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n, errno := d.tree(ctx)
	if errno != 0 {
		return nil, errno
	}
	return d.root.tarLookup(ctx, d.EmbeddedInode(), n, name, out)
}

func (d *rootfsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	n, errno := d.tree(ctx)
	if errno != 0 {
		return nil, errno
	}
	return tarReaddir(n), 0
}
