// Package manifestview turns OCI manifest and index documents into the
// directory trees shown under manifests/sha256:<hex>/, and keeps the
// repository's view of tags, documents and descriptors seen so far.
// It knows nothing about FUSE or HTTP: the network is behind Registry
// and the disk behind DocStore.
package manifestview

import (
	"slices"
	"strings"

	"github.com/hashfs/hashfs/internal/digest"
)

// Platform is the platform of an index entry.
type Platform struct {
	OS, Architecture, Variant string
}

// Desc is an OCI content descriptor reduced to what hashfs shows.
type Desc struct {
	Digest      digest.Digest
	Size        int64
	MediaType   string
	Annotations map[string]string
	Platform    *Platform
	// URLs are further locations of the blob (image-spec "urls": foreign
	// layers). Only http and https URLs are kept; their bytes are
	// verified like any other.
	URLs []string
	// ArtifactType is the descriptor's artifactType; for a document (the
	// Desc of a tree's root and of its manifest.json or index.json) its
	// artifactType or, for a manifest without one, its config's
	// mediaType, as the referrers API reports it.
	ArtifactType string
	// Subject is, for a document, the manifest it refers to (OCI 1.1
	// "subject"); zero if none.
	Subject digest.Digest
}

// Doc is a manifest or index document: its digest, media type and raw bytes.
type Doc struct {
	Digest    digest.Digest
	MediaType string
	Body      []byte
}

// Kind is the type of a Node.
type Kind int

const (
	// File is a blob or a document; Node.Desc says which bytes.
	File Kind = iota
	// Dir holds Children.
	Dir
	// Symlink points at Node.Target (relative to its directory).
	Symlink
	// Referrers is a directory whose entries are asked for when used:
	// the manifests whose subject is Node.Desc.Digest (Repo.Referrers).
	Referrers
	// Layer is a directory showing the files of the tar layer Node.Desc
	// (layers/<n>, and an ORAS directory at its title).
	Layer
	// Rootfs is a directory showing the layers of the image Node.Desc
	// (the manifest) merged.
	Rootfs
)

func (k Kind) String() string {
	switch k {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	case Referrers:
		return "referrers"
	case Layer:
		return "layer"
	case Rootfs:
		return "rootfs"
	}
	return "kind?"
}

// Node is one entry of a manifest's tree.
type Node struct {
	Name string
	Kind Kind
	// Desc is the blob for a File (for manifest.json/index.json: the
	// document itself, Size = len(body)); for a Symlink of an index it
	// is the child manifest the link points at, for subject the subject;
	// for the root Dir and for Referrers the document itself; zero for
	// any other Dir.
	Desc Desc
	// Target is the link text of a Symlink.
	Target string
	// Children of a Dir, sorted by Name, names unique.
	Children []*Node
}

// Child returns the child called name, or nil.
func (n *Node) Child(name string) *Node {
	if n == nil || n.Kind != Dir {
		return nil
	}
	i, ok := slices.BinarySearchFunc(n.Children, name, func(c *Node, name string) int {
		return strings.Compare(c.Name, name)
	})
	if !ok {
		return nil
	}
	return n.Children[i]
}

// Media types hashfs recognises as documents (fetched from /manifests/).
const (
	MediaTypeOCIManifest      = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex         = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIArtifact      = "application/vnd.oci.artifact.manifest.v1+json"
	MediaTypeDockerManifest   = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList       = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerSchema1    = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1JWS = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	// MediaTypeEmpty is the OCI empty descriptor's type ("{}" as config).
	MediaTypeEmpty = "application/vnd.oci.empty.v1+json"
)

// emptyDigest is sha256("{}"), the OCI empty descriptor.
var emptyDigest = digest.Of([]byte("{}"))

// IsManifestType reports whether mediaType names a manifest or index
// document, i.e. bytes served by the registry's /manifests/ endpoint.
func IsManifestType(mediaType string) bool {
	switch mediaType {
	case MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeOCIArtifact,
		MediaTypeDockerManifest, MediaTypeDockerList,
		MediaTypeDockerSchema1, MediaTypeDockerSchema1JWS:
		return true
	}
	return false
}

func isIndexType(mediaType string) bool {
	return mediaType == MediaTypeOCIIndex || mediaType == MediaTypeDockerList
}
