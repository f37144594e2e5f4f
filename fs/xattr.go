package fs

import (
	"context"
	"hash/fnv"
	"strconv"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/hashfs/hashfs/manifestview"
)

// Extended attributes of every regular file. Files and manifest
// directories also carry the user.oci.* attributes of manifestview.Attrs.
const (
	xattrDigest    = "user.hashfs.digest"
	xattrMediaType = "user.hashfs.mediatype"
	xattrCached    = "user.hashfs.cached"   // bytes of the blob in the disk cache
	xattrVerified  = "user.hashfs.verified" // true, false or quarantined
)

var xattrNames = []string{xattrDigest, xattrMediaType, xattrCached, xattrVerified}

var (
	_ = (gofs.NodeGetxattrer)((*treeDir)(nil))
	_ = (gofs.NodeListxattrer)((*treeDir)(nil))
)

// Listxattr names the attributes: hashfs's own, then the OCI metadata of
// the descriptor that named the file.
func (f *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var b []byte
	for _, n := range xattrNames {
		b = append(append(b, n...), 0)
	}
	return xattrReply(dest, appendNames(b, ociAttrs(f.desc)))
}

// Getxattr answers one attribute.
func (f *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	var v string
	switch attr {
	case xattrDigest:
		v = f.desc.Digest.String()
	case xattrMediaType:
		v = f.desc.MediaType
		if v == "" {
			v = "application/octet-stream"
		}
	case xattrCached, xattrVerified:
		if f.doc {
			v = map[string]string{xattrCached: strconv.Itoa(int(f.desc.Size)), xattrVerified: "true"}[attr]
			break
		}
		st := f.root.cfg.Cache.Status(f.desc.Digest, f.desc.Size)
		switch {
		case attr == xattrCached:
			v = strconv.FormatInt(st.CachedBytes, 10)
		case st.Quarantined:
			v = "quarantined"
		default:
			v = strconv.FormatBool(st.Verified)
		}
	default:
		return ociReply(ociAttrs(f.desc), attr, dest)
	}
	return xattrReply(dest, []byte(v))
}

// Listxattr names a manifest directory's OCI metadata.
func (t *treeDir) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return xattrReply(dest, appendNames(nil, t.ociAttrs()))
}

// Getxattr answers one of a manifest directory's OCI attributes.
func (t *treeDir) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return ociReply(t.ociAttrs(), attr, dest)
}

// ociAttrs are the attributes of the document at the root of a manifest's
// tree (its annotations, artifact type, subject and media type, and the
// platform an index seen so far gives it); other directories have none.
func (t *treeDir) ociAttrs() []manifestview.Attr {
	d := t.node.Desc
	if d.Digest.IsZero() {
		return nil
	}
	if d.Platform == nil {
		if p, ok := t.view.repo.Platform(d.Digest); ok {
			d.Platform = &p
		}
	}
	return ociAttrs(d)
}

// ociAttrs are desc's metadata as attributes; what does not fit the
// kernel's limits was logged when its manifest was read.
func ociAttrs(desc manifestview.Desc) []manifestview.Attr {
	attrs, _ := manifestview.Attrs(desc)
	return attrs
}

func appendNames(b []byte, attrs []manifestview.Attr) []byte {
	for _, a := range attrs {
		b = append(append(b, a.Name...), 0)
	}
	return b
}

func ociReply(attrs []manifestview.Attr, name string, dest []byte) (uint32, syscall.Errno) {
	for _, a := range attrs {
		if a.Name == name {
			return xattrReply(dest, []byte(a.Value))
		}
	}
	return 0, syscall.ENODATA
}

// descGen is the generation of a file's inode: a hash of the attributes
// its descriptor shows. Descriptors that say different things about one
// blob (a title here, none under sha256/) then name separate nodes, with
// the same inode number, and each path answers its own attributes.
func descGen(desc manifestview.Desc) uint64 {
	h := fnv.New64a()
	for _, a := range ociAttrs(desc) {
		h.Write([]byte(a.Name))
		h.Write([]byte{0})
		h.Write([]byte(a.Value))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// xattrReply follows getxattr(2): an empty buffer asks for the size.
func xattrReply(dest, v []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}
