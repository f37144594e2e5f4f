package fetch

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/hashfs/hashfs/internal/hfserr"
)

const (
	testUser   = "reader"
	testPass   = "s3cret-pa55"
	cdnSecret  = "sig-0123456789"
	basicRealm = `Basic realm="hashfs-test"`
)

// requireBasic rejects requests without the test credentials, as a registry
// using Basic auth does, then hands over to then.
func requireBasic(then hook) hook {
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPass))
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", basicRealm)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if then != nil {
			then(w, r, next)
			return
		}
		next.ServeHTTP(w, r)
	}
}

// cdn is blob storage on a second host. It serves the fixture's blob with
// Range support, fails the test if it ever sees an Authorization header,
// and answers the first expired requests with 403 like an expired signed URL.
type cdn struct {
	srv *httptest.Server

	mu      sync.Mutex
	hits    int
	expired int // how many leading requests get 403
}

func newCDN(t *testing.T, blob []byte) *cdn {
	c := &cdn{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			t.Errorf("CDN received Authorization header %q", a)
		}
		c.mu.Lock()
		c.hits++
		expired := c.hits <= c.expired
		c.mu.Unlock()
		if expired || r.URL.Query().Get("sig") != cdnSecret {
			http.Error(w, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", http.StatusForbidden)
			return
		}
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(blob))
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *cdn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits
}

func TestRedirectToStorage(t *testing.T) {
	f := newFixture(t)
	toCDN := func(c *cdn) hook {
		return requireBasic(func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			if r.Method == http.MethodGet && kind(r) == "blob" {
				http.Redirect(w, r, c.srv.URL+"/storage/blob?sig="+cdnSecret, http.StatusTemporaryRedirect)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	const off, n = 4242, 10_000
	for _, tc := range []struct {
		name        string
		expired     int
		want        error
		registryGET int
		cdnHits     int
	}{
		{name: "follows redirect without leaking credentials", registryGET: 1, cdnHits: 1},
		{name: "expired URL once: re-asks the registry", expired: 1, registryGET: 2, cdnHits: 2},
		{name: "always expired: unavailable, not denied", expired: 100, want: hfserr.ErrUnavailable, registryGET: 5, cdnHits: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCDN(t, f.blob)
			c.expired = tc.expired
			f.setHook(toCDN(c))
			f.resetCounts()
			var logs syncBuffer
			cl := f.client(t, func(o *Options) {
				o.Keychain = staticKeychain{auth: &authn.Basic{Username: testUser, Password: testPass}}
				o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			})
			got, err := cl.FetchRange(context.Background(), f.blobDigest, off, n)
			if tc.want != nil {
				if !errors.Is(err, tc.want) || errors.Is(err, hfserr.ErrDenied) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			} else if err != nil || !bytes.Equal(got, f.blob[off:off+n]) {
				t.Fatalf("FetchRange: %d bytes, %v", len(got), err)
			}
			if g, h := f.count("GET blob"), c.count(); g != tc.registryGET || h != tc.cdnHits {
				t.Errorf("registry blob GETs, CDN hits = %d, %d; want %d, %d", g, h, tc.registryGET, tc.cdnHits)
			}
			text := logs.String()
			if err != nil {
				text += err.Error()
			}
			if !strings.Contains(logs.String(), "redirected_to") {
				t.Errorf("debug log does not mention the redirect:\n%s", logs.String())
			}
			for _, secret := range []string{testPass, base64.StdEncoding.EncodeToString([]byte(testUser + ":" + testPass)), cdnSecret} {
				if strings.Contains(text, secret) {
					t.Errorf("logs or error contain a secret %q:\n%s", secret, text)
				}
			}
		})
	}
}

func TestBasicAuth(t *testing.T) {
	f := newFixture(t)
	f.setHook(requireBasic(nil))
	for _, tc := range []struct {
		name     string
		keychain authn.Keychain
		want     error
	}{
		{name: "right password", keychain: staticKeychain{auth: &authn.Basic{Username: testUser, Password: testPass}}},
		{name: "wrong password", keychain: staticKeychain{auth: &authn.Basic{Username: testUser, Password: "nope"}}, want: hfserr.ErrDenied},
		{name: "anonymous", keychain: staticKeychain{auth: authn.Anonymous}, want: hfserr.ErrDenied},
		{name: "keychain fails", keychain: staticKeychain{err: errors.New("helper crashed")}, want: hfserr.ErrDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.resetCounts()
			c := f.client(t, func(o *Options) { o.Keychain = tc.keychain })
			err := c.Ping(context.Background())
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Ping: %v, want %v", err, tc.want)
			}
			if err == nil {
				if _, err := c.Manifest(context.Background(), "latest"); err != nil {
					t.Fatalf("Manifest after Ping: %v", err)
				}
			}
			if tc.want != nil && f.count("GET tags") > 1 {
				t.Errorf("denial was retried: %d tag list requests", f.count("GET tags"))
			}
		})
	}
}
