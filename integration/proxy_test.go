package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy is a small reverse proxy in front of a registry that can corrupt
// blob bodies and counts what blob GETs carried.
type proxy struct {
	host string       // 127.0.0.1:port of the proxy
	flip atomic.Bool  // XOR the first byte of every blob GET body
	gets atomic.Int64 // blob GET requests
	recv atomic.Int64 // body bytes of blob GETs passed to the client

	mu      sync.Mutex
	perBlob map[string]int64 // body bytes of blob GETs by "sha256:<hex>"
	ranges  []string         // Range headers of blob GETs, in arrival order
}

// newProxy starts a proxy on 127.0.0.1 in front of target (host:port).
func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	u, err := url.Parse("http://" + target)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{perBlob: map[string]int64{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		req := resp.Request
		if req.Method != http.MethodGet {
			return nil
		}
		d := blobDigest(req.URL.Path)
		if d == "" {
			return nil
		}
		p.gets.Add(1)
		p.mu.Lock()
		p.ranges = append(p.ranges, req.Header.Get("Range"))
		p.mu.Unlock()
		resp.Body = &countingBody{ReadCloser: resp.Body, p: p, digest: d, flip: p.flip.Load()}
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	p.host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// blobDigest returns "sha256:<hex>" for a /v2/<name>/blobs/sha256:<hex> path.
func blobDigest(path string) string {
	_, d, ok := strings.Cut(path, "/blobs/sha256:")
	if !ok || strings.Contains(d, "/") {
		return ""
	}
	return "sha256:" + d
}

// blobBytes is how many body bytes of GETs of one blob went through.
func (p *proxy) blobBytes(digest string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.perBlob[digest]
}

// rangesSeen is the Range headers of the blob GETs so far ("" for none).
func (p *proxy) rangesSeen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.ranges...)
}

// countingBody counts (and optionally corrupts) one blob response body.
type countingBody struct {
	io.ReadCloser
	p       *proxy
	digest  string
	flip    bool
	flipped bool
}

func (b *countingBody) Read(buf []byte) (int, error) {
	n, err := b.ReadCloser.Read(buf)
	if n > 0 {
		if b.flip && !b.flipped {
			buf[0] ^= 0xff
			b.flipped = true
		}
		b.p.recv.Add(int64(n))
		b.p.mu.Lock()
		b.p.perBlob[b.digest] += int64(n)
		b.p.mu.Unlock()
	}
	return n, err
}
