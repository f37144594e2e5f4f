package seed

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/manifestview"
)

func TestVostok(t *testing.T) {
	if got := digest.Of(Vostok()).String(); got != VostokDigest {
		t.Fatalf("Vostok() hashes to %s", got)
	}
	v := Vostok()
	v[0] ^= 1
	if digest.Of(Vostok()).String() != VostokDigest {
		t.Fatal("Vostok() shares its buffer with callers")
	}
}

func newRegistry(t *testing.T) string {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://") + "/demo/data"
}

func manifestOf(t *testing.T, repo, ref string) (*v1.Manifest, []byte, digest.Digest) {
	t.Helper()
	r, err := name.ParseReference(repo + ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	m, err := v1.ParseManifest(strings.NewReader(string(desc.Manifest)))
	if err != nil {
		t.Fatal(err)
	}
	return m, desc.Manifest, digest.Of(desc.Manifest)
}

func titles(m *v1.Manifest) []string {
	var out []string
	for _, l := range m.Layers {
		out = append(out, l.Annotations[AnnotationTitle])
	}
	return out
}

func TestPush(t *testing.T) {
	ctx := context.Background()
	repo := newRegistry(t)
	got, err := Push(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("demo set: %v", got)
	for _, tag := range []string{TagVostok, TagV1, TagMulti, TagImage} {
		d, ok := got[tag]
		if !ok {
			t.Fatalf("Push did not report tag %s", tag)
		}
		ref, _ := name.NewTag(repo + ":" + tag)
		desc, err := remote.Head(ref)
		if err != nil || desc.Digest.String() != d.String() {
			t.Errorf("tag %s -> %v (%v), Push said %s", tag, desc, err, d)
		}
	}

	// vostok: an ORAS artifact with the empty config and one titled layer.
	m, body, _ := manifestOf(t, repo, ":"+TagVostok)
	if m.ArtifactType != ArtifactType || m.MediaType != types.OCIManifestSchema1 ||
		m.Config.MediaType != types.OCIEmptyJSON || m.Config.Size != 2 || string(m.Config.Data) != "{}" {
		t.Errorf("vostok manifest = %s", body)
	}
	if len(m.Layers) != 1 || m.Layers[0].Digest.String() != VostokDigest || titles(m)[0] != VostokTitle {
		t.Fatalf("vostok layers = %+v", m.Layers)
	}
	r, _ := name.NewRepository(repo)
	l, err := remote.Layer(r.Digest(VostokDigest))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || digest.Of(b).String() != VostokDigest {
		t.Errorf("vostok blob read back: %v, %d bytes", err, len(b))
	}
	tree, err := manifestview.Build(manifestview.Doc{Digest: got[TagVostok], Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if f := tree.Child(VostokTitle); f == nil || f.Desc.Digest.String() != VostokDigest || tree.Child("config.json") != nil {
		t.Errorf("hashfs view of vostok lacks the titled file or shows the empty config")
	}

	// v1: three titled files, one in a subdirectory.
	m, body, _ = manifestOf(t, repo, ":"+TagV1)
	if want := []string{VostokTitle, "README.txt", "data/notes.txt"}; !slices.Equal(titles(m), want) {
		t.Errorf("v1 titles = %v, want %v", titles(m), want)
	}
	tree, err = manifestview.Build(manifestview.Doc{Body: body})
	if err != nil || tree.Child("data").Child("notes.txt") == nil {
		t.Errorf("hashfs view of v1 lacks data/notes.txt (%v)", err)
	}

	// image: OCI image, config with Env and Cmd, two layers.
	ref, _ := name.NewTag(repo + ":" + TagImage)
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	mt, _ := img.MediaType()
	if len(layers) != 2 || len(cf.Config.Env) == 0 || len(cf.Config.Cmd) == 0 || mt != types.OCIManifestSchema1 ||
		len(cf.RootFS.DiffIDs) != 2 {
		t.Errorf("image: %d layers, media type %s, config %+v", len(layers), mt, cf)
	}
	if err := validateLayers(layers); err != nil {
		t.Errorf("image layers: %v", err)
	}

	// multi: an OCI index with two platforms and the artifact.
	ref, _ = name.NewTag(repo + ":" + TagMulti)
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var plats []string
	for _, e := range im.Manifests {
		if e.Platform == nil {
			if e.Digest.String() != got[TagVostok].String() {
				t.Errorf("entry without platform is %s, want the vostok artifact", e.Digest)
			}
			plats = append(plats, "-")
			continue
		}
		plats = append(plats, e.Platform.String())
		child, err := idx.Image(e.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := child.ConfigFile()
		if err != nil || cf.OS != e.Platform.OS || cf.Architecture != e.Platform.Architecture || cf.Variant != e.Platform.Variant {
			t.Errorf("child %s config platform %+v (%v)", e.Platform, cf, err)
		}
	}
	if want := []string{"linux/amd64", "linux/arm64/v8", "-"}; !slices.Equal(plats, want) {
		t.Errorf("multi platforms = %v, want %v", plats, want)
	}
	_, body, _ = manifestOf(t, repo, ":"+TagMulti)
	tree, err = manifestview.Build(manifestview.Doc{Body: body})
	if err != nil || tree.Child("linux-amd64") == nil || tree.Child("linux-arm64-v8") == nil || tree.Child(got[TagVostok].String()) == nil {
		t.Errorf("hashfs view of multi: %v", err)
	}

	// The demo set is the same on every run.
	again, err := Push(ctx, newRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	for tag, d := range got {
		if again[tag] != d {
			t.Errorf("tag %s: %s then %s; want stable digests", tag, d, again[tag])
		}
	}
}

// validateLayers reads every layer and checks its digest.
func validateLayers(layers []v1.Layer) error {
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		h, _ := l.Digest()
		if got := digest.Of(b).String(); got != h.String() {
			return fmt.Errorf("layer %s hashes to %s", h, got)
		}
	}
	return nil
}

func TestPushArtifactRejects(t *testing.T) {
	repo := newRegistry(t)
	for _, files := range [][]File{
		{{Title: "", Data: []byte("x")}},
		{{Title: "a", Data: []byte("x")}, {Title: "a", Data: []byte("y")}},
	} {
		if _, err := PushArtifact(context.Background(), repo, "bad", files); err == nil {
			t.Errorf("PushArtifact(%+v) succeeded", files)
		}
	}
	if _, err := PushArtifact(context.Background(), repo, "bad tag!", nil); err == nil {
		t.Error("PushArtifact with a malformed tag succeeded")
	}
	d, err := PushArtifact(context.Background(), repo, "empty", nil)
	if err != nil {
		t.Fatalf("artifact with no files: %v", err)
	}
	if _, _, got := manifestOf(t, repo, "@"+d.String()); got != d {
		t.Errorf("pushed %s, read back %s", d, got)
	}
}
