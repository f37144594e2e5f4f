package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// tagsDir is tags/: one symlink per tag to ../manifests/sha256:<hex>,
// re-resolved after the tag TTL.
type tagsDir struct {
	gofs.Inode
	readOnly
	root *Root
	view *view
}

var (
	_ = (gofs.NodeLookuper)((*tagsDir)(nil))
	_ = (gofs.NodeReaddirer)((*tagsDir)(nil))
	_ = (gofs.NodeGetattrer)((*tagsDir)(nil))
)

func (t *tagsDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	t.root.dirAttr(&out.Attr)
	return 0
}

func (t *tagsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if !validTag(name) {
		return nil, syscall.ENOENT
	}
	ctx, cancel := t.root.opctx(ctx)
	defer cancel()
	desc, err := t.view.repo.Tag(ctx, name)
	if err != nil {
		return nil, toErrno(err)
	}
	target := "../manifests/" + desc.Digest.String()
	t.root.linkAttr(&out.Attr, target)
	out.SetEntryTimeout(t.root.cfg.TagTTL)
	out.SetAttrTimeout(t.root.cfg.TagTTL)
	return t.NewInode(ctx, &symlink{root: t.root, target: target}, gofs.StableAttr{Mode: fuse.S_IFLNK}), 0
}

func (t *tagsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	ctx, cancel := t.root.opctx(ctx)
	defer cancel()
	tags, err := t.view.repo.Tags(ctx)
	if err != nil {
		return nil, toErrno(err)
	}
	ents := make([]fuse.DirEntry, 0, len(tags))
	for _, tg := range tags {
		ents = append(ents, fuse.DirEntry{Name: tg.Name, Mode: fuse.S_IFLNK})
	}
	return gofs.NewListDirStream(ents), 0
}

// symlink is a fixed link target.
type symlink struct {
	gofs.Inode
	readOnly
	root   *Root
	target string
}

var (
	_ = (gofs.NodeReadlinker)((*symlink)(nil))
	_ = (gofs.NodeGetattrer)((*symlink)(nil))
)

func (s *symlink) Readlink(ctx context.Context) ([]byte, syscall.Errno) { return []byte(s.target), 0 }

func (s *symlink) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	s.root.linkAttr(&out.Attr, s.target)
	return 0
}

// validTag is the OCI distribution tag grammar [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func validTag(s string) bool {
	if len(s) == 0 || len(s) > 128 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func (r *Root) linkAttr(a *fuse.Attr, target string) {
	a.Mode = fuse.S_IFLNK | 0o777
	a.Size = uint64(len(target))
	a.Nlink = 1
	r.times(a)
}
