package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/manifestview"
)

// referrersDir is manifests/sha256:<m>/referrers/: one symlink per
// manifest whose subject is <m>, named by manifestview.ReferrerName and
// pointing at ../../sha256:<r>. The list is asked again after the tag TTL.
type referrersDir struct {
	gofs.Inode
	readOnly
	root    *Root
	view    *view
	subject digest.Digest
}

var (
	_ = (gofs.NodeLookuper)((*referrersDir)(nil))
	_ = (gofs.NodeReaddirer)((*referrersDir)(nil))
	_ = (gofs.NodeGetattrer)((*referrersDir)(nil))
)

// referrers answers the lookup of a tree's referrers/ node.
func (t *treeDir) referrers(ctx context.Context, n *manifestview.Node, out *fuse.EntryOut) *gofs.Inode {
	t.root.dirAttr(&out.Attr)
	d := &referrersDir{root: t.root, view: t.view, subject: n.Desc.Digest}
	return t.NewInode(ctx, d, gofs.StableAttr{Mode: fuse.S_IFDIR})
}

func (d *referrersDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.root.dirAttr(&out.Attr)
	return 0
}

func (d *referrersDir) list(ctx context.Context) ([]manifestview.Referrer, syscall.Errno) {
	ctx, cancel := d.root.opctx(ctx)
	defer cancel()
	refs, err := d.view.repo.Referrers(ctx, d.subject)
	if err != nil {
		return nil, d.root.fail("list referrers", manifestview.Desc{Digest: d.subject}, err)
	}
	return refs, 0
}

func (d *referrersDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	refs, errno := d.list(ctx)
	if errno != 0 {
		return nil, errno
	}
	for _, r := range refs {
		if r.Name != name {
			continue
		}
		target := "../../" + r.Desc.Digest.String()
		d.root.linkAttr(&out.Attr, target)
		out.SetEntryTimeout(d.root.cfg.TagTTL)
		out.SetAttrTimeout(d.root.cfg.TagTTL)
		return d.NewInode(ctx, &symlink{root: d.root, target: target}, gofs.StableAttr{Mode: fuse.S_IFLNK}), 0
	}
	return nil, syscall.ENOENT
}

func (d *referrersDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	refs, errno := d.list(ctx)
	if errno != 0 {
		return nil, errno
	}
	ents := make([]fuse.DirEntry, 0, len(refs))
	for _, r := range refs {
		ents = append(ents, fuse.DirEntry{Name: r.Name, Mode: fuse.S_IFLNK})
	}
	return gofs.NewListDirStream(ents), 0
}
