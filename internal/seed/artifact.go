package seed

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hashfs/hashfs/internal/digest"
)

const (
	// ArtifactType is the artifactType of the manifests PushArtifact writes.
	ArtifactType = "application/vnd.hashfs.sample.v1"
	// DefaultFileMediaType is the layer media type of a File without
	// one, as `oras push` uses for plain files.
	DefaultFileMediaType = "application/vnd.oci.image.layer.v1.tar"
	// AnnotationTitle names a layer's file, as ORAS does.
	AnnotationTitle = "org.opencontainers.image.title"
)

// File is one file of an artifact.
type File struct {
	Title     string // path shown by hashfs, e.g. "data/notes.txt"
	Data      []byte
	MediaType string // empty means DefaultFileMediaType
}

// rawManifest is a Taggable for a manifest we serialised ourselves.
type rawManifest struct {
	body      []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// PushArtifact pushes an ORAS-style artifact to repo (e.g.
// "127.0.0.1:5000/demo/data") and tags it: an OCI image manifest with
// artifactType ArtifactType, the empty config "{}", and one layer per
// file annotated with its title. Loopback and private registries are
// spoken to over plain http (ggcr's rule). It returns the manifest digest.
func PushArtifact(ctx context.Context, repo, tag string, files []File, opts ...remote.Option) (digest.Digest, error) {
	ref, err := name.NewTag(repo + ":" + tag)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("seed: %w", err)
	}
	p, err := remote.NewPusher(append(slices.Clone(opts), remote.WithContext(ctx))...)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("seed: %w", err)
	}
	emptyCfg := static.NewLayer([]byte("{}"), types.OCIEmptyJSON)
	cfgDesc, err := upload(ctx, p, ref.Context(), emptyCfg, nil)
	if err != nil {
		return digest.Digest{}, err
	}
	cfgDesc.Data = []byte("{}")
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        cfgDesc,
		Layers:        make([]v1.Descriptor, 0, len(files)),
	}
	seen := map[string]bool{}
	for _, f := range files {
		if f.Title == "" || seen[f.Title] {
			return digest.Digest{}, fmt.Errorf("seed: file title %q empty or repeated", f.Title)
		}
		seen[f.Title] = true
		mt := f.MediaType
		if mt == "" {
			mt = DefaultFileMediaType
		}
		d, err := upload(ctx, p, ref.Context(), static.NewLayer(f.Data, types.MediaType(mt)),
			map[string]string{AnnotationTitle: f.Title})
		if err != nil {
			return digest.Digest{}, err
		}
		m.Layers = append(m.Layers, d)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("seed: %w", err)
	}
	if err := p.Push(ctx, ref, rawManifest{body: body, mediaType: types.OCIManifestSchema1}); err != nil {
		return digest.Digest{}, fmt.Errorf("seed: push %s: %w", ref, err)
	}
	return digest.Of(body), nil
}

// upload pushes one blob and returns its descriptor.
func upload(ctx context.Context, p *remote.Pusher, repo name.Repository, l v1.Layer, ann map[string]string) (v1.Descriptor, error) {
	if err := p.Upload(ctx, repo, l); err != nil {
		return v1.Descriptor{}, fmt.Errorf("seed: upload blob: %w", err)
	}
	h, err := l.Digest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("seed: %w", err)
	}
	size, err := l.Size()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("seed: %w", err)
	}
	mt, err := l.MediaType()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("seed: %w", err)
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: h, Annotations: ann}, nil
}
