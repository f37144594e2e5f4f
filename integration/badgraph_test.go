package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestBadGraph: an index nested 64 levels deep is browsed one level at a
// time, and a registry that answers a manifest request by digest with
// other bytes gives EIO for that manifest, never its tree; the daemon
// stays up and honest manifests keep working.
func TestBadInputGraph(t *testing.T) {
	row := reliabilityRow(t, 81, "bad input: deep index nesting, manifest bytes that do not match the digest asked for")
	needFUSE(t)
	var swap atomic.Value // "sha256:<asked>" -> body served instead
	swap.Store(map[string][]byte{})
	host := startGGCR(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for asked, body := range swap.Load().(map[string][]byte) {
				if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/manifests/"+asked) {
					w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
					w.Write(body)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	repoName := host + "/bad/graph"
	repo, err := name.NewRepository(repoName)
	if err != nil {
		t.Fatal(err)
	}
	br := badRepo{t, repo}
	data := randomBytes(t, 64<<10)
	pushFile(t, repoName, "leaf", "leaf.bin", data)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	leafDesc, err := remote.Head(repo.Tag("leaf"), remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}

	// The leaf manifest, then 64 indexes each pointing at the one below.
	const depth = 64
	chain := []string{leafDesc.Digest.Hex}
	childType := "application/vnd.oci.image.manifest.v1+json"
	childSize := leafDesc.Size
	for i := 0; i < depth; i++ {
		body := mustJSON(t, map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.index.v1+json",
			"manifests":     []any{map[string]any{"mediaType": childType, "digest": "sha256:" + chain[len(chain)-1], "size": childSize}},
		})
		chain = append(chain, br.put(fmt.Sprintf("n%d", i), body, "application/vnd.oci.image.index.v1+json"))
		childType, childSize = "application/vnd.oci.image.index.v1+json", int64(len(body))
	}

	// A manifest whose GET by digest answers with the leaf's bytes.
	other := mustJSON(t, ociManifest(layer("application/vnd.oci.image.layer.v1.tar", "sha256:"+sha256Hex(data), int64(len(data)), "other.bin")))
	otherHex := br.put("other", other, "application/vnd.oci.image.manifest.v1+json")
	swap.Store(map[string][]byte{"sha256:" + otherHex: mustJSON(t, map[string]any{"schemaVersion": 2, "layers": []any{}})})

	m := mount(t, repoName)

	// Walk from the top of the chain down, one readlink at a time.
	dir := m.path("manifests/sha256:" + chain[len(chain)-1])
	for level := len(chain) - 1; level > 0; level-- {
		link := filepath.Join(dir, "sha256:"+chain[level-1])
		target, err := os.Readlink(link)
		if err != nil {
			t.Fatalf("level %d: readlink %s: %v", level, link, err)
		}
		if want := "../sha256:" + chain[level-1]; target != want {
			t.Fatalf("level %d: link -> %s, want %s", level, target, want)
		}
		dir = m.path("manifests/sha256:" + chain[level-1])
		if _, err := os.ReadDir(dir); err != nil {
			t.Fatalf("level %d: list %s: %v", level-1, dir, err)
		}
	}
	if got := mustRead(t, filepath.Join(dir, "leaf.bin")); string(got) != string(data) {
		t.Fatalf("leaf.bin at the bottom of %d levels: wrong bytes", depth)
	}
	// Following the whole chain through one path hits the kernel's symlink limit, not a hang.
	deep := m.path("manifests/sha256:" + chain[len(chain)-1])
	for level := len(chain) - 1; level > 0; level-- {
		deep = filepath.Join(deep, "sha256:"+chain[level-1])
	}
	_, statErr := os.Stat(deep)
	if !errors.Is(statErr, syscall.ELOOP) && !errors.Is(statErr, syscall.ENAMETOOLONG) {
		t.Errorf("stat through %d nested links: %v, want ELOOP or ENAMETOOLONG", depth, statErr)
	}

	// The swapped manifest: EIO, and no tree.
	_, swapErr := os.ReadDir(m.path("manifests/sha256:" + otherHex))
	if !errors.Is(swapErr, syscall.EIO) {
		t.Errorf("manifest served with other bytes: %v, want EIO", swapErr)
	}
	// The daemon's stderr reaches the test through a pipe: give it a moment.
	if !waitFor(2*time.Second, func() bool { return strings.Contains(m.stderr(), otherHex) }) {
		t.Errorf("daemon log does not name the manifest that failed:\n%s", m.stderr())
	}
	// Still up; an honest manifest still reads.
	if got := mustRead(t, m.path("tags/leaf/leaf.bin")); string(got) != string(data) {
		t.Error("tags/leaf/leaf.bin wrong after the bad manifest")
	}
	if !daemonAlive(m) {
		t.Fatal("daemon died")
	}
	row.reader = fmt.Sprintf("index chain %d levels deep: every level lists and links to the next, the file at the bottom reads right; one path through all links: %s; manifest answered with other bytes: %s on its directory; honest tag still reads", depth, errnoName(statErr), errnoName(swapErr))
	row.daemon = "builds one level per lookup (no recursion); checks every manifest fetched by digest against it and refuses the mismatch, naming the digest in the log; stays up"
	row.figures = fmt.Sprintf("%d indexes, 1 swapped manifest", depth)
}
