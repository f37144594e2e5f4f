package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashfs/hashfs/internal/seed"
)

// TestWholeRegistry: `hashfs mount <registry>` shows the registry's
// namespace at the root: listed from its _catalog where it has one, and
// looked up by path where it has not (like ghcr.io).
func TestWholeRegistry(t *testing.T) {
	needFUSE(t)
	vostok := seed.Vostok()
	other := randomBytes(t, 1<<20+9)
	for _, tc := range []struct {
		name    string
		catalog bool
	}{{"with catalog", true}, {"without catalog", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var host string
			if tc.catalog {
				host, _ = startDistribution(t)
			} else {
				host = startGGCR(t, noCatalog)
			}
			pushFile(t, host+"/lab/raw", "v1", "vostok.icecore.co2", vostok)
			pushFile(t, host+"/lab/team/derived", "v2", "other.bin", other)
			m := mount(t, host)

			if tc.catalog {
				wantEntries(t, m.dir, "sha256", "lab")
				wantEntries(t, m.path("lab"), "raw", "team")
				wantEntries(t, m.path("lab/team/derived"), "sha256", "tags", "manifests")
				// The catalog's repositories answer the root sha256/ from the start.
				if got := mustRead(t, m.path("sha256/"+sha256Hex(other))); !bytes.Equal(got, other) {
					t.Error("root sha256/ of a whole registry: wrong bytes")
				}
			}
			for p, want := range map[string][]byte{
				"lab/raw/tags/v1/vostok.icecore.co2": vostok,
				"lab/team/derived/tags/v2/other.bin": other,
			} {
				if got := mustRead(t, m.path(p)); !bytes.Equal(got, want) {
					t.Errorf("%s: wrong bytes", p)
				}
			}
			// Once visited, a repository answers the root sha256/.
			if got := mustRead(t, m.path("sha256/"+sha256Hex(vostok))); !bytes.Equal(got, vostok) {
				t.Error("root sha256/ after a visit: wrong bytes")
			}
			// Without a catalog any other name may be a namespace (as on
			// ghcr.io), but a repository's own directories need a repository.
			gone := []string{"lab/nope/tags", "Upper/case"}
			if tc.catalog {
				gone = append(gone, "lab/raw/nope", "nothing")
			}
			if !tc.catalog {
				// Repositories visited are listed; a name merely looked up is not.
				os.Stat(m.path("typo"))
				if names := ls(t, m.dir); !slices.Equal(names, []string{"lab", "sha256"}) {
					t.Errorf("ls of a registry without a catalog = %q, want [lab sha256]", names)
				}
			}
			for _, p := range gone {
				if _, err := os.Stat(m.path(p)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("stat %s: %v, want ENOENT", p, err)
				}
			}
		})
	}
}

// noCatalog makes a registry answer /v2/_catalog with 404, as ghcr.io does
// for anonymous users.
func noCatalog(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/_catalog") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// TestHostsTomlMirror: a mirror listed in containerd's hosts.toml for a
// registry (here a CNCF registry in pull-through mode) is asked first and
// its traffic is counted; the registry itself serves no blob bytes.
func TestHostsTomlMirror(t *testing.T) {
	needFUSE(t)
	upstream, _ := startDistribution(t)
	mirror, _ := startDistributionWith(t, fmt.Sprintf("proxy:\n  remoteurl: http://%s\n", upstream))
	data := randomBytes(t, 4<<20+1)
	pushFile(t, upstream+"/lab/raw", "v1", "data.bin", data)

	hostsDir := t.TempDir()
	toml := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", upstream, mirror)
	if err := os.MkdirAll(filepath.Join(hostsDir, upstream), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostsDir, upstream, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	m := mount(t, upstream+"/lab/raw", "--hosts-dir", hostsDir)
	if got := mustRead(t, m.path("tags/v1/data.bin")); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes through the mirror")
	}
	out, errs, err := hashfsCmd(t, "status", "--json", m.dir)
	if err != nil {
		t.Fatalf("status: %v %s", err, errs)
	}
	var st struct {
		Sources []struct {
			Name  string `json:"name"`
			Stats struct {
				Requests  int64 `json:"Requests"`
				BlobBytes int64 `json:"BlobBytes"`
			} `json:"stats"`
		} `json:"sources"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	var mirrorBytes, upstreamBytes int64 = -1, -1
	for _, s := range st.Sources {
		switch {
		case strings.Contains(s.Name, mirror):
			mirrorBytes = s.Stats.BlobBytes
		case strings.Contains(s.Name, upstream):
			upstreamBytes = s.Stats.BlobBytes
		}
	}
	if mirrorBytes < int64(len(data)) || upstreamBytes != 0 {
		t.Errorf("blob bytes: mirror %d, upstream %d; want the mirror to serve all %d and upstream none\n%s",
			mirrorBytes, upstreamBytes, len(data), out)
	}
}
