package manifestview

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

const (
	tgz       = "application/vnd.oci.image.layer.v1.tar+gzip"
	imgConfig = "application/vnd.oci.image.config.v1+json"
)

func unpack(title string) map[string]string {
	return map[string]string{AnnotationTitle: title, AnnotationUnpack: "true"}
}

func TestIsTarLayer(t *testing.T) {
	tests := []struct {
		name string
		d    Desc
		want bool
	}{
		{"oci gzip", Desc{MediaType: tgz}, true},
		{"oci zstd", Desc{MediaType: "application/vnd.oci.image.layer.v1.tar+zstd"}, true},
		{"oci tar", Desc{MediaType: "application/vnd.oci.image.layer.v1.tar"}, true},
		{"nondistributable", Desc{MediaType: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"}, true},
		{"docker", Desc{MediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip"}, true},
		{"docker foreign", Desc{MediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"}, true},
		{"oras file", Desc{MediaType: "application/vnd.oci.image.layer.v1.tar", Annotations: title("a.csv")}, false},
		{"oras directory", Desc{MediaType: tgz, Annotations: unpack("dir")}, true},
		{"other", Desc{MediaType: "application/octet-stream"}, false},
		{"encrypted", Desc{MediaType: tgz + "+encrypted"}, false},
	}
	for _, tt := range tests {
		if got := IsTarLayer(tt.d); got != tt.want {
			t.Errorf("%s: IsTarLayer = %v", tt.name, got)
		}
	}
}

func TestLayerViews(t *testing.T) {
	tests := []struct {
		name string
		doc  map[string]any
		want []string // the lines of listing that are layer views
	}{
		{
			name: "image",
			doc: map[string]any{"mediaType": MediaTypeOCIManifest, "config": jd(imgConfig, "cfg", 3, nil),
				"layers": []any{jd(tgz, "l1", 2, nil), jd(tgz, "l2", 2, nil)}},
			want: []string{"layers/", "layers/0/ (layer l1)", "layers/1/ (layer l2)", "rootfs/ (rootfs)"},
		},
		{
			name: "an invalid layer keeps the positions and leaves no rootfs",
			doc: map[string]any{"mediaType": MediaTypeOCIManifest, "config": jd(imgConfig, "cfg", 3, nil),
				"layers": []any{map[string]any{"mediaType": tgz, "digest": "sha256:bad"}, jd(tgz, "l2", 2, nil)}},
			want: []string{"layers/", "layers/1/ (layer l2)"},
		},
		{
			name: "ORAS directory unpacked at its title",
			doc: map[string]any{"mediaType": MediaTypeOCIManifest, "config": jd(MediaTypeEmpty, "{}", 2, nil),
				"layers": []any{jd(tgz, "l1", 2, unpack("data/dir")), jd(tgz, "l2", 2, title("file.tgz"))}},
			want: []string{"data/dir/ (layer l1)", "layers/", "layers/0/ (layer l1)"},
		},
		{
			name: "ORAS directory with an unsafe title at its fallback name",
			doc: map[string]any{"mediaType": MediaTypeOCIManifest,
				"layers": []any{jd(tgz, "l1", 2, unpack("../up"))}},
			want: []string{"layers/", "layers/0/ (layer l1)", "{l1}/ (layer l1)"},
		},
		{
			name: "titles cannot take the view names",
			doc: map[string]any{"mediaType": MediaTypeOCIManifest,
				"layers": []any{jd("text/plain", "l1", 2, title("layers")), jd("text/plain", "l2", 2, title("rootfs"))}},
			want: nil,
		},
		{
			name: "artifact of plain files has no views",
			doc: map[string]any{"mediaType": MediaTypeOCIManifest, "config": jd(MediaTypeEmpty, "{}", 2, nil),
				"layers": []any{jd("application/vnd.oci.image.layer.v1.tar", "l1", 2, title("a.csv"))}},
			want: nil,
		},
		{
			name: "an index has no views",
			doc: map[string]any{"mediaType": MediaTypeOCIIndex,
				"manifests": []any{jd(MediaTypeOCIManifest, "m1", 5, nil)}},
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, err := Build(Doc{Body: mustJSON(t, tt.doc)})
			if err != nil {
				t.Fatal(err)
			}
			checkTree(t, root)
			var got []string
			for _, l := range listing(root) {
				if strings.Contains(l, "(layer ") || strings.Contains(l, "(rootfs)") || l == "layers/" {
					got = append(got, l)
				}
			}
			want := short(tt.want...)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("views:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
}

func TestImageOf(t *testing.T) {
	body := mustJSON(t, map[string]any{"mediaType": MediaTypeDockerManifest,
		"config": jd("application/vnd.docker.container.image.v1+json", "cfg", 3, nil),
		"layers": []any{jd("application/vnd.docker.image.rootfs.diff.tar.gzip", "l1", 2, nil), jd(tgz, "l2", 2, nil)}})
	im, err := ImageOf(Doc{Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if !im.IsImage || im.Config == nil || im.Config.Digest != blob("cfg") || len(im.Layers) != 2 || im.Layers[1].Digest != blob("l2") {
		t.Fatalf("ImageOf = %+v", im)
	}
	if _, err := ImageOf(Doc{Body: []byte("[]")}); !errors.Is(err, hfserr.ErrInvalid) {
		t.Fatalf("ImageOf([]) error %v", err)
	}
}

func TestDiffIDs(t *testing.T) {
	a, b := digest.Of([]byte("a")), digest.Of([]byte("b"))
	tests := []struct {
		name    string
		config  string
		want    []digest.Digest
		wantErr bool
	}{
		{"two", `{"rootfs":{"type":"layers","diff_ids":["` + a.String() + `","` + b.String() + `"]}}`, []digest.Digest{a, b}, false},
		{"none", `{"architecture":"amd64"}`, []digest.Digest{}, false},
		{"bad digest", `{"rootfs":{"diff_ids":["sha256:zz"]}}`, nil, true},
		{"not json", `nope`, nil, true},
	}
	for _, tt := range tests {
		got, err := DiffIDs([]byte(tt.config))
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("%s: DiffIDs = %v, %v", tt.name, got, err)
		}
		if err != nil && !errors.Is(err, hfserr.ErrInvalid) {
			t.Errorf("%s: error %v is not ErrInvalid", tt.name, err)
		}
	}
}
