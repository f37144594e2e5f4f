package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hashfs/hashfs/internal/seed"
)

// writeLayout writes an OCI image layout at dir holding one image whose
// single layer is data titled title, tagged tag (ref.name annotation).
func writeLayout(t *testing.T, dir, tag, title string, data []byte) {
	t.Helper()
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:       static.NewLayer(data, types.OCILayer),
		Annotations: map[string]string{"org.opencontainers.image.title": title},
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
}

// countingFiles serves fixed files over plain HTTP with Range support
// (http.ServeContent), counting the requests for each path.
type countingFiles struct {
	files map[string][]byte
	hits  map[string]*atomic.Int64
}

func newCountingFiles(t *testing.T, files map[string][]byte) (*countingFiles, string) {
	t.Helper()
	c := &countingFiles{files: files, hits: map[string]*atomic.Int64{}}
	for p := range files {
		c.hits[p] = &atomic.Int64{}
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, srv.URL
}

func (c *countingFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, ok := c.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	c.hits[r.URL.Path].Add(1)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

// readErrno reads path and returns its bytes and the errno of a failure.
func readErrno(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return b, errno
	}
	return b, err
}

func ls(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("ls %s: %v", dir, err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func wantEntries(t *testing.T, dir string, want ...string) {
	t.Helper()
	got := ls(t, dir)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("ls %s = %q, want it to include %q", dir, got, w)
		}
	}
}

// TestManySources: two real CNCF registries, the second a pull-through
// cache (proxy.remoteurl) of the first, together with a source that is
// down, one that serves corrupted bytes, a local OCI layout and descriptor
// URLs on a plain HTTP server, behind one mount. The root sha256/ finds a
// digest wherever it is; every repository has its subtree; bad sources are
// skipped and never give wrong bytes.
func TestManySources(t *testing.T) {
	needFUSE(t)
	// Distribution refuses descriptor URLs unless configured to allow them.
	upstream, _ := startDistributionWith(t, "validation:\n  manifests:\n    urls:\n      allow:\n        - '^http://127\\.0\\.0\\.1:'\n")
	pullThrough, ptStorage := startDistributionWith(t, fmt.Sprintf("proxy:\n  remoteurl: http://%s\n", upstream))

	vostok := seed.Vostok()
	vHex := sha256Hex(vostok)
	derived := randomBytes(t, 3<<20+17)
	dHex := sha256Hex(derived)
	pushFile(t, upstream+"/lab/raw", "v1", "vostok.icecore.co2", vostok)
	pushFile(t, upstream+"/lab/derived", "v1", "derived.bin", derived)
	// shared is in a source that corrupts it and in lab/derived.
	shared := randomBytes(t, 1<<20+77)
	pushFile(t, upstream+"/lab/derived", "v2", "shared.bin", shared)
	corrupt := startGGCR(t, flipBlobs)
	pushFile(t, corrupt+"/lab/copy", "v1", "shared.bin", shared)
	down := freeAddr(t) // nothing listens there

	onDisk := randomBytes(t, 1<<20+5)
	layoutDir := filepath.Join(t.TempDir(), "refs")
	writeLayout(t, layoutDir, "v1", "ondisk.bin", onDisk)

	// A foreign layer: the registry holds only the manifest; the bytes
	// are at the descriptor's URLs, one of which serves other bytes.
	foreign := randomBytes(t, 2<<20+3)
	lying := randomBytes(t, 1<<20)
	files, base := newCountingFiles(t, map[string][]byte{
		"/foreign.bin": foreign,
		"/lying.bin":   bytes.Repeat([]byte{'x'}, len(lying)),
	})
	fr := badRepo{t: t, repo: mustRepo(t, upstream+"/lab/foreign")}
	fr.blob([]byte("{}"))
	nd := "application/vnd.oci.image.layer.nondistributable.v1.tar"
	l1 := layer(nd, "sha256:"+sha256Hex(foreign), int64(len(foreign)), "foreign.bin")
	l1["urls"] = []string{base + "/foreign.bin"}
	l2 := layer(nd, "sha256:"+sha256Hex(lying), int64(len(lying)), "lying.bin")
	l2["urls"] = []string{base + "/lying.bin"}
	fr.put("v1", mustJSON(t, ociManifest(l1, l2)), "application/vnd.oci.image.manifest.v1+json")

	dir, cacheDir := t.TempDir(), t.TempDir()
	m := startDaemon(t, dir, cacheDir, "mount", "--cache-dir", cacheDir,
		corrupt+"/lab/copy", down+"/lab/gone", pullThrough+"/lab/raw", upstream+"/lab/derived",
		upstream+"/lab/foreign", "oci:"+layoutDir, dir)
	if !strings.Contains(m.stderr(), "source not answering") {
		t.Errorf("the down source was not reported at start:\n%s", m.stderr())
	}

	t.Run("layout", func(t *testing.T) {
		wantEntries(t, dir, "sha256", "oci", corrupt, down, upstream, pullThrough)
		wantEntries(t, m.path(upstream+"/lab"), "derived", "foreign")
		wantEntries(t, m.path(pullThrough+"/lab/raw"), "sha256", "tags", "manifests")
	})
	t.Run("only in one repository, through the root", func(t *testing.T) {
		for _, p := range []string{"sha256/" + dHex, "sha256/" + dHex[:2] + "/" + dHex[2:4] + "/" + dHex} {
			if got := mustRead(t, m.path(p)); !bytes.Equal(got, derived) {
				t.Errorf("%s: %d bytes, not the blob pushed only to lab/derived", p, len(got))
			}
		}
		if _, err := os.Stat(m.path(pullThrough + "/lab/raw/sha256/" + dHex)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a repository's own sha256/ shows a digest it does not have: %v", err)
		}
	})
	t.Run("pull-through registry", func(t *testing.T) {
		p := m.path(pullThrough + "/lab/raw/tags/v1/vostok.icecore.co2")
		if got := mustRead(t, p); !bytes.Equal(got, vostok) {
			t.Fatalf("%s: wrong bytes", p)
		}
		// The pull-through cache fetched the blob from upstream and keeps
		// it (committed once the response is written: allow it a moment).
		stored := filepath.Join(ptStorage, "docker/registry/v2/blobs/sha256", vHex[:2], vHex, "data")
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if _, err = os.Stat(stored); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("the pull-through registry did not store the blob it served: %v", err)
		}
	})
	t.Run("a corrupting source is skipped", func(t *testing.T) {
		// Its own sha256/ finds the blob there, so the Set asks it first;
		// the bytes fail verification and another source serves the read.
		p := m.path(corrupt + "/lab/copy/sha256/" + sha256Hex(shared))
		got, err := readErrno(p)
		if err != nil || !bytes.Equal(got, shared) {
			t.Errorf("%s: %d bytes, %v; want the true bytes from another source", p, len(got), err)
		}
		if !strings.Contains(m.stderr(), "trying another source") {
			t.Errorf("no log line says the corrupt copy was rejected:\n%s", m.stderr())
		}
	})
	t.Run("layout only, through the root", func(t *testing.T) {
		h := sha256Hex(onDisk)
		if got := mustRead(t, m.path("sha256/"+h)); !bytes.Equal(got, onDisk) {
			t.Error("a blob only in the OCI layout does not read through the root sha256/")
		}
		lp := m.path("oci" + strings.ToLower(layoutDir) + "/tags/v1/ondisk.bin")
		if got := mustRead(t, lp); !bytes.Equal(got, onDisk) {
			t.Errorf("%s: wrong bytes", lp)
		}
	})
	t.Run("descriptor urls", func(t *testing.T) {
		p := m.path(upstream + "/lab/foreign/tags/v1/foreign.bin")
		if got := mustRead(t, p); !bytes.Equal(got, foreign) {
			t.Fatalf("%s: wrong bytes", p)
		}
		if files.hits["/foreign.bin"].Load() == 0 {
			t.Error("the descriptor URL was never requested")
		}
		if got := mustRead(t, m.path("sha256/"+sha256Hex(foreign))); !bytes.Equal(got, foreign) {
			t.Error("the foreign layer does not read through the root sha256/")
		}
		bad := m.path(upstream + "/lab/foreign/tags/v1/lying.bin")
		got, err := readErrno(bad)
		if err != syscall.EIO || len(got) != 0 {
			t.Errorf("%s (URL serves other bytes): %d bytes, %v; want EIO and nothing", bad, len(got), err)
		}
		if files.hits["/lying.bin"].Load() == 0 {
			t.Error("the lying URL was never requested")
		}
	})
	t.Run("descriptor urls off", func(t *testing.T) {
		before := files.hits["/foreign.bin"].Load()
		m2 := mount(t, upstream+"/lab/foreign", "--descriptor-urls=false")
		got, err := readErrno(m2.path("tags/v1/foreign.bin"))
		if err == nil || len(got) != 0 {
			t.Errorf("with --descriptor-urls=false the foreign layer read %d bytes, %v; want an error", len(got), err)
		}
		if n := files.hits["/foreign.bin"].Load() - before; n != 0 {
			t.Errorf("with --descriptor-urls=false the URL was requested %d times", n)
		}
	})
	t.Run("not anywhere", func(t *testing.T) {
		_, err := os.Stat(m.path("sha256/" + strings.Repeat("ab", 32)))
		// With one source down nobody can say "not found" for sure.
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.EIO) {
			t.Errorf("stat of a digest no source has: %v, want ENOENT or EIO", err)
		}
		if _, err := os.Stat(m.path("..hidden")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a name no source can have: %v", err)
		}
	})
	t.Run("resolve and status", func(t *testing.T) {
		out, errs, err := hashfsCmd(t, "resolve", "--mount", dir, "hash://sha256/"+dHex)
		if want := filepath.Join(m.dir, "sha256", dHex); err != nil || strings.TrimSpace(out) != want {
			t.Errorf("resolve = %q, %v (%s), want %s", out, err, errs, want)
		}
		out, errs, err = hashfsCmd(t, "status", "--json", dir)
		if err != nil {
			t.Fatalf("status: %v %s", err, errs)
		}
		var st struct {
			Sources []struct {
				Name string `json:"name"`
			} `json:"sources"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Sources) < 5 {
			t.Errorf("status sources = %+v, %v; want one per source\n%s", st.Sources, err, out)
		}
	})
}

func mustRepo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSourcesOneDown: of two docker-registry sources, one stops (its
// proxy refuses connections). Looking up a digest no source has costs the
// stopped one's retry budget once; the next lookups do not ask it at all
// (hashfs status counts its requests and the operations it skipped), and
// a tag past --tag-ttl falls back to the last known answer without asking
// it either.
func TestSourcesOneDown(t *testing.T) {
	needFUSE(t)
	upHost, _ := startDistribution(t)
	downHost, _ := startDistribution(t)
	proxy := newFaultProxy(t, downHost)
	pushFile(t, upHost+"/lab/up", "v1", "up.bin", randomBytes(t, 10<<10))
	onDown := randomBytes(t, 20<<10)
	pushFile(t, downHost+"/lab/down", "v1", "down.bin", onDown)
	downRepo := proxy.addr + "/lab/down"

	dir, cacheDir := t.TempDir(), t.TempDir()
	m := startDaemon(t, dir, cacheDir, "mount", "--cache-dir", cacheDir, "--tag-ttl", "1s", upHost+"/lab/up", downRepo, dir)
	tagLink := m.path(downRepo + "/tags/v1")
	target, err := os.Readlink(tagLink)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, m.path("sha256/"+sha256Hex(onDown))); !bytes.Equal(got, onDown) {
		t.Fatal("wrong bytes from the source before it stopped")
	}
	downStats := func() (requests, skipped int64) {
		t.Helper()
		out, errs, err := hashfsCmd(t, "status", "--json", dir)
		if err != nil {
			t.Fatalf("status: %v %s", err, errs)
		}
		var st struct {
			Sources []struct {
				Name  string `json:"name"`
				Stats struct{ Requests, Skipped int64 }
			} `json:"sources"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v: %s", err, out)
		}
		for _, s := range st.Sources {
			if strings.HasPrefix(s.Name, proxy.addr) {
				return s.Stats.Requests, s.Stats.Skipped
			}
		}
		t.Fatalf("no source %s in status: %s", downRepo, out)
		return 0, 0
	}

	proxy.down()
	absent := m.path("sha256/" + sha256Hex([]byte("no source has this")))
	var requests, skipped []int64
	var took []time.Duration
	for range 5 {
		r0, s0 := downStats()
		start := time.Now()
		withTimeout(t, "stat of an absent digest", func() { _, err = os.Stat(absent) })
		took = append(took, time.Since(start))
		if err == nil {
			t.Fatalf("stat %s: found", absent)
		}
		r1, s1 := downStats()
		requests, skipped = append(requests, r1-r0), append(skipped, s1-s0)
	}
	t.Logf("stat of an absent digest, one source down: took %v, requests to it %v, operations skipped %v", took, requests, skipped)
	if requests[0] == 0 {
		t.Errorf("the first lookup made no request to the stopped source: %v", requests)
	}
	var later, laterSkipped int64
	for i := 1; i < len(requests); i++ {
		later += requests[i]
		laterSkipped += skipped[i]
	}
	// Each later lookup takes milliseconds, so at most a probe or two
	// fall due (the first interval is 1s).
	if later > 2 {
		t.Errorf("lookups 2-5 made %d requests to the stopped source (the first made %d): want next to none", later, requests[0])
	}
	if laterSkipped == 0 {
		t.Errorf("lookups 2-5 skipped no operation at the stopped source: %v", skipped)
	}
	// The mount's totals (status, metrics) count them too.
	out, errs, err := hashfsCmd(t, "status", "--json", dir)
	if err != nil {
		t.Fatalf("status: %v %s", err, errs)
	}
	var total struct {
		Registry struct{ Skipped int64 } `json:"registry"`
	}
	if err := json.Unmarshal([]byte(out), &total); err != nil || total.Registry.Skipped < laterSkipped {
		t.Errorf("status registry total skipped %d (%v), want at least the stopped source's %d", total.Registry.Skipped, err, laterSkipped)
	}

	time.Sleep(1100 * time.Millisecond) // past --tag-ttl
	r0, _ := downStats()
	var got string
	start := time.Now()
	withTimeout(t, "readlink past the tag TTL", func() { got, err = os.Readlink(tagLink) })
	tagTook := time.Since(start)
	if err != nil || got != target {
		t.Errorf("readlink %s with the source stopped: %q, %v; want the last known %q", tagLink, got, err, target)
	}
	r1, _ := downStats()
	t.Logf("readlink of a tag past --tag-ttl, its source down: took %v, %d requests to it", tagTook, r1-r0)
	if r1-r0 > 2 {
		t.Errorf("the tag's refresh made %d requests to the stopped source, want at most a probe", r1-r0)
	}
}
