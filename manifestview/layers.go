package manifestview

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Names of the layer views in a manifest's directory.
const (
	// NameLayers is the directory with one <n>/ per tar layer, n being
	// the layer's position in the manifest's layers, from 0.
	NameLayers = "layers"
	// NameRootfs is the image's layers merged, whiteouts applied.
	NameRootfs = "rootfs"
	// AnnotationUnpack marks an ORAS layer that is a tar+gzip of a
	// directory, to be unpacked at its title.
	AnnotationUnpack = "io.deis.oras.content.unpack"
)

// isTarLayerType reports the layer media types hashfs shows the files
// of: OCI image-spec and Docker image manifest v2.2, with their
// non-distributable (foreign) variants.
func isTarLayerType(mediaType string) bool {
	switch mediaType {
	case "application/vnd.oci.image.layer.v1.tar",
		"application/vnd.oci.image.layer.v1.tar+gzip",
		"application/vnd.oci.image.layer.v1.tar+zstd",
		"application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
		"application/vnd.docker.image.rootfs.diff.tar",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.docker.image.rootfs.foreign.diff.tar",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
		return true
	}
	return false
}

// isImageConfigType reports the config media types of images, whose
// config lists the layers' diff_ids.
func isImageConfigType(mediaType string) bool {
	return mediaType == "application/vnd.oci.image.config.v1+json" ||
		mediaType == "application/vnd.docker.container.image.v1+json"
}

// IsTarLayer reports whether d is a tar layer hashfs shows the files of:
// a tar layer media type, and either no title (image layers) or an ORAS
// directory (the unpack annotation). ORAS pushes plain files with the
// tar layer type too; those carry a title and are files, not tars.
func IsTarLayer(d Desc) bool {
	if !isTarLayerType(d.MediaType) {
		return false
	}
	_, titled := d.Annotations[AnnotationTitle]
	return !titled || IsUnpackDir(d)
}

// IsUnpackDir reports whether d is an ORAS directory: a titled tar layer
// with the unpack annotation "true".
func IsUnpackDir(d Desc) bool {
	_, titled := d.Annotations[AnnotationTitle]
	return titled && d.Annotations[AnnotationUnpack] == "true" && isTarLayerType(d.MediaType)
}

// Image is what the layer views need of a manifest.
type Image struct {
	Config *Desc // nil when absent or invalid
	// Layers in manifest order; an invalid descriptor is a zero Desc, so
	// that positions (and diff_ids) stay aligned.
	Layers []Desc
	// IsImage: the config is an image config and every layer a valid tar
	// layer, so the layers merge into a rootfs and match the diff_ids.
	IsImage bool
}

// ImageOf reads the config and layers of a manifest document (an index
// has neither). A body that is not a JSON object wraps hfserr.ErrInvalid.
func ImageOf(doc Doc) (Image, error) {
	var rd struct {
		MediaType string    `json:"mediaType"`
		Config    *rawDesc  `json:"config"`
		Layers    []rawDesc `json:"layers"`
	}
	body := bytes.TrimSpace(doc.Body)
	if len(body) == 0 || body[0] != '{' {
		return Image{}, fmt.Errorf("document %s: not a JSON object: %w", doc.Digest, hfserr.ErrInvalid)
	}
	if err := json.Unmarshal(body, &rd); err != nil {
		return Image{}, fmt.Errorf("document %s: %v: %w", doc.Digest, err, hfserr.ErrInvalid)
	}
	var im Image
	if rd.Config != nil {
		if d, ok := rd.Config.desc(); ok {
			im.Config = &d
		}
	}
	im.IsImage = im.Config != nil && isImageConfigType(im.Config.MediaType) && !isIndexType(rd.MediaType)
	for _, r := range rd.Layers {
		d, ok := r.desc()
		if !ok || !IsTarLayer(d) || IsUnpackDir(d) {
			im.IsImage = false
		}
		if !ok {
			d = Desc{}
		}
		im.Layers = append(im.Layers, d)
	}
	return im, nil
}

// DiffIDs returns rootfs.diff_ids of an image config: the sha256 of each
// layer's uncompressed tar, in layer order.
func DiffIDs(config []byte) ([]digest.Digest, error) {
	var c struct {
		RootFS struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, fmt.Errorf("image config: %v: %w", err, hfserr.ErrInvalid)
	}
	out := make([]digest.Digest, 0, len(c.RootFS.DiffIDs))
	for _, s := range c.RootFS.DiffIDs {
		d, err := digest.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("image config: diff_id: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// addLayers adds, for a manifest, layers/<n> (Kind Layer) for every tar
// layer and rootfs (Kind Rootfs) for an image, and turns ORAS directories
// placed at their title (or fallback name) into Kind Layer.
func (t *tree) addLayers(doc Doc, self Desc) {
	im, err := ImageOf(doc)
	if err != nil {
		return
	}
	var dir *Node
	for i, d := range im.Layers {
		if d.Digest.IsZero() || !IsTarLayer(d) {
			continue
		}
		if dir == nil {
			dir = &Node{Name: NameLayers, Kind: Dir}
			t.insert(t.root, dir)
		}
		t.insert(dir, &Node{Name: strconv.Itoa(i), Kind: Layer, Desc: d})
		if IsUnpackDir(d) {
			t.markUnpacked(d)
		}
	}
	if im.IsImage {
		t.insert(t.root, &Node{Name: NameRootfs, Kind: Rootfs, Desc: self})
	}
}

// markUnpacked makes the file an ORAS directory was placed at a Layer.
func (t *tree) markUnpacked(d Desc) {
	if parts, ok := safeTitle(d.Annotations[AnnotationTitle]); ok {
		n := t.root
		for _, name := range parts {
			if n = t.lookup(n, name); n == nil {
				break
			}
		}
		if n != nil && n.Kind == File && n.Desc.Digest == d.Digest {
			n.Kind = Layer
			return
		}
	}
	if n := t.lookup(t.root, d.Digest.String()); n != nil && n.Kind == File {
		n.Kind = Layer
	}
}
