package manifestview

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// blob is a named test blob; its digest is sha256(name).
func blob(name string) digest.Digest { return digest.Of([]byte(name)) }

// labels maps digests back to the names used to make them.
var labels = map[digest.Digest]string{}

func init() {
	for _, n := range []string{"cfg", "l1", "l2", "l3", "l4", "m1", "m2", "m3", "m4", "{}"} {
		labels[blob(n)] = n
	}
}

func label(d digest.Digest) string {
	if l, ok := labels[d]; ok {
		return l
	}
	return "doc"
}

// jd is a descriptor for a test document.
func jd(mediaType, name string, size int64, ann map[string]string) map[string]any {
	m := map[string]any{"mediaType": mediaType, "digest": blob(name).String(), "size": size}
	if ann != nil {
		m["annotations"] = ann
	}
	return m
}

func title(t string) map[string]string { return map[string]string{AnnotationTitle: t} }

func withPlatform(m map[string]any, os, arch, variant string) map[string]any {
	p := map[string]any{"os": os, "architecture": arch}
	if variant != "" {
		p["variant"] = variant
	}
	m["platform"] = p
	return m
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// listing flattens a tree into "path kind what" lines, depth first.
func listing(n *Node) []string {
	var out []string
	var walk func(prefix string, n *Node)
	walk = func(prefix string, n *Node) {
		for _, c := range n.Children {
			p := prefix + c.Name
			switch c.Kind {
			case Dir:
				out = append(out, p+"/")
				walk(p+"/", c)
			case Referrers:
				out = append(out, p+"/ (referrers)")
			case Layer:
				out = append(out, fmt.Sprintf("%s/ (layer %s)", p, label(c.Desc.Digest)))
			case Rootfs:
				out = append(out, p+"/ (rootfs)")
			case Symlink:
				out = append(out, fmt.Sprintf("%s -> %s (%s)", p, strings.Replace(c.Target, c.Desc.Digest.String(), label(c.Desc.Digest), 1), label(c.Desc.Digest)))
			default:
				out = append(out, fmt.Sprintf("%s = %s", p, label(c.Desc.Digest)))
			}
		}
	}
	walk("", n)
	return out
}

// short replaces digests in want lines: "{l1}" -> "sha256:<hex of l1>".
func short(lines ...string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		for d, name := range labels {
			l = strings.ReplaceAll(l, "{"+name+"}", d.String())
		}
		out[i] = l
	}
	return out
}

