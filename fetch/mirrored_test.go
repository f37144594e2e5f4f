package fetch

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// host is a fixture's registry host, such as "127.0.0.1:41234".
func (f *fixture) host() string { return strings.TrimSuffix(f.repo, "/test/repo") }

// recordingKeychain answers anonymously and records what it was asked for.
type recordingKeychain struct {
	mu    sync.Mutex
	asked []string
}

func (k *recordingKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.asked = append(k.asked, r.String())
	return authn.Anonymous, nil
}

func mirrorOpts(t *testing.T) Options {
	return Options{
		Keychain:  staticKeychain{auth: authn.Anonymous},
		RetryBase: time.Millisecond,
		Retries:   1,
		Logger:    testLogger(t),
	}
}

// A Client with an Endpoint talks to the mirror only, under the same
// repository name, telling it the registry in "ns", with the mirror's
// credentials.
func TestClientAtEndpoint(t *testing.T) {
	up, mir := newFixture(t), newFixture(t)
	for _, tc := range []struct {
		name     string
		path     string // endpoint API root
		strip    string // what the mirror's front strips from paths
		wantPath string
		noV2     bool // the mirror has no /v2/ to ping
	}{
		{name: "plain", wantPath: "/v2/test/repo/blobs/"},
		{name: "path prefix", path: "/prefix/v2", strip: "/prefix", wantPath: "/prefix/v2/test/repo/blobs/"},
		{name: "override path", path: "/odd/root", strip: "/odd/root", wantPath: "/odd/root/test/repo/blobs/"},
		{name: "override path without /v2/", path: "/odd/root", strip: "/odd/root", wantPath: "/odd/root/test/repo/blobs/", noV2: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var paths, nss []string
			mir.setHook(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				mu.Lock()
				paths = append(paths, r.URL.Path)
				nss = append(nss, r.URL.Query().Get("ns"))
				mu.Unlock()
				if tc.noV2 && r.URL.Path == "/v2/" {
					w.WriteHeader(http.StatusNotFound)
					return
				}
				if rest, ok := strings.CutPrefix(r.URL.Path, tc.strip+"/test/"); ok && tc.strip != "" {
					r.URL.Path = "/v2/test/" + rest
				} else {
					r.URL.Path = strings.TrimPrefix(r.URL.Path, tc.strip)
				}
				next.ServeHTTP(w, r)
			})
			up.resetCounts()
			mir.resetCounts()
			kc := &recordingKeychain{}
			o := mirrorOpts(t)
			o.Keychain = kc
			o.Endpoint = Endpoint{Host: mir.host(), Path: tc.path, Capabilities: CapPull}
			c, err := New(up.repo, o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.FetchRange(context.Background(), up.blobDigest, 10, 100)
			if err != nil || !bytes.Equal(got, up.blob[10:110]) {
				t.Fatalf("FetchRange = %d bytes, %v", len(got), err)
			}
			if n := up.count("GET blob") + up.count("GET ping"); n != 0 {
				t.Errorf("upstream saw %d requests", n)
			}
			if n := mir.count("GET blob"); n != 1 {
				t.Errorf("mirror blob GETs = %d, want 1", n)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.ContainsFunc(paths, func(p string) bool { return strings.HasPrefix(p, tc.wantPath) }) {
				t.Errorf("mirror paths %v, want one under %s", paths, tc.wantPath)
			}
			if nss[len(nss)-1] != up.host() {
				t.Errorf("ns = %q, want %q", nss[len(nss)-1], up.host())
			}
			if !slices.Equal(kc.asked, []string{mir.host() + "/test/repo"}) {
				t.Errorf("credentials asked for %v, want the mirror's", kc.asked)
			}
			wantEP := "http://" + mir.host() + cmpOr(tc.path, "/v2")
			if c.Name() != up.Repository()+" via "+wantEP || c.Repository() != up.Repository() {
				t.Errorf("Name, Repository = %q, %q", c.Name(), c.Repository())
			}
		})
	}
}

