package fs

import (
	"context"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/manifestview"
)

// Index is what a sha256/ directory asks: the size and media type of any
// digest, the digests seen so far, and manifest documents by digest.
// One repository's Index is its Repo and Stater; a many-source mount's
// root sha256/ is a manifestview.Union.
type Index interface {
	Stat(ctx context.Context, d digest.Digest) (manifestview.Desc, error)
	Known() []manifestview.Desc
	Manifest(ctx context.Context, d digest.Digest) (manifestview.Doc, error)
}

// Docs opens manifest documents by digest.
type Docs interface {
	Manifest(ctx context.Context, d digest.Digest) (manifestview.Doc, error)
}

// repoIndex is one repository's Index.
type repoIndex struct {
	*manifestview.Repo
	Stater
}

var _ Index = repoIndex{}

// view is what the directories of one repository (or, for the root
// sha256/ of a many-source mount, of all of them) work from. repo is nil
// for the root of a many-source mount, which has only sha256/.
type view struct {
	repo  *manifestview.Repo
	index Index
}

// dir returns the node of the view's directory name (sha256, tags or manifests).
func (v *view) dir(r *Root, name string) gofs.InodeEmbedder {
	switch name {
	case "tags":
		return &tagsDir{root: r, view: v}
	case "manifests":
		return &manifestsDir{root: r, view: v}
	}
	return &shardDir{root: r, view: v}
}
