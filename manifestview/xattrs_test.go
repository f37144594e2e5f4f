package manifestview

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
)

func TestAttrs(t *testing.T) {
	subject := blob("m1")
	many := map[string]string{}
	for i := range 300 {
		many[fmt.Sprintf("%s%03d", strings.Repeat("k", 220), i)] = "v"
	}
	for _, tc := range []struct {
		name        string
		desc        Desc
		want        []string // "name=value"
		wantDropped []string // substrings, in order
	}{{
		name: "everything",
		desc: Desc{MediaType: MediaTypeOCIManifest, ArtifactType: "application/spdx+json", Subject: subject,
			Platform:    &Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
			Annotations: map[string]string{"org.opencontainers.image.title": "a.txt", "b": "", "a/b c": "x\x00y"}},
		want: []string{
			AttrMediaType + "=" + MediaTypeOCIManifest, AttrArtifactType + "=application/spdx+json",
			AttrSubject + "=" + subject.String(), AttrPlatform + "=linux/arm64/v8",
			"user.oci.annotation.a/b c=x\x00y", "user.oci.annotation.b=", "user.oci.annotation.org.opencontainers.image.title=a.txt",
		},
	}, {
		name: "nothing",
		desc: Desc{Platform: &Platform{OS: "linux"}},
	}, {
		name: "limits",
		desc: Desc{Annotations: map[string]string{
			"":                       "empty key",
			strings.Repeat("n", 236): "name of 256 bytes",
			strings.Repeat("n", 235): "name of 255 bytes",
			"nul\x00key":             "v",
			"big":                    strings.Repeat("v", 64<<10+1),
			"fits":                   strings.Repeat("v", 64<<10),
		}},
		want: []string{
			"user.oci.annotation.fits=" + strings.Repeat("v", 64<<10),
			"user.oci.annotation." + strings.Repeat("n", 235) + "=name of 255 bytes",
		},
		wantDropped: []string{`annotation "": empty key`, `annotation "big": value of 65537 bytes`, `"nnnn`, "name over 255 bytes", `annotation "nul\x00key": name holds a NUL`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			attrs, dropped := Attrs(tc.desc)
			var got []string
			for _, a := range attrs {
				got = append(got, a.Name+"="+a.Value)
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
				t.Errorf("Attrs = %q\nwant %q", got, tc.want)
			}
			joined := strings.Join(dropped, "\n")
			rest := joined
			for _, w := range tc.wantDropped {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("dropped %q does not say %q (in order)", joined, w)
					break
				}
				rest = rest[i+len(w):]
			}
			if len(tc.wantDropped) == 0 && len(dropped) > 0 {
				t.Errorf("dropped %q, want nothing", dropped)
			}
		})
	}

	t.Run("the names of one node stay within 60 KiB", func(t *testing.T) {
		attrs, dropped := Attrs(Desc{MediaType: "x", Annotations: many})
		total := 0
		for _, a := range attrs {
			total += len(a.Name) + 1
		}
		if total > maxAttrList || len(attrs)+len(dropped) != 301 || len(dropped) == 0 {
			t.Errorf("%d attributes (%d bytes of names), %d dropped", len(attrs), total, len(dropped))
		}
		if attrs[0].Name != AttrMediaType {
			t.Errorf("the fixed attributes come first: %q", attrs[0].Name)
		}
	})
}

