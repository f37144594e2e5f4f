package fs

import (
	"context"
	"errors"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
	"github.com/hashfs/hashfs/manifestview"
)

// shardDir is sha256/ (prefix "") and its two-level contentid layout
// sha256/<ab>/ and sha256/<ab>/<cd>/. Lookup answers any digest, even
// one never seen; Readdir lists the digests known so far.
type shardDir struct {
	gofs.Inode
	readOnly
	root   *Root
	view   *view
	prefix string // "", "ab" or "abcd"
}

var (
	_ = (gofs.NodeLookuper)((*shardDir)(nil))
	_ = (gofs.NodeReaddirer)((*shardDir)(nil))
	_ = (gofs.NodeGetattrer)((*shardDir)(nil))
)

func (s *shardDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	s.root.dirAttr(&out.Attr)
	return 0
}

func (s *shardDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	sub, d, ok := parseShardName(s.prefix, name)
	switch {
	case !ok:
		return nil, syscall.ENOENT
	case sub != "":
		s.root.dirAttr(&out.Attr)
		return s.NewInode(ctx, &shardDir{root: s.root, view: s.view, prefix: sub}, gofs.StableAttr{Mode: fuse.S_IFDIR}), 0
	}
	ctx, cancel := s.root.opctx(ctx)
	defer cancel()
	desc, err := s.view.index.Stat(ctx, d)
	if err != nil {
		if errors.Is(err, hfserr.ErrNotFound) {
			// Not a blob: maybe a layer's diff_id (diffid.go).
			if n, errno, ok := s.root.lookupDiffID(ctx, s.EmbeddedInode(), s.view.index, d, out); ok {
				return n, errno
			}
		}
		return nil, s.root.fail("lookup", manifestview.Desc{Digest: d}, err)
	}
	return s.root.newFile(ctx, s.EmbeddedInode(), s.view.index, desc, manifestview.IsManifestType(desc.MediaType), out), 0
}

// parseShardName classifies name inside the shard directory with the
// given prefix ("", "ab" or "abcd"): a deeper shard directory (sub is its
// prefix), or a digest whose hex starts with the prefix.
func parseShardName(prefix, name string) (sub string, d digest.Digest, ok bool) {
	if len(name) == 2 && len(prefix) < 4 && isHex(name) {
		return prefix + name, d, true
	}
	d, err := digest.ParseHex(name)
	if err != nil || !strings.HasPrefix(name, prefix) {
		return "", digest.Digest{}, false
	}
	return "", d, true
}

func (s *shardDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	var ents []fuse.DirEntry
	seen := map[string]bool{}
	for _, desc := range s.view.index.Known() {
		h := desc.Digest.Hex()
		if !strings.HasPrefix(h, s.prefix) {
			continue
		}
		if len(s.prefix) == 4 || s.prefix == "" {
			ents = append(ents, fuse.DirEntry{Name: h, Mode: fuse.S_IFREG, Ino: desc.Digest.Ino(desc.Size)})
			continue
		}
		sub := h[len(s.prefix) : len(s.prefix)+2]
		if !seen[sub] {
			seen[sub] = true
			ents = append(ents, fuse.DirEntry{Name: sub, Mode: fuse.S_IFDIR})
		}
	}
	return gofs.NewListDirStream(ents), 0
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