// Repository of a fixture as a Client names it.
func (f *fixture) Repository() string { return f.repo }

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestMirroredBlobs(t *testing.T) {
	up, mir := newFixture(t), newFixture(t)
	missing := failFirst(1<<30, "blob", status(404))
	down := status(503)
	for _, tc := range []struct {
		name            string
		mirHook, upHook hook
		want            error
		mirGets, upGets int // blob GETs over two reads
		mirFirst        bool
	}{
		{name: "mirror serves", mirGets: 2, upGets: 0},
		{name: "mirror lacks it: upstream, then upstream first", mirHook: missing, mirGets: 1, upGets: 2},
		{name: "mirror down", mirHook: down, mirGets: 0, upGets: 2},
		{name: "upstream down, mirror serves", upHook: down, mirGets: 2, upGets: 0},
		{name: "nobody has it", mirHook: missing, upHook: missing, want: hfserr.ErrNotFound, mirGets: 2, upGets: 2},
		{name: "mirror lacks it, upstream down", mirHook: missing, upHook: down, want: hfserr.ErrUnavailable, mirGets: 2, upGets: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up.setHook(tc.upHook)
			mir.setHook(tc.mirHook)
			up.resetCounts()
			mir.resetCounts()
			m, err := NewMirroredAt(up.repo, []Endpoint{
				{Scheme: "http", Host: mir.host(), Capabilities: CapPull},
				{Host: up.host(), Server: true},
			}, mirrorOpts(t))
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				got, err := m.FetchRange(context.Background(), up.blobDigest, 0, 1000)
				if tc.want != nil {
					if !errors.Is(err, tc.want) {
						t.Fatalf("err = %v, want %v", err, tc.want)
					}
					continue
				}
				if err != nil || !bytes.Equal(got, up.blob[:1000]) {
					t.Fatalf("FetchRange = %d bytes, %v", len(got), err)
				}
			}
			if g, u := mir.count("GET blob"), up.count("GET blob"); g != tc.mirGets || u != tc.upGets {
				t.Errorf("blob GETs at mirror, upstream = %d, %d; want %d, %d", g, u, tc.mirGets, tc.upGets)
			}
			eps := m.Endpoints()
			if len(eps) != 2 || eps[0].Name != "http://"+mir.host()+"/v2" || eps[1].Name != "http://"+up.host()+"/v2" {
				t.Fatalf("Endpoints = %+v", eps)
			}
			if tc.want == nil {
				var wantBytes [2]int64
				wantBytes[0], wantBytes[1] = int64(tc.mirGets)*1000, int64(tc.upGets)*1000
				if tc.mirHook != nil {
					wantBytes[0] = 0
				}
				if eps[0].Stats.BlobBytes != wantBytes[0] || eps[1].Stats.BlobBytes != wantBytes[1] {
					t.Errorf("BlobBytes = %d, %d; want %d, %d", eps[0].Stats.BlobBytes, eps[1].Stats.BlobBytes, wantBytes[0], wantBytes[1])
				}
			}
			if tc.want == nil {
				if size, err := m.StatBlob(context.Background(), up.blobDigest); err != nil || size != int64(len(up.blob)) {
					t.Errorf("StatBlob = %d, %v", size, err)
				}
			}
		})
	}
}

