package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// refDesc is an index entry as a referrers list has it.
func refDesc(d digest.Digest, artifactType string, ann map[string]string) map[string]any {
	m := map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d.String(), "size": 100}
	if artifactType != "" {
		m["artifactType"] = artifactType
	}
	if ann != nil {
		m["annotations"] = ann
	}
	return m
}

func indexOf(entries ...map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaTypeIndex, "manifests": entries})
	return b
}

// referrersAPI serves the referrers endpoint with serve and counts its
// requests; a GET of the manifest tag serves tagIndex when it is set.
func referrersAPI(calls *atomic.Int64, serve http.HandlerFunc, tag string, tagIndex []byte) hook {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		switch {
		case strings.Contains(r.URL.Path, "/referrers/"):
			calls.Add(1)
			serve(w, r)
		case tagIndex != nil && strings.HasSuffix(r.URL.Path, "/manifests/"+tag):
			mt := mediaTypeIndex
			if !strings.Contains(string(tagIndex), mediaTypeIndex) {
				mt = "application/vnd.oci.image.manifest.v1+json"
			}
			w.Header().Set("Content-Type", mt)
			_, _ = w.Write(tagIndex)
		default:
			next.ServeHTTP(w, r)
		}
	}
}

func TestReferrers(t *testing.T) {
	r1, r2, r3 := digest.Of([]byte("r1")), digest.Of([]byte("r2")), digest.Of([]byte("r3"))
	sbom := map[string]string{"org.example.kind": "sbom"}
	page := func(body []byte, link string) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			if link != "" {
				w.Header().Set("Link", link)
			}
			w.Header().Set("Content-Type", mediaTypeIndex)
			_, _ = w.Write(body)
		}
	}
	for _, tc := range []struct {
		name     string
		api      http.HandlerFunc // nil: the registry's own answer (404)
		tagIndex []byte           // served as the referrers tag
		want     []Referrer
		wantErr  error
		apiCalls int64
		tagGETs  int
	}{{
		name: "API, two pages, duplicates and bad entries left out",
		api: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("page") == "2" {
				page(indexOf(refDesc(r2, "application/spdx+json", nil), refDesc(r1, "again", nil)), "")(w, r)
				return
			}
			bad := refDesc(r3, "x", nil)
			bad["digest"] = "sha512:" + strings.Repeat("a", 128)
			page(indexOf(refDesc(r1, "application/vnd.example.sig", sbom), bad), `<`+r.URL.Path+`?page=2>; rel="next"`)(w, r)
		},
		want: []Referrer{
			{Descriptor: Descriptor{Digest: r1, Size: 100, MediaType: "application/vnd.oci.image.manifest.v1+json"}, ArtifactType: "application/vnd.example.sig", Annotations: sbom},
			{Descriptor: Descriptor{Digest: r2, Size: 100, MediaType: "application/vnd.oci.image.manifest.v1+json"}, ArtifactType: "application/spdx+json"},
		},
		apiCalls: 2,
	}, {
		name:     "API with no referrers: no fallback",
		api:      page(indexOf(), ""),
		tagIndex: indexOf(refDesc(r1, "ignored", nil)),
		want:     []Referrer{},
		apiCalls: 1,
	}, {
		name: "API index without a Content-Type of its own",
		api: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(indexOf(refDesc(r1, "t", nil)))
		},
		want:     []Referrer{{Descriptor: Descriptor{Digest: r1, Size: 100, MediaType: "application/vnd.oci.image.manifest.v1+json"}, ArtifactType: "t"}},
		apiCalls: 1,
	}, {
		name:     "no API (404): the tag schema",
		tagIndex: indexOf(refDesc(r2, "application/spdx+json", sbom)),
		want:     []Referrer{{Descriptor: Descriptor{Digest: r2, Size: 100, MediaType: "application/vnd.oci.image.manifest.v1+json"}, ArtifactType: "application/spdx+json", Annotations: sbom}},
		tagGETs:  1,
	}, {
		name:    "no API and no tag: none",
		want:    []Referrer{},
		tagGETs: 1,
	}, {
		name: "an answer that is not an index: the tag schema",
		api: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>hello</html>"))
		},
		tagIndex: indexOf(refDesc(r1, "t", nil)),
		want:     []Referrer{{Descriptor: Descriptor{Digest: r1, Size: 100, MediaType: "application/vnd.oci.image.manifest.v1+json"}, ArtifactType: "t"}},
		apiCalls: 1,
		tagGETs:  1,
	}, {
		name:     "405: the tag schema",
		api:      func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusMethodNotAllowed) },
		want:     []Referrer{},
		apiCalls: 1,
		tagGETs:  1,
	}, {
		name:     "denied is an error, not a missing API",
		api:      func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) },
		wantErr:  hfserr.ErrDenied,
		apiCalls: 1,
	}, {
		name:     "registry down: retried, then unavailable",
		api:      func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) },
		wantErr:  hfserr.ErrUnavailable,
		apiCalls: 3,
	}, {
		name: "a second page that is not an index",
		api: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("page") == "2" {
				_, _ = w.Write([]byte("nope"))
				return
			}
			page(indexOf(refDesc(r1, "t", nil)), `<`+r.URL.Path+`?page=2>; rel="next"`)(w, r)
		},
		wantErr:  hfserr.ErrUnavailable,
		apiCalls: 2,
	}, {
		name: "pagination that loops",
		api: func(w http.ResponseWriter, r *http.Request) {
			page(indexOf(refDesc(r1, "t", nil)), `<`+r.URL.Path+`>; rel="next"`)(w, r)
		},
		wantErr:  hfserr.ErrUnavailable,
		apiCalls: 1,
	}, {
		name:     "a Link to another host",
		api:      page(indexOf(refDesc(r1, "t", nil)), `<http://elsewhere.example/v2/x/referrers/y>; rel="next"`),
		wantErr:  hfserr.ErrUnavailable,
		apiCalls: 1,
	}, {
		name:     "a referrers tag that is not an index: none",
		tagIndex: []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`),
		want:     []Referrer{},
		tagGETs:  1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			var calls atomic.Int64
			api := tc.api
			if api == nil {
				api = func(w http.ResponseWriter, r *http.Request) { f.reg.ServeHTTP(w, r) }
				tc.apiCalls = 1
			}
			f.setHook(referrersAPI(&calls, api, ReferrersTag(f.manDigest), tc.tagIndex))
			f.resetCounts()
			c := f.client(t, func(o *Options) { o.Retries = 2 })
			got, err := c.Referrers(context.Background(), f.manDigest)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Referrers = %v, %v; want %v", got, err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Referrers: %v", err)
			} else if !equalReferrers(got, tc.want) {
				t.Errorf("Referrers = %+v\nwant %+v", got, tc.want)
			}
			if n := calls.Load(); n != tc.apiCalls {
				t.Errorf("%d referrers API requests, want %d", n, tc.apiCalls)
			}
			if n := f.count("GET manifest"); n != tc.tagGETs {
				t.Errorf("%d manifest GETs (the referrers tag), want %d", n, tc.tagGETs)
			}
		})
	}
}

func equalReferrers(a, b []Referrer) bool {
	return slices.EqualFunc(a, b, func(x, y Referrer) bool {
		return x.Descriptor == y.Descriptor && x.ArtifactType == y.ArtifactType && fmt.Sprint(x.Annotations) == fmt.Sprint(y.Annotations)
	}) && (a == nil) == (b == nil)
}

func TestLayoutReferrers(t *testing.T) {
	f := newLayoutFixture(t)
	subject := fmt.Sprintf(`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d}`, f.manD, len(f.man))
	empty := `"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}`
	sig := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sig",` +
		empty + `,"layers":[],` + subject + `,"annotations":{"org.example.signer":"me"}}`)
	sbom := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/spdx+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],` + subject + `}`)
	other := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` + empty +
		`,"layers":[],"subject":{"mediaType":"x","digest":"` + digest.Of([]byte("else")).String() + `","size":1}}`)
	sigD, sbomD, otherD := f.writeBlob(t, sig), f.writeBlob(t, sbom), f.writeBlob(t, other)
	missing := digest.Of([]byte("not written"))

	idx, err := os.ReadFile(filepath.Join(f.dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(idx, &v); err != nil {
		t.Fatal(err)
	}
	ms := v["manifests"].([]any)
	for _, d := range []struct {
		d    digest.Digest
		size int
	}{{sigD, len(sig)}, {otherD, len(other)}, {missing, 10}, {sbomD, len(sbom)}, {sigD, len(sig)}} {
		ms = append(ms, map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d.d.String(), "size": d.size})
	}
	v["manifests"] = ms
	b, _ := json.Marshal(v)
	write(t, f.dir, "index.json", string(b))

	l, err := OpenLayout(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Referrers(context.Background(), f.manD)
	if err != nil {
		t.Fatal(err)
	}
	mt := "application/vnd.oci.image.manifest.v1+json"
	want := []Referrer{
		{Descriptor: Descriptor{Digest: sigD, Size: int64(len(sig)), MediaType: mt}, ArtifactType: "application/vnd.example.sig", Annotations: map[string]string{"org.example.signer": "me"}},
		{Descriptor: Descriptor{Digest: sbomD, Size: int64(len(sbom)), MediaType: mt}, ArtifactType: "application/spdx+json"},
	}
	if !equalReferrers(got, want) {
		t.Errorf("Referrers = %+v\nwant %+v", got, want)
	}
	none, err := l.Referrers(context.Background(), sigD)
	if err != nil || len(none) != 0 || none == nil {
		t.Errorf("Referrers of a manifest nothing refers to = %v, %v; want an empty list", none, err)
	}
}

func TestMirroredReferrers(t *testing.T) {
	up, mir := newFixture(t), newFixture(t)
	r1, r2 := digest.Of([]byte("r1")), digest.Of([]byte("r2"))
	var upCalls, mirCalls atomic.Int64
	serve := func(d digest.Digest) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", mediaTypeIndex)
			_, _ = w.Write(indexOf(refDesc(d, "t", nil)))
		}
	}
	up.setHook(referrersAPI(&upCalls, serve(r1), "", nil))
	mir.setHook(referrersAPI(&mirCalls, serve(r2), "", nil))
	for _, tc := range []struct {
		name       string
		mirCaps    Capability
		want       digest.Digest
		up, mirror int64
	}{
		{"pull-only mirror: upstream answers", CapPull, r1, 1, 0},
		{"resolving mirror answers", CapPull | CapResolve, r2, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			upCalls.Store(0)
			mirCalls.Store(0)
			m, err := NewMirroredAt(up.repo, []Endpoint{
				{Host: mir.host(), Capabilities: tc.mirCaps},
				{Host: up.host(), Server: true},
			}, mirrorOpts(t))
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Referrers(context.Background(), up.manDigest)
			if err != nil || len(got) != 1 || got[0].Digest != tc.want {
				t.Fatalf("Referrers = %+v, %v; want %s", got, err, tc.want)
			}
			if upCalls.Load() != tc.up || mirCalls.Load() != tc.mirror {
				t.Errorf("referrers requests upstream, mirror = %d, %d; want %d, %d", upCalls.Load(), mirCalls.Load(), tc.up, tc.mirror)
			}
		})
	}
}

// A registry that has said it has no referrers API is not asked again.
func TestReferrersAPIMissingIsRemembered(t *testing.T) {
	f := newFixture(t)
	var calls atomic.Int64
	f.setHook(referrersAPI(&calls, func(w http.ResponseWriter, r *http.Request) { f.reg.ServeHTTP(w, r) }, "none", nil))
	c := f.client(t)
	if c.ReferrersByTagOnly() {
		t.Fatal("ReferrersByTagOnly before any answer")
	}
	for i := 0; i < 3; i++ {
		if _, err := c.Referrers(context.Background(), f.manDigest); err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 1 || !c.ReferrersByTagOnly() {
		t.Errorf("%d referrers API requests for 3 lists, ReferrersByTagOnly %v; want 1 and true", n, c.ReferrersByTagOnly())
	}
}
