package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/manifestview"
)

// manifestsDir is manifests/: sha256:<hex>/ for any manifest or index of
// the repository, laid out by manifestview.Build.
type manifestsDir struct {
	gofs.Inode
	readOnly
	root *Root
	view *view
}

var (
	_ = (gofs.NodeLookuper)((*manifestsDir)(nil))
	_ = (gofs.NodeReaddirer)((*manifestsDir)(nil))
	_ = (gofs.NodeGetattrer)((*manifestsDir)(nil))
)

func (m *manifestsDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	m.root.dirAttr(&out.Attr)
	return 0
}

func (m *manifestsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d, err := digest.Parse(name)
	if err != nil {
		return nil, syscall.ENOENT
	}
	ctx, cancel := m.root.opctx(ctx)
	defer cancel()
	tree, err := m.view.repo.Tree(ctx, d)
	if err != nil {
		return nil, m.root.fail("lookup manifest", manifestview.Desc{Digest: d}, err)
	}
	m.root.dirAttr(&out.Attr)
	return m.NewInode(ctx, &treeDir{root: m.root, view: m.view, node: tree}, gofs.StableAttr{Mode: fuse.S_IFDIR}), 0
}

func (m *manifestsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	var ents []fuse.DirEntry
	for _, desc := range m.view.repo.Known() {
		if manifestview.IsManifestType(desc.MediaType) {
			ents = append(ents, fuse.DirEntry{Name: desc.Digest.String(), Mode: fuse.S_IFDIR})
		}
	}
	return gofs.NewListDirStream(ents), 0
}

// treeDir is one directory of a manifest's tree.
type treeDir struct {
	gofs.Inode
	readOnly
	root *Root
	view *view
	node *manifestview.Node
}

var (
	_ = (gofs.NodeLookuper)((*treeDir)(nil))
	_ = (gofs.NodeReaddirer)((*treeDir)(nil))
	_ = (gofs.NodeGetattrer)((*treeDir)(nil))
)

func (t *treeDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	t.root.dirAttr(&out.Attr)
	return 0
}

func (t *treeDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	c := t.node.Child(name)
	if c == nil {
		return nil, syscall.ENOENT
	}
	switch c.Kind {
	case manifestview.Dir:
		t.root.dirAttr(&out.Attr)
		return t.NewInode(ctx, &treeDir{root: t.root, view: t.view, node: c}, gofs.StableAttr{Mode: fuse.S_IFDIR}), 0
	case manifestview.Symlink:
		t.root.linkAttr(&out.Attr, c.Target)
		return t.NewInode(ctx, &symlink{root: t.root, target: c.Target}, gofs.StableAttr{Mode: fuse.S_IFLNK}), 0
	case manifestview.Referrers:
		return t.referrers(ctx, c, out), 0
	case manifestview.Layer:
		return t.layer(ctx, c, out), 0
	case manifestview.Rootfs:
		return t.rootfs(ctx, c, out), 0
	}
	return t.root.newFile(ctx, t.EmbeddedInode(), t.view.repo, c.Desc, manifestview.IsManifestType(c.Desc.MediaType), out), 0
}

func (t *treeDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	ents := make([]fuse.DirEntry, 0, len(t.node.Children))
	for _, c := range t.node.Children {
		e := fuse.DirEntry{Name: c.Name}
		switch c.Kind {
		case manifestview.Dir, manifestview.Referrers, manifestview.Layer, manifestview.Rootfs:
			e.Mode = fuse.S_IFDIR
		case manifestview.Symlink:
			e.Mode = fuse.S_IFLNK
		default:
			e.Mode = fuse.S_IFREG
			e.Ino = c.Desc.Digest.Ino(c.Desc.Size)
		}
		ents = append(ents, e)
	}
	return gofs.NewListDirStream(ents), 0
}