func TestBuild(t *testing.T) {
	const (
		ociManifest = MediaTypeOCIManifest
		ociIndex    = MediaTypeOCIIndex
		ociLayer    = "application/vnd.oci.image.layer.v1.tar"
		ociConfig   = "application/vnd.oci.image.config.v1+json"
	)
	long := strings.Repeat("x", 4096)
	for _, tc := range []struct {
		name string
		doc  any
		want []string
	}{{
		name: "image with config and titled layers",
		doc: map[string]any{
			"schemaVersion": 2, "mediaType": ociManifest,
			"config": jd(ociConfig, "cfg", 3, nil),
			"layers": []any{
				jd(ociLayer, "l1", 2, title("a.txt")),
				jd(ociLayer, "l2", 2, title("data/a.csv")),
				jd(ociLayer, "l3", 2, title("data/deeper/b.csv")),
				jd(ociLayer, "l4", 2, nil),
			},
		},
		want: short("a.txt = l1", "blobs/", "blobs/{cfg} = cfg", "blobs/{l1} = l1", "blobs/{l2} = l2",
			"blobs/{l3} = l3", "blobs/{l4} = l4", "config.json = cfg", "data/", "data/a.csv = l2",
			"data/deeper/", "data/deeper/b.csv = l3", "layers/", "layers/3/ (layer l4)", "manifest.json = doc"),
	}, {
		name: "ORAS artifact with the empty config",
		doc: map[string]any{
			"schemaVersion": 2, "mediaType": ociManifest, "artifactType": "application/vnd.example",
			"config": jd(MediaTypeEmpty, "{}", 2, nil),
			"layers": []any{jd(ociLayer, "l1", 2, title("vostok.icecore.co2"))},
		},
		want: short("blobs/", "blobs/{{}} = {}", "blobs/{l1} = l1", "manifest.json = doc", "vostok.icecore.co2 = l1"),
	}, {
		name: "empty config recognised by digest alone",
		doc: map[string]any{
			"mediaType": ociManifest,
			"config":    jd("application/vnd.example.config", "{}", 2, nil),
			"layers":    []any{jd(ociLayer, "l1", 2, nil)},
		},
		want: short("blobs/", "blobs/{{}} = {}", "blobs/{l1} = l1", "layers/", "layers/0/ (layer l1)", "manifest.json = doc"),
	}, {
		name: "OCI artifact manifest with blobs",
		doc: map[string]any{
			"mediaType": MediaTypeOCIArtifact,
			"blobs":     []any{jd(ociLayer, "l1", 2, title("x"))},
		},
		want: short("blobs/", "blobs/{l1} = l1", "manifest.json = doc", "x = l1"),
	}, {
		name: "index with platforms",
		doc: map[string]any{
			"schemaVersion": 2, "mediaType": ociIndex,
			"manifests": []any{
				withPlatform(jd(ociManifest, "m1", 5, nil), "linux", "amd64", ""),
				withPlatform(jd(ociManifest, "m2", 5, nil), "linux", "arm64", "v8"),
				jd(ociManifest, "m3", 5, nil),
				withPlatform(jd(ociManifest, "m4", 5, nil), "linux", "amd64", ""),
				withPlatform(jd(ociManifest, "l1", 5, nil), "linux", "", ""),
				withPlatform(jd(ociManifest, "l2", 5, nil), "../..", "x", ""),
				withPlatform(jd(ociManifest, "l3", 5, nil), "a/b", "x", ""),
			},
		},
		want: short("index.json = doc", "linux-amd64 -> ../m1 (m1)", "linux-arm64-v8 -> ../m2 (m2)",
			"{l1} -> ../l1 (l1)", "{l2} -> ../l2 (l2)", "{l3} -> ../l3 (l3)",
			"{m3} -> ../m3 (m3)", "{m4} -> ../m4 (m4)"),
	}, {
		name: "Docker manifest list",
		doc: map[string]any{
			"schemaVersion": 2, "mediaType": MediaTypeDockerList,
			"manifests": []any{
				withPlatform(jd(MediaTypeDockerManifest, "m1", 5, nil), "linux", "amd64", ""),
				withPlatform(jd(MediaTypeDockerManifest, "m2", 5, nil), "windows", "amd64", ""),
			},
		},
		want: short("index.json = doc", "linux-amd64 -> ../m1 (m1)", "windows-amd64 -> ../m2 (m2)"),
	}, {
		name: "Docker image manifest",
		doc: map[string]any{
			"schemaVersion": 2, "mediaType": MediaTypeDockerManifest,
			"config": jd("application/vnd.docker.container.image.v1+json", "cfg", 3, nil),
			"layers": []any{jd("application/vnd.docker.image.rootfs.diff.tar.gzip", "l1", 2, nil)},
		},
		want: short("blobs/", "blobs/{cfg} = cfg", "blobs/{l1} = l1", "config.json = cfg", "layers/",
			"layers/0/ (layer l1)", "manifest.json = doc", "rootfs/ (rootfs)"),
	}, {
		name: "unsafe titles fall back to digest names",
		doc: map[string]any{
			"mediaType": ociManifest,
			"layers": []any{
				jd(ociLayer, "l1", 2, title("..")),
				jd(ociLayer, "l2", 2, title("/abs")),
				jd(ociLayer, "l3", 2, title("a\x00b")),
				jd(ociLayer, "l4", 2, title(long)),
				jd(ociLayer, "m1", 2, title("../escape")),
				jd(ociLayer, "m2", 2, title("a//b")),
				jd(ociLayer, "m3", 2, title("dir/")),
				jd(ociLayer, "m4", 2, title("./x")),
			},
		},
		want: short("blobs/", "blobs/{l1} = l1", "blobs/{l2} = l2", "blobs/{l3} = l3", "blobs/{l4} = l4",
			"blobs/{m1} = m1", "blobs/{m2} = m2", "blobs/{m3} = m3", "blobs/{m4} = m4", "manifest.json = doc",
			"{l1} = l1", "{l2} = l2", "{l3} = l3", "{l4} = l4", "{m1} = m1", "{m2} = m2", "{m3} = m3", "{m4} = m4"),
	}, {
		name: "colliding titles fall back",
		doc: map[string]any{
			"mediaType": ociManifest,
			"config":    jd(ociConfig, "cfg", 3, nil),
			"layers": []any{
				jd(ociLayer, "l1", 2, title("same")),
				jd(ociLayer, "l2", 2, title("same")),
				jd(ociLayer, "l3", 2, title("manifest.json")),
				jd(ociLayer, "l4", 2, title("blobs/evil")),
				jd(ociLayer, "m1", 2, title("d/f")),
				jd(ociLayer, "m2", 2, title("d")),
				jd(ociLayer, "m3", 2, title("same/under")),
				jd(ociLayer, "m4", 2, title(blob("l1").String())),
			},
		},
		want: short("blobs/", "blobs/{cfg} = cfg", "blobs/{l1} = l1", "blobs/{l2} = l2", "blobs/{l3} = l3",
			"blobs/{l4} = l4", "blobs/{m1} = m1", "blobs/{m2} = m2", "blobs/{m3} = m3", "blobs/{m4} = m4",
			"config.json = cfg", "d/", "d/f = m1", "manifest.json = doc", "same = l1",
			"{l2} = l2", "{l3} = l3", "{l4} = l4", "{m2} = m2", "{m3} = m3", "{m4} = m4"),
	}, {
		name: "title equal to config.json when the config is empty still falls back",
		doc: map[string]any{
			"mediaType": ociManifest,
			"config":    jd(MediaTypeEmpty, "{}", 2, nil),
			"layers":    []any{jd(ociLayer, "l1", 2, title("config.json"))},
		},
		want: short("blobs/", "blobs/{{}} = {}", "blobs/{l1} = l1", "manifest.json = doc", "{l1} = l1"),
	}, {
		name: "255-byte component is fine, a repeated title and digest is listed once",
		doc: map[string]any{
			"mediaType": ociManifest,
			"layers": []any{
				jd(ociLayer, "l1", 2, title(long[:255])),
				jd(ociLayer, "l1", 2, title(long[:255])),
				jd(ociLayer, "l2", 2, title("a/"+long[:256])),
			},
		},
		want: short("blobs/", "blobs/{l1} = l1", "blobs/{l2} = l2", "manifest.json = doc",
			long[:255]+" = l1", "{l2} = l2"),
	}, {
		name: "bad descriptors are skipped, the rest is shown",
		doc: map[string]any{
			"mediaType": ociManifest,
			"config":    map[string]any{"mediaType": ociConfig, "digest": "sha512:" + strings.Repeat("ab", 64), "size": 3},
			"layers": []any{
				map[string]any{"mediaType": ociLayer, "size": 2, "annotations": title("nodigest")},
				map[string]any{"mediaType": ociLayer, "digest": strings.ToUpper(blob("l2").String()), "size": 2},
				map[string]any{"mediaType": ociLayer, "digest": blob("l3").Hex(), "size": 2},
				jd(ociLayer, "l4", -1, title("negative")),
				jd(ociLayer, "l1", 2, title("good")),
			},
		},
		want: short("blobs/", "blobs/{l1} = l1", "good = l1", "manifest.json = doc"),
	}, {
		name: "unknown media type with layers is a manifest",
		doc: map[string]any{
			"mediaType": "application/x-unknown",
			"layers":    []any{jd(ociLayer, "l1", 2, title("f"))},
		},
		want: short("blobs/", "blobs/{l1} = l1", "f = l1", "manifest.json = doc"),
	}, {
		name: "no media type with manifests is an index",
		doc: map[string]any{
			"manifests": []any{withPlatform(jd(ociManifest, "m1", 5, nil), "linux", "amd64", "")},
		},
		want: short("index.json = doc", "linux-amd64 -> ../m1 (m1)"),
	}, {
		name: "object without descriptors is a manifest with nothing in it",
		doc:  map[string]any{"schemaVersion": 2},
		want: short("blobs/", "manifest.json = doc"),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			body := mustJSON(t, tc.doc)
			d := digest.Of(body)
			root, err := Build(Doc{Digest: d, MediaType: "application/x-from-header", Body: body})
			if err != nil {
				t.Fatal(err)
			}
			checkTree(t, root)
			got := listing(root)
			slices.Sort(got)
			tc.want = append(tc.want, "referrers/ (referrers)") // every document has one
			slices.Sort(tc.want)
			if !slices.Equal(got, tc.want) {
				t.Errorf("tree:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			self := root.Child(nameManifest)
			if self == nil {
				self = root.Child(nameIndex)
			}
			if self.Desc.Digest != d || self.Desc.Size != int64(len(body)) {
				t.Errorf("document node desc = %+v", self.Desc)
			}
		})
	}
}

func TestBuildDescFields(t *testing.T) {
	body := mustJSON(t, map[string]any{
		"mediaType": MediaTypeOCIIndex,
		"manifests": []any{withPlatform(jd(MediaTypeOCIManifest, "m2", 77, nil), "linux", "arm64", "v8")},
	})
	root, err := Build(Doc{Body: body})
	if err != nil {
		t.Fatal(err)
	}
	idx := root.Child(nameIndex)
	if idx.Desc.Digest != digest.Of(body) || idx.Desc.MediaType != MediaTypeOCIIndex {
		t.Errorf("index.json desc = %+v (zero Doc.Digest should mean sha256 of the body)", idx.Desc)
	}
	l := root.Child("linux-arm64-v8")
	want := Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	if l == nil || l.Desc.Size != 77 || l.Desc.MediaType != MediaTypeOCIManifest || l.Desc.Platform == nil || *l.Desc.Platform != want {
		t.Errorf("platform link = %+v", l)
	}
}

func TestBuildInvalid(t *testing.T) {
	for _, body := range []string{
		``, `null`, `[]`, `"manifest"`, `{`, `{"layers": "x"}`, `{"layers": [1]}`,
		`{"mediaType": 7}`, `{} trailing`, `{"config": {"size": "big"}}`,
		`{"layers": [{"size": 99999999999999999999}]}`,
		`{"layers": [{"annotations": {"org.opencontainers.image.title": 1}}]}`,
	} {
		n, err := Build(Doc{Body: []byte(body)})
		if !errors.Is(err, hfserr.ErrInvalid) || n != nil {
			t.Errorf("Build(%q) = %v, %v; want ErrInvalid", body, n, err)
		}
	}
}

func TestChild(t *testing.T) {
	body := mustJSON(t, map[string]any{
		"mediaType": MediaTypeOCIManifest,
		"layers":    []any{jd("x", "l1", 1, title("z/y")), jd("x", "l2", 1, title("b"))},
	})
	root, err := Build(Doc{Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if c := root.Child("b"); c == nil || c.Desc.Digest != blob("l2") {
		t.Errorf("Child(b) = %+v", c)
	}
	if c := root.Child("z").Child("y"); c == nil || c.Desc.Digest != blob("l1") {
		t.Errorf("Child(z).Child(y) = %+v", c)
	}
	for _, name := range []string{"", "a", "zz", "z/y", "blobs/x"} {
		if c := root.Child(name); c != nil {
			t.Errorf("Child(%q) = %+v, want nil", name, c)
		}
	}
	if root.Child("b").Child("b") != nil || (*Node)(nil).Child("x") != nil {
		t.Error("Child of a file or nil node should be nil")
	}
}

func TestIsManifestType(t *testing.T) {
	for mt, want := range map[string]bool{
		MediaTypeOCIManifest: true, MediaTypeOCIIndex: true, MediaTypeDockerManifest: true,
		MediaTypeDockerList: true, MediaTypeOCIArtifact: true,
		MediaTypeEmpty: false, "application/vnd.oci.image.layer.v1.tar": false, "": false,
	} {
		if got := IsManifestType(mt); got != want {
			t.Errorf("IsManifestType(%q) = %v", mt, got)
		}
	}
}

// checkTree verifies the invariants every tree keeps, whatever the input.
func checkTree(t testing.TB, root *Node) {
	t.Helper()
	if root == nil || root.Kind != Dir {
		t.Fatalf("root = %+v", root)
	}
	var walk func(n *Node, depth int)
	walk = func(n *Node, depth int) {
		for i, c := range n.Children {
			if !validComponent(c.Name) || strings.Contains(c.Name, "/") {
				t.Fatalf("unsafe name %q", c.Name)
			}
			if i > 0 && n.Children[i-1].Name >= c.Name {
				t.Fatalf("children not sorted/unique: %q, %q", n.Children[i-1].Name, c.Name)
			}
			if n.Child(c.Name) != c {
				t.Fatalf("Child(%q) does not find it", c.Name)
			}
			switch c.Kind {
			case Dir:
				walk(c, depth+1)
			case Symlink:
				if depth != 0 || c.Target != "../"+c.Desc.Digest.String() {
					t.Fatalf("symlink %q -> %q", c.Name, c.Target)
				}
			case File:
				if c.Desc.Digest.IsZero() || c.Desc.Size < 0 {
					t.Fatalf("file %q desc %+v", c.Name, c.Desc)
				}
			case Referrers:
				if depth != 0 || c.Name != NameReferrers || c.Desc.Digest != root.Desc.Digest || root.Desc.Digest.IsZero() {
					t.Fatalf("referrers %q desc %+v, root desc %+v", c.Name, c.Desc, root.Desc)
				}
			case Layer:
				if c.Desc.Digest.IsZero() || !IsTarLayer(c.Desc) {
					t.Fatalf("layer %q desc %+v", c.Name, c.Desc)
				}
			case Rootfs:
				if depth != 0 || c.Name != NameRootfs || c.Desc.Digest != root.Desc.Digest {
					t.Fatalf("rootfs %q desc %+v, root desc %+v", c.Name, c.Desc, root.Desc)
				}
			default:
				t.Fatalf("kind %v", c.Kind)
			}
		}
	}
	walk(root, 0)
}

func FuzzBuild(f *testing.F) {
	f.Add([]byte(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"x","digest":"sha256:9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37","size":1,"annotations":{"org.opencontainers.image.title":"data/a.csv"}}]}`))
	f.Add([]byte(`{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}`))
	f.Add([]byte(`{"layers":[{"digest":"sha256:9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37","annotations":{"org.opencontainers.image.title":"../a/./b//c"}}]}`))
	f.Add([]byte(`{"blobs":[{"digest":"sha256:9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37","size":-1}]}`))
	f.Add([]byte(`{"manifests":[{"digest":"sha1:abc"}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"layers":null,"config":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		root, err := Build(Doc{MediaType: "application/octet-stream", Body: body})
		if err != nil {
			if !errors.Is(err, hfserr.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		checkTree(t, root)
	})
}

func TestBuildCountsSkipped(t *testing.T) {
	body := mustJSON(t, map[string]any{
		"mediaType": MediaTypeOCIManifest,
		"config":    map[string]any{"digest": "sha512:" + strings.Repeat("ab", 64)},
		"layers": []any{
			map[string]any{"size": 2},
			map[string]any{"digest": "sha256:" + strings.Repeat("0", 64)},
			jd("x", "l4", -1, nil),
			jd("x", "l1", 2, nil),
		},
	})
	b, err := build(Doc{Body: body})
	if err != nil || b.skipped != 4 || len(b.seen) != 2 {
		t.Errorf("build: skipped %d, seen %d, err %v; want 4, 2 (document + l1)", b.skipped, len(b.seen), err)
	}
}

func TestBuildURLs(t *testing.T) {
	tests := []struct {
		urls []string
		want []string
	}{
		{nil, nil},
		{[]string{"http://127.0.0.1:8080/l1"}, []string{"http://127.0.0.1:8080/l1"}},
		{[]string{"https://cdn.example/l1", "file:///etc/passwd", "ftp://x/y", "http:///nohost", "::"},
			[]string{"https://cdn.example/l1"}},
	}
	for _, tt := range tests {
		l := jd("application/vnd.oci.image.layer.v1.tar", "l1", 5, title("a.bin"))
		if tt.urls != nil {
			l["urls"] = tt.urls
		}
		body := mustJSON(t, map[string]any{"mediaType": MediaTypeOCIManifest, "layers": []any{l}})
		root, err := Build(Doc{Body: body})
		if err != nil {
			t.Fatal(err)
		}
		n := root.Child("a.bin")
		if n == nil || !slices.Equal(n.Desc.URLs, tt.want) {
			t.Errorf("urls %q: node %+v, want URLs %q", tt.urls, n, tt.want)
		}
	}
}
