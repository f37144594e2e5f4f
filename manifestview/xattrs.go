package manifestview

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashfs/hashfs/internal/digest"
)

// Extended attributes that show a descriptor's OCI metadata: on a file,
// the descriptor that named it; on a manifest's directory, the document
// itself (see Build).
const (
	AttrMediaType    = "user.oci.mediaType"
	AttrArtifactType = "user.oci.artifactType"
	AttrSubject      = "user.oci.subject"  // "sha256:<hex>" of the manifest a referrer refers to
	AttrPlatform     = "user.oci.platform" // "<os>/<arch>[/<variant>]"
	// AttrAnnotation prefixes one attribute per annotation key.
	AttrAnnotation = "user.oci.annotation."
)

// Linux limits on extended attributes (XATTR_NAME_MAX, XATTR_SIZE_MAX,
// XATTR_LIST_MAX). Attrs keeps the names of one node within
// maxAttrList, leaving room for hashfs's own user.hashfs.* names.
const (
	maxAttrName  = 255
	maxAttrValue = 64 << 10
	maxAttrList  = 60 << 10
)

// Attr is one extended attribute.
type Attr struct {
	Name  string
	Value string
}

// Attrs returns d's metadata as extended attributes: media type, artifact
// type, subject and platform when set, then one per annotation in key
// order. An attribute whose name would be empty, hold a NUL or exceed 255
// bytes, whose value exceeds 64 KiB, or that would take the node's list of
// names past 60 KiB is left out, and dropped says which and why.
func Attrs(d Desc) (attrs []Attr, dropped []string) {
	total := 0
	add := func(name, value, what string) {
		switch {
		case len(name) > maxAttrName:
			dropped = append(dropped, fmt.Sprintf("%s: name over %d bytes", what, maxAttrName))
		case strings.IndexByte(name, 0) >= 0:
			dropped = append(dropped, what+": name holds a NUL byte")
		case len(value) > maxAttrValue:
			dropped = append(dropped, fmt.Sprintf("%s: value of %d bytes, over %d", what, len(value), maxAttrValue))
		case total+len(name)+1 > maxAttrList:
			dropped = append(dropped, fmt.Sprintf("%s: the node's attribute names would exceed %d bytes", what, maxAttrList))
		default:
			total += len(name) + 1
			attrs = append(attrs, Attr{Name: name, Value: value})
		}
	}
	if d.MediaType != "" {
		add(AttrMediaType, d.MediaType, "mediaType")
	}
	if d.ArtifactType != "" {
		add(AttrArtifactType, d.ArtifactType, "artifactType")
	}
	if !d.Subject.IsZero() {
		add(AttrSubject, d.Subject.String(), "subject")
	}
	if p := platformString(d.Platform); p != "" {
		add(AttrPlatform, p, "platform")
	}
	keys := make([]string, 0, len(d.Annotations))
	for k := range d.Annotations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		what := fmt.Sprintf("annotation %q", clip(k))
		if k == "" {
			dropped = append(dropped, what+": empty key")
			continue
		}
		add(AttrAnnotation+k, d.Annotations[k], what)
	}
	return attrs, dropped
}

// platformString is "<os>/<arch>[/<variant>]", or "" without an OS and
// architecture.
func platformString(p *Platform) string {
	if p == nil || p.OS == "" || p.Architecture == "" {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Platform returns the platform under which an index seen so far lists
// manifest d (the first one seen), for d's own directory.
func (r *Repo) Platform(d digest.Digest) (Platform, bool) {
	r.knownMu.Lock()
	defer r.knownMu.Unlock()
	p, ok := r.platforms[d]
	return p, ok
}

// notePlatform remembers the platform of an index entry.
func (r *Repo) notePlatform(d Desc) {
	if platformString(d.Platform) == "" {
		return
	}
	r.knownMu.Lock()
	defer r.knownMu.Unlock()
	if _, ok := r.platforms[d.Digest]; !ok {
		r.platforms[d.Digest] = *d.Platform
	}
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