func TestBuildDocumentMetadata(t *testing.T) {
	subject := Desc{Digest: blob("m1"), Size: 5, MediaType: MediaTypeOCIManifest}
	subj := map[string]any{"mediaType": subject.MediaType, "digest": subject.Digest.String(), "size": subject.Size}
	for _, tc := range []struct {
		name         string
		doc          map[string]any
		artifactType string
		subject      bool
		titled       []string // names that must fall back
	}{{
		name: "referrer with artifactType and subject",
		doc: map[string]any{
			"schemaVersion": 2, "mediaType": MediaTypeOCIManifest, "artifactType": "application/spdx+json",
			"config":      jd(MediaTypeEmpty, "{}", 2, nil),
			"layers":      []any{jd("x", "l1", 2, title("subject")), jd("x", "l2", 2, title("referrers/x"))},
			"subject":     subj,
			"annotations": map[string]string{"org.example.kind": "sbom"},
		},
		artifactType: "application/spdx+json",
		subject:      true,
		titled:       []string{blob("l1").String(), blob("l2").String()},
	}, {
		name: "image: the config's media type",
		doc: map[string]any{
			"schemaVersion": 2, "mediaType": MediaTypeOCIManifest,
			"config": jd("application/vnd.oci.image.config.v1+json", "cfg", 3, nil),
			"layers": []any{},
		},
		artifactType: "application/vnd.oci.image.config.v1+json",
	}, {
		name: "empty config without artifactType: none",
		doc: map[string]any{
			"schemaVersion": 2, "mediaType": MediaTypeOCIManifest,
			"config": jd(MediaTypeEmpty, "{}", 2, nil),
		},
	}, {
		name: "index with a subject",
		doc: map[string]any{
			"schemaVersion": 2, "mediaType": MediaTypeOCIIndex, "artifactType": "application/vnd.example.bundle",
			"manifests": []any{}, "subject": subj,
		},
		artifactType: "application/vnd.example.bundle",
		subject:      true,
	}, {
		name: "a subject with a bad digest is left out",
		doc: map[string]any{
			"schemaVersion": 2, "mediaType": MediaTypeOCIManifest,
			"subject": map[string]any{"digest": "sha256:nope", "size": 1},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			body := mustJSON(t, tc.doc)
			d := digest.Of(body)
			b, err := build(Doc{Digest: d, Body: body})
			if err != nil {
				t.Fatal(err)
			}
			root := b.root
			checkTree(t, root)
			self := root.Desc
			if self.Digest != d || self.ArtifactType != tc.artifactType || self.Size != int64(len(body)) {
				t.Errorf("root desc = %+v, want digest %s, artifactType %q", self, d, tc.artifactType)
			}
			doc := root.Child(nameManifest)
			if doc == nil {
				doc = root.Child(nameIndex)
			}
			if doc == nil || doc.Desc.ArtifactType != self.ArtifactType || fmt.Sprint(doc.Desc.Annotations) != fmt.Sprint(self.Annotations) {
				t.Errorf("document file desc = %+v, want the root's %+v", doc, self)
			}
			if ann, _ := tc.doc["annotations"].(map[string]string); fmt.Sprint(ann) != fmt.Sprint(self.Annotations) {
				t.Errorf("root annotations = %v, want %v", self.Annotations, ann)
			}
			ref := root.Child(NameReferrers)
			if ref == nil || ref.Kind != Referrers || ref.Desc.Digest != d {
				t.Errorf("referrers node = %+v", ref)
			}
			s := root.Child(NameSubject)
			switch {
			case tc.subject && (s == nil || s.Kind != Symlink || s.Target != "../"+subject.Digest.String() || self.Subject != subject.Digest):
				t.Errorf("subject node = %+v, root subject %s", s, self.Subject)
			case tc.subject && (len(b.seen) < 2 || b.seen[1].Digest != subject.Digest):
				t.Errorf("the subject is not among the descriptors seen: %+v", b.seen)
			case !tc.subject && (s != nil || !self.Subject.IsZero()):
				t.Errorf("subject node %+v without a subject", s)
			}
			for _, n := range tc.titled {
				if root.Child(n) == nil {
					t.Errorf("a title taking a fixed name is not at its fallback %s", n)
				}
			}
		})
	}
}

func TestRepoPlatform(t *testing.T) {
	reg := newFakeRegistry()
	m1 := reg.add(MediaTypeOCIManifest, manifestBody(t, "l1"))
	idx := reg.add(MediaTypeOCIIndex, mustJSON(t, map[string]any{
		"mediaType": MediaTypeOCIIndex,
		"manifests": []any{
			withPlatform(map[string]any{"mediaType": MediaTypeOCIManifest, "digest": m1.String(), "size": 5}, "linux", "arm64", "v8"),
			withPlatform(map[string]any{"mediaType": MediaTypeOCIManifest, "digest": m1.String(), "size": 5}, "linux", "amd64", ""),
			jd(MediaTypeOCIManifest, "m2", 5, nil),
		},
	}))
	r, _ := newTestRepo(reg, newMemStore())
	if _, ok := r.Platform(m1); ok {
		t.Fatal("a platform known before any index was read")
	}
	if _, err := r.Tree(context.Background(), idx); err != nil {
		t.Fatal(err)
	}
	if p, ok := r.Platform(m1); !ok || p != (Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}) {
		t.Errorf("Platform(m1) = %+v, %v; want the first entry's", p, ok)
	}
	if _, ok := r.Platform(blob("m2")); ok {
		t.Error("an entry without a platform has one")
	}
}
