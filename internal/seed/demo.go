package seed

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hashfs/hashfs/internal/digest"
)

// Demo tags pushed by Push.
const (
	TagVostok = "vostok" // the Vostok record alone, titled VostokTitle
	TagV1     = "v1"     // Vostok, README.txt and data/notes.txt
	TagMulti  = "multi"  // index: linux/amd64, linux/arm64/v8, and the vostok artifact without platform
	TagImage  = "image"  // an image whose config has Env and Cmd, two layers
)

// VostokTitle is the file name of the Vostok record in the demo artifacts.
const VostokTitle = "vostok.icecore.co2"

const readme = `Sample data pushed by hashfs seed.
vostok.icecore.co2: Vostok ice core CO2 record (Barnola et al., 2003).
`

const notes = "Read it in R with read.table(path, skip = 21, sep = \"\\t\").\n"

// Push pushes the demo set to repo and returns tag -> manifest digest.
// Its content is fixed (random images use fixed seeds), so the digests
// are the same on every run.
func Push(ctx context.Context, repo string, opts ...remote.Option) (map[string]digest.Digest, error) {
	out := map[string]digest.Digest{}
	var err error
	vostokFile := File{Title: VostokTitle, Data: Vostok(), MediaType: "text/plain"}
	if out[TagVostok], err = PushArtifact(ctx, repo, TagVostok, []File{vostokFile}, opts...); err != nil {
		return nil, err
	}
	if out[TagV1], err = PushArtifact(ctx, repo, TagV1, []File{
		vostokFile,
		{Title: "README.txt", Data: []byte(readme), MediaType: "text/plain"},
		{Title: "data/notes.txt", Data: []byte(notes), MediaType: "text/plain"},
	}, opts...); err != nil {
		return nil, err
	}
	if out[TagImage], err = pushImage(ctx, repo, opts); err != nil {
		return nil, err
	}
	if out[TagMulti], err = pushMulti(ctx, repo, out[TagVostok], opts); err != nil {
		return nil, err
	}
	return out, nil
}

// pushImage pushes a small OCI image with a real config.
func pushImage(ctx context.Context, repo string, opts []remote.Option) (digest.Digest, error) {
	l1, err := tarLayer(map[string][]byte{"data/" + VostokTitle: Vostok()})
	if err != nil {
		return digest.Digest{}, err
	}
	l2, err := tarLayer(map[string][]byte{"README.txt": []byte(readme)})
	if err != nil {
		return digest.Digest{}, err
	}
	img, err := mutate.AppendLayers(empty.Image, l1, l2)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("seed: %w", err)
	}
	img, err = withConfig(img, v1.Platform{OS: "linux", Architecture: "amd64"}, func(c *v1.Config) {
		c.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "DATA=/data/" + VostokTitle}
		c.Cmd = []string{"cat", "/data/" + VostokTitle}
		c.WorkingDir = "/data"
	})
	if err != nil {
		return digest.Digest{}, err
	}
	return write(ctx, repo, TagImage, img, opts)
}

// pushMulti pushes two random platform images by digest, then an OCI
// index over them and the artifact (an entry with no platform).
func pushMulti(ctx context.Context, repo string, artifact digest.Digest, opts []remote.Option) (digest.Digest, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("seed: %w", err)
	}
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for i, pl := range []v1.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64", Variant: "v8"},
	} {
		l, err := random.Layer(512, types.OCILayer, random.WithSource(rand.NewSource(int64(i+1))))
		if err != nil {
			return digest.Digest{}, fmt.Errorf("seed: %w", err)
		}
		img, err := mutate.AppendLayers(empty.Image, l)
		if err != nil {
			return digest.Digest{}, fmt.Errorf("seed: %w", err)
		}
		if img, err = withConfig(img, pl, func(c *v1.Config) { c.Cmd = []string{"/random"} }); err != nil {
			return digest.Digest{}, err
		}
		desc, err := descriptorOf(img)
		if err != nil {
			return digest.Digest{}, err
		}
		if _, err := write(ctx, repo, "", img, opts); err != nil {
			return digest.Digest{}, err
		}
		desc.Platform = &pl
		idx.Manifests = append(idx.Manifests, desc)
	}
	a, err := remote.Get(r.Digest(artifact.String()), append(slices.Clone(opts), remote.WithContext(ctx))...)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("seed: %w", err)
	}
	ad := a.Descriptor
	ad.ArtifactType = ArtifactType
	idx.Manifests = append(idx.Manifests, ad)

	body, err := json.Marshal(idx)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("seed: %w", err)
	}
	if err := remote.Put(r.Tag(TagMulti), rawManifest{body: body, mediaType: types.OCIImageIndex},
		append(slices.Clone(opts), remote.WithContext(ctx))...); err != nil {
		return digest.Digest{}, fmt.Errorf("seed: push %s: %w", TagMulti, err)
	}
	return digest.Of(body), nil
}

// withConfig turns img into an OCI image for platform pl with edit
// applied to its runtime config.
func withConfig(img v1.Image, pl v1.Platform, edit func(*v1.Config)) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = pl.OS, pl.Architecture, pl.Variant
	edit(&cf.Config)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

func descriptorOf(img v1.Image) (v1.Descriptor, error) {
	h, err := img.Digest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("seed: %w", err)
	}
	size, err := img.Size()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("seed: %w", err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("seed: %w", err)
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: h}, nil
}

// write pushes img, tagged when tag is set, else by digest.
func write(ctx context.Context, repo, tag string, img v1.Image, opts []remote.Option) (digest.Digest, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("seed: %w", err)
	}
	h, err := img.Digest()
	if err != nil {
		return digest.Digest{}, fmt.Errorf("seed: %w", err)
	}
	var ref name.Reference = r.Digest(h.String())
	if tag != "" {
		ref = r.Tag(tag)
	}
	if err := remote.Write(ref, img, append(slices.Clone(opts), remote.WithContext(ctx))...); err != nil {
		return digest.Digest{}, fmt.Errorf("seed: push %s: %w", ref, err)
	}
	return digest.Parse(h.String())
}

// tarLayer makes an OCI gzip layer holding files (sorted by name, fixed
// times, so the digest is stable).
func tarLayer(files map[string][]byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			return nil, fmt.Errorf("seed: %w", err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			return nil, fmt.Errorf("seed: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	return l, nil
}
