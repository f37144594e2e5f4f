package manifestview

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// rawDesc is a descriptor as it appears in a document.
type rawDesc struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	Annotations  map[string]string `json:"annotations"`
	Platform     *rawPlatform      `json:"platform"`
	URLs         []string          `json:"urls"`
	ArtifactType string            `json:"artifactType"`
}

type rawPlatform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
}

// rawDoc covers the fields of OCI image manifests, OCI artifact
// manifests, OCI indexes and their Docker v2 counterparts.
type rawDoc struct {
	MediaType    string            `json:"mediaType"`
	Config       *rawDesc          `json:"config"`
	Layers       []rawDesc         `json:"layers"`
	Blobs        []rawDesc         `json:"blobs"`
	Manifests    []rawDesc         `json:"manifests"`
	Annotations  map[string]string `json:"annotations"`
	ArtifactType string            `json:"artifactType"`
	Subject      *rawDesc          `json:"subject"`
}

// docKind is how a document is shown.
type docKind int

const (
	kindManifest docKind = iota
	kindIndex
)

// parsed is a document reduced to valid descriptors.
type parsed struct {
	kind      docKind
	mediaType string
	config    *Desc  // nil when absent or invalid
	layers    []Desc // layers, then artifact blobs
	manifests []Desc // index entries
	skipped   int    // descriptors dropped as invalid

	annotations  map[string]string // the document's own
	artifactType string            // artifactType, else the config's mediaType (not the empty one)
	subject      *Desc             // nil when absent or invalid
}

// parse decodes body. A body that is not a JSON object, or whose fields
// have the wrong JSON types, is an error wrapping hfserr.ErrInvalid.
// A single bad descriptor (missing, zero or non-sha256 digest, negative size)
// is skipped and counted, so the rest of the document is still shown.
func parse(doc Doc) (*parsed, error) {
	body := bytes.TrimSpace(doc.Body)
	if len(body) == 0 || body[0] != '{' {
		return nil, fmt.Errorf("document %s: not a JSON object: %w", doc.Digest, hfserr.ErrInvalid)
	}
	var rd rawDoc
	if err := json.Unmarshal(body, &rd); err != nil {
		return nil, fmt.Errorf("document %s: %v: %w", doc.Digest, err, hfserr.ErrInvalid)
	}
	p := &parsed{mediaType: rd.MediaType}
	if p.mediaType == "" {
		p.mediaType = doc.MediaType
	}
	p.kind = classify(p.mediaType, &rd)
	p.annotations, p.artifactType = rd.Annotations, rd.ArtifactType
	if rd.Subject != nil {
		if d, ok := rd.Subject.desc(); ok {
			p.subject = &d
		} else {
			p.skipped++
		}
	}
	if p.kind == kindIndex {
		for _, r := range rd.Manifests {
			if d, ok := r.desc(); ok {
				p.manifests = append(p.manifests, d)
			} else {
				p.skipped++
			}
		}
		return p, nil
	}
	if rd.Config != nil {
		if d, ok := rd.Config.desc(); ok {
			p.config = &d
		} else {
			p.skipped++
		}
		if p.artifactType == "" && rd.Config.MediaType != MediaTypeEmpty {
			p.artifactType = rd.Config.MediaType
		}
	}
	for _, list := range [][]rawDesc{rd.Layers, rd.Blobs} {
		for _, r := range list {
			if d, ok := r.desc(); ok {
				p.layers = append(p.layers, d)
			} else {
				p.skipped++
			}
		}
	}
	return p, nil
}

// classify picks manifest or index: known media types decide; an
// unknown type is an index only if it lists manifests and has no
// config or layers.
func classify(mediaType string, rd *rawDoc) docKind {
	switch {
	case isIndexType(mediaType):
		return kindIndex
	case IsManifestType(mediaType):
		return kindManifest
	case rd.Config != nil || len(rd.Layers) > 0 || len(rd.Blobs) > 0:
		return kindManifest
	case len(rd.Manifests) > 0:
		return kindIndex
	}
	return kindManifest
}

// desc validates r. Only sha256 digests are supported; the all-zero
// digest is refused (hashfs uses it to mean "none").
func (r rawDesc) desc() (Desc, bool) {
	d, err := digest.Parse(r.Digest)
	if err != nil || d.IsZero() || r.Size < 0 {
		return Desc{}, false
	}
	out := Desc{Digest: d, Size: r.Size, MediaType: r.MediaType, Annotations: r.Annotations, URLs: webURLs(r.URLs),
		ArtifactType: r.ArtifactType}
	if r.Platform != nil {
		out.Platform = &Platform{
			OS:           r.Platform.OS,
			Architecture: r.Platform.Architecture,
			Variant:      r.Platform.Variant,
		}
	}
	return out, true
}

// webURLs keeps the http and https URLs of a descriptor's "urls".
func webURLs(urls []string) []string {
	var out []string
	for _, s := range urls {
		u, err := url.Parse(s)
		if err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
			out = append(out, s)
		}
	}
	return out
}
