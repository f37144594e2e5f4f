package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashfs/hashfs/internal/seed"
)

// tokenGate puts the registry behind the bearer-token flow: /v2/ paths
// need "Authorization: Bearer <token>" and /token hands the token out to
// anyone (as registries do for anonymous pulls).
type tokenGate struct {
	token   string
	repo    string // repository name, for the challenge's scope
	host    atomic.Pointer[string]
	enforce atomic.Bool

	tokenCalls  atomic.Int64 // GETs of /token
	unauth      atomic.Int64 // /v2/ requests answered 401
	authedBlobs atomic.Int64 // blob GETs that carried the token
	badBlobs    atomic.Int64 // blob GETs that carried a wrong Authorization
}

func (g *tokenGate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			g.tokenCalls.Add(1)
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"token": g.token, "expires_in": 300})
			return
		}
		if g.enforce.Load() && strings.HasPrefix(r.URL.Path, "/v2/") {
			auth := r.Header.Get("Authorization")
			isBlob := r.Method == http.MethodGet && blobDigest(r.URL.Path) != ""
			if auth != "Bearer "+g.token {
				if isBlob && auth != "" {
					g.badBlobs.Add(1)
				}
				g.unauth.Add(1)
				w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test",scope="repository:%s:pull"`, *g.host.Load(), g.repo))
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
			if isBlob {
				g.authedBlobs.Add(1)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// TestBearerToken mounts a registry that wants a bearer token from its
// token endpoint, as ghcr.io and Docker Hub do for anonymous pulls.
func TestBearerToken(t *testing.T) {
	needFUSE(t)
	g := &tokenGate{token: "t0k3n-" + sha256Hex([]byte(t.Name()))[:16], repo: "test/auth"}
	host := startGGCR(t, g.wrap)
	g.host.Store(&host)
	repo := host + "/" + g.repo
	pushSeed(t, repo) // before the gate closes
	g.enforce.Store(true)

	// The gate answers as intended.
	resp, err := http.Get("http://" + host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
		t.Fatalf("the gate answers GET /v2/ with %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	g.tokenCalls.Store(0)

	m := mount(t, repo, "--debug")
	got := mustRead(t, m.path("tags/vostok/vostok.icecore.co2"))
	if !bytes.Equal(got, seed.Vostok()) {
		t.Errorf("vostok behind a token: %d bytes with sha256 %s", len(got), sha256Hex(got))
	}
	if got := sha256sum(t, m.path("sha256/"+vostokHex)); got != vostokHex {
		t.Errorf("sha256sum sha256/%s = %s", vostokHex, got)
	}
	if n := g.tokenCalls.Load(); n == 0 {
		t.Errorf("the token endpoint was never called")
	}
	if n := g.authedBlobs.Load(); n == 0 {
		t.Errorf("no blob GET carried the token")
	}
	if n := g.badBlobs.Load(); n != 0 {
		t.Errorf("%d blob GETs carried a wrong Authorization header", n)
	}
	if strings.Contains(m.stderr(), g.token) {
		t.Errorf("the daemon logged the bearer token")
	}
	t.Logf("token calls %d, 401 answers %d, authorized blob GETs %d", g.tokenCalls.Load(), g.unauth.Load(), g.authedBlobs.Load())
}