func TestMirroredManifestsAndTags(t *testing.T) {
	up, mir := newFixture(t), newFixture(t)
	// The mirror holds a copy of the upstream image under another tag.
	mirRepo, err := name.NewRepository(mir.repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mirRepo.Tag("copy"), up.img); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	newM := func(t *testing.T, mirCaps Capability) *Mirrored {
		t.Helper()
		up.resetCounts()
		mir.resetCounts()
		m, err := NewMirroredAt(up.repo, []Endpoint{
			{Host: mir.host(), Capabilities: mirCaps},
			{Host: up.host(), Server: true},
		}, mirrorOpts(t))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	t.Run("pull-only mirror never resolves", func(t *testing.T) {
		m := newM(t, CapPull)
		tags, err := m.Tags(ctx)
		if err != nil || !slices.Equal(tags, []string{"latest"}) {
			t.Fatalf("Tags = %v, %v", tags, err)
		}
		doc, err := m.Manifest(ctx, "latest")
		if err != nil || doc.Digest != up.manDigest {
			t.Fatalf("Manifest(latest) = %s, %v", doc.Digest, err)
		}
		desc, err := m.StatManifest(ctx, "latest")
		if err != nil || desc.Digest != up.manDigest {
			t.Fatalf("StatManifest(latest) = %+v, %v", desc, err)
		}
		if n := mir.count("GET tags") + mir.count("GET manifest") + mir.count("HEAD manifest"); n != 0 {
			t.Errorf("mirror asked %d times to resolve", n)
		}
	})
	t.Run("manifests by digest from the mirror", func(t *testing.T) {
		m := newM(t, CapPull)
		doc, err := m.Manifest(ctx, up.manDigest.String())
		if err != nil || !bytes.Equal(doc.Body, up.manBody) {
			t.Fatalf("Manifest(digest) = %v", err)
		}
		if mir.count("GET manifest") != 1 || up.count("GET manifest") != 0 {
			t.Errorf("manifest GETs at mirror, upstream = %d, %d", mir.count("GET manifest"), up.count("GET manifest"))
		}
		// One the mirror lacks falls through.
		doc, err = m.Manifest(ctx, mir.manDigest.String())
		if err != nil || doc.Digest != mir.manDigest {
			t.Fatalf("Manifest(mirror-only digest) = %v", err)
		}
	})
	t.Run("resolving mirror", func(t *testing.T) {
		m := newM(t, CapPull|CapResolve)
		tags, err := m.Tags(ctx)
		if err != nil || !slices.Equal(tags, []string{"copy", "latest"}) {
			t.Fatalf("Tags = %v, %v; want the mirror's", tags, err)
		}
		if up.count("GET tags") != 0 {
			t.Error("upstream asked for tags")
		}
		if err := m.Ping(ctx); err != nil || up.count("GET ping") != 0 {
			t.Errorf("Ping = %v, upstream pings %d", err, up.count("GET ping"))
		}
	})
	t.Run("no resolve endpoint", func(t *testing.T) {
		c, err := New(up.repo, Options{Endpoint: Endpoint{Host: mir.host(), Capabilities: CapPull}, Keychain: staticKeychain{auth: authn.Anonymous}})
		if err != nil {
			t.Fatal(err)
		}
		m := NewMirrored(c)
		if _, err := m.Tags(ctx); !errors.Is(err, hfserr.ErrNotFound) {
			t.Errorf("Tags = %v, want ErrNotFound", err)
		}
		if _, err := m.Manifest(ctx, "latest"); !errors.Is(err, hfserr.ErrNotFound) {
			t.Errorf("Manifest(latest) = %v, want ErrNotFound", err)
		}
	})
}

// hosts.toml to traffic: the mirror it names serves the blob, and the
// upstream is not asked.
func TestNewFromHosts(t *testing.T) {
	up, mir := newFixture(t), newFixture(t)
	dir := t.TempDir()
	hostDir := filepath.Join(dir, portDirectory(up.host()))
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	toml := `[host."http://` + mir.host() + `"]` + "\n  capabilities = [\"pull\"]\n"
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := NewFromHosts(up.repo, dir, mirrorOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.FetchRange(context.Background(), up.blobDigest, 0, 4096)
	if err != nil || !bytes.Equal(got, up.blob[:4096]) {
		t.Fatalf("FetchRange = %d bytes, %v", len(got), err)
	}
	eps := m.Endpoints()
	if len(eps) != 2 || eps[0].Stats.BlobBytes != 4096 || eps[0].Stats.Requests == 0 || eps[1].Stats.Requests != 0 {
		t.Errorf("Endpoints = %+v", eps)
	}
	if s := m.Stats(); s.BlobBytes != 4096 {
		t.Errorf("Stats = %+v", s)
	}
	if m.Name() != up.repo {
		t.Errorf("Name = %q", m.Name())
	}
	// A Set takes it like any source.
	s := NewSet(nil, m)
	if _, err := s.StatBlob(context.Background(), up.blobDigest); err != nil {
		t.Fatal(err)
	}
	if up.count("HEAD blob") != 0 {
		t.Error("upstream asked through the Set")
	}
}
