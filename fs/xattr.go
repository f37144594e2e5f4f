package fs

import (
	"context"
	"strconv"
	"syscall"
)

// Extended attributes of every regular file.
const (
	xattrDigest    = "user.hashfs.digest"
	xattrMediaType = "user.hashfs.mediatype"
	xattrCached    = "user.hashfs.cached"   // bytes of the blob in the disk cache
	xattrVerified  = "user.hashfs.verified" // true, false or quarantined
)

var xattrNames = []string{xattrDigest, xattrMediaType, xattrCached, xattrVerified}

// Listxattr names the attributes.
func (f *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var b []byte
	for _, n := range xattrNames {
		b = append(append(b, n...), 0)
	}
	return xattrReply(dest, b)
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
		return 0, syscall.ENODATA
	}
	return xattrReply(dest, []byte(v))
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
