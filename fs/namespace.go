package fs

import (
	"context"
	"slices"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/hashfs/hashfs/manifestview"
)

// Namespace is the repositories of a many-source mount, by path: the
// registry host and repository name ("127.0.0.1:5000/ns/app"), or
// "oci/<path>" for a local layout. Each repository gets the subtree
// <path>/{sha256,tags,manifests}/ that a single-repository mount has at
// its root.
type Namespace interface {
	// Paths lists the repository paths known now, for readdir.
	Paths(ctx context.Context) []string
	// Lookup says what path is: a repository, a directory that may hold
	// repositories, both, or (zero Entry, nil error) nothing.
	Lookup(ctx context.Context, path string) (Entry, error)
}

// Entry is what a namespace path is.
type Entry struct {
	Repo   *manifestview.Repo // non-nil: path is a repository
	Stater Stater             // with Repo: sizes and types for its sha256/
	Dir    bool               // repositories may exist below path
}

// reserved are the names of a repository's own directories; inside a
// repository they win over a nested repository of the same name.
var reserved = []string{"manifests", "sha256", "tags"}

// nsDir is one directory of the namespace: a registry, a namespace or a
// repository (then it also holds sha256/, tags/ and manifests/).
type nsDir struct {
	gofs.Inode
	readOnly
	root *Root
	path string
	ent  Entry
}

var (
	_ = (gofs.NodeLookuper)((*nsDir)(nil))
	_ = (gofs.NodeReaddirer)((*nsDir)(nil))
	_ = (gofs.NodeGetattrer)((*nsDir)(nil))
)

func (n *nsDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.root.dirAttr(&out.Attr)
	return 0
}

func (n *nsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if slices.Contains(reserved, name) {
		if n.ent.Repo == nil {
			return nil, syscall.ENOENT // a repository's own directories need a repository
		}
		v := &view{repo: n.ent.Repo, index: repoIndex{n.ent.Repo, n.ent.Stater}}
		n.root.dirAttr(&out.Attr)
		return n.NewInode(ctx, v.dir(n.root, name), gofs.StableAttr{Mode: fuse.S_IFDIR}), 0
	}
	return n.root.nsLookup(ctx, n.EmbeddedInode(), n.path, name, out)
}

func (n *nsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	var ents []fuse.DirEntry
	if n.ent.Repo != nil {
		for _, r := range reserved {
			ents = append(ents, fuse.DirEntry{Name: r, Mode: fuse.S_IFDIR})
		}
	}
	ents = append(ents, n.root.nsChildren(ctx, n.path, ents)...)
	return gofs.NewListDirStream(ents), 0
}

// nsLookup finds name below the namespace directory dir (at path).
func (r *Root) nsLookup(ctx context.Context, parent *gofs.Inode, dir, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if !validPathPart(name) {
		return nil, syscall.ENOENT
	}
	p := name
	if dir != "" {
		p = dir + "/" + name
	}
	ctx, cancel := r.opctx(ctx)
	defer cancel()
	ent, err := r.cfg.Namespace.Lookup(ctx, p)
	if err != nil {
		return nil, r.fail("lookup "+p, manifestview.Desc{}, err)
	}
	if ent.Repo == nil && !ent.Dir {
		return nil, syscall.ENOENT
	}
	r.dirAttr(&out.Attr)
	return parent.NewInode(ctx, &nsDir{root: r, path: p, ent: ent}, gofs.StableAttr{Mode: fuse.S_IFDIR}), 0
}

// nsChildren lists the next path components below dir of every known
// repository path, leaving out names already in have.
func (r *Root) nsChildren(ctx context.Context, dir string, have []fuse.DirEntry) []fuse.DirEntry {
	seen := map[string]bool{}
	for _, e := range have {
		seen[e.Name] = true
	}
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	var ents []fuse.DirEntry
	for _, p := range r.cfg.Namespace.Paths(ctx) {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok || rest == "" {
			continue
		}
		part, _, _ := strings.Cut(rest, "/")
		if !seen[part] && validPathPart(part) {
			seen[part] = true
			ents = append(ents, fuse.DirEntry{Name: part, Mode: fuse.S_IFDIR})
		}
	}
	slices.SortFunc(ents, func(a, b fuse.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	return ents
}

// validPathPart accepts what can be one component of a namespace path:
// a registry host[:port] or a repository path component. Names that
// could walk out of the tree (".", "..") or hide (leading dot) are not.
func validPathPart(s string) bool {
	if s == "" || len(s) > 255 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}
