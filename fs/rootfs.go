package fs

import (
	"context"
	"fmt"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sync/errgroup"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
	"github.com/hashfs/hashfs/internal/layerindex"
	"github.com/hashfs/hashfs/manifestview"
)

// rootfs answers the lookup of a tree's Rootfs node:
// manifests/sha256:<m>/rootfs/, the image's layers merged in order with
// whiteouts applied, what `crane export` writes, built from the layers'
// indexes on first use. Every layer must match its diff_id in the image
// config (as containerd requires before unpacking); otherwise the
// directory answers EIO.
func (t *treeDir) rootfs(ctx context.Context, n *manifestview.Node, out *fuse.EntryOut) *gofs.Inode {
	repo, m := t.view.repo, n.Desc.Digest
	d := &indexedDir{root: t.root, what: "build rootfs", desc: n.Desc,
		build: func(ctx context.Context) (*layerindex.Node, error) {
			layers, err := t.root.imageLayers(ctx, repo, m)
			if err != nil {
				return nil, err
			}
			return layerindex.Merge(layers), nil
		}}
	t.root.dirAttr(&out.Attr)
	return t.NewInode(ctx, d, gofs.StableAttr{Mode: fuse.S_IFDIR})
}

// indexParallel is how many layers of one image are indexed at once.
const indexParallel = 3

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
