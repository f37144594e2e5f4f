package integration

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultProxy sits on 127.0.0.1 in front of a real registry and injects
// the failures of a bad network, a sick registry or a misbehaving CDN.
// Every fault is off until a test turns it on with set; clear turns all
// of them off again. It can also require HTTP Basic authentication, so
// that a registry without auth (docker-registry as started by
// startDistribution) behaves like one that has it.
type faultProxy struct {
	t        *testing.T
	upstream string // host:port of the real registry
	addr     string // host:port of the proxy; kept across down/up
	tr       *http.Transport
	st       faultStats

	mu   sync.Mutex
	f    faults
	srv  *http.Server // nil while down
	next time.Time    // bandwidth limiter: when the next byte may leave
}

// faults is the set of failures in force. The zero value injects nothing.
type faults struct {
	latency     time.Duration // before every answer
	bandwidth   int64         // bytes per second over all response bodies; 0: unlimited
	failN       int           // answer failCode to the next failN requests (-1: every request)
	failCode    int           // 500, 503, 429, ...
	retryAfter  string        // Retry-After header sent with failCode, if not ""
	blobsOnly   bool          // failN, dropN and hijack only hit blob GETs
	flip        bool          // XOR one byte of every blob GET body
	dropAfter   int64         // close the connection after this many body bytes...
	dropN       int           // ...of the next dropN blob GETs (-1: every one)
	dropEvery   int           // with dropN -1: drop only every dropEvery-th blob GET (0 or 1: all)
	ignoreRange bool          // ignore Range: answer 200 with the whole body
	hijack      bool          // answer by hijacking the connection and closing it
	cdn         *fakeCDN      // redirect blob GETs there (307 to a signed URL)
	basicUser   string        // require Basic auth with these credentials
	basicPass   string
}

// faultStats counts what the proxy saw and did.
type faultStats struct {
	requests   atomic.Int64 // every request that reached the handler
	blobGets   atomic.Int64 // GET /v2/<name>/blobs/<digest>
	failed     atomic.Int64 // answered with the injected status
	dropped    atomic.Int64 // connections cut mid-body
	flipped    atomic.Int64 // blob bodies with a byte flipped
	hijacked   atomic.Int64 // connections closed without an answer
	redirected atomic.Int64 // blob GETs sent to the CDN
	authOK     atomic.Int64 // requests carrying the right Basic credentials
	authDenied atomic.Int64 // requests answered 401
	bodyBytes  atomic.Int64 // blob body bytes sent to the client
}

// newFaultProxy starts a proxy in front of upstream (host:port).
func newFaultProxy(t *testing.T, upstream string) *faultProxy {
	t.Helper()
	p := &faultProxy{
		t:        t,
		upstream: upstream,
		tr:       &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() {
		p.down()
		p.tr.CloseIdleConnections()
	})
	return p
}

func (p *faultProxy) serve(ln net.Listener) {
	srv := &http.Server{Handler: p, ErrorLog: log.New(io.Discard, "", 0)}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go srv.Serve(ln)
}

// set changes the faults in force.
func (p *faultProxy) set(change func(f *faults)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	change(&p.f)
}

// clear turns every fault off but keeps authentication and the CDN.
func (p *faultProxy) clear() {
	p.set(func(f *faults) {
		*f = faults{cdn: f.cdn, basicUser: f.basicUser, basicPass: f.basicPass}
	})
}

// down takes the registry off the network: the listener is closed (new
// connections are refused) and open connections are cut.
func (p *faultProxy) down() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// up brings the registry back on the same address.
func (p *faultProxy) up() {
	p.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("fault proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// isBlobGet reports whether r reads a blob body.
func isBlobGet(r *http.Request) bool {
	return r.Method == http.MethodGet && blobDigest(r.URL.Path) != ""
}

// decision is what the proxy does with one request, taken under the lock.
type decision struct {
	f    faults
	fail bool
	drop bool
}

func (p *faultProxy) decide(r *http.Request) decision {
	blob := isBlobGet(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	d := decision{f: p.f}
	hit := blob || !p.f.blobsOnly
	if p.f.failN != 0 && hit {
		d.fail = true
		if p.f.failN > 0 {
			p.f.failN--
		}
	}
	if blob && p.f.dropN != 0 {
		switch {
		case p.f.dropN > 0:
			d.drop = true
			p.f.dropN--
		case p.f.dropEvery <= 1:
			d.drop = true
		default:
			d.drop = p.st.blobGets.Load()%int64(p.f.dropEvery) != 0
		}
	}
	d.f.hijack = p.f.hijack && hit
	return d
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.st.requests.Add(1)
	if isBlobGet(r) {
		p.st.blobGets.Add(1)
	}
	d := p.decide(r)
	if d.f.hijack {
		p.st.hijacked.Add(1)
		hijackClose(w)
		return
	}
	if d.f.latency > 0 {
		select {
		case <-time.After(d.f.latency):
		case <-r.Context().Done():
			return
		}
	}
	if d.f.basicUser != "" {
		u, pw, ok := r.BasicAuth()
		if !ok || u != d.f.basicUser || pw != d.f.basicPass {
			p.st.authDenied.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="hashfs-fault-proxy"`)
			ociError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
			return
		}
		p.st.authOK.Add(1)
	}
	if d.fail {
		p.st.failed.Add(1)
		if d.f.retryAfter != "" {
			w.Header().Set("Retry-After", d.f.retryAfter)
		}
		ociError(w, d.f.failCode, "UNAVAILABLE", "injected fault")
		return
	}
	if d.f.cdn != nil && isBlobGet(r) {
		p.st.redirected.Add(1)
		http.Redirect(w, r, d.f.cdn.signedURL(r.URL.Path), http.StatusTemporaryRedirect)
		return
	}
	p.forward(w, r, d)
}

// forward passes r to the registry and streams the answer back through
// the body faults (flip, drop, bandwidth).
func (p *faultProxy) forward(w http.ResponseWriter, r *http.Request, d decision) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.upstream+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for _, k := range []string{"Accept", "Range", "Content-Type", "User-Agent"} {
		if v, ok := r.Header[k]; ok {
			out.Header[k] = v
		}
	}
	if d.f.ignoreRange {
		out.Header.Del("Range")
	}
	out.ContentLength = r.ContentLength
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	blobBody := isBlobGet(r) && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent)
	p.copyBody(w, resp.Body, blobBody, d)
}

func (p *faultProxy) copyBody(w http.ResponseWriter, body io.Reader, blob bool, d decision) {
	rc := http.NewResponseController(w)
	buf := make([]byte, 16<<10)
	var sent int64
	flipped := false
	for {
		n, rerr := body.Read(buf)
		chunk := buf[:n]
		if blob && d.drop && sent+int64(len(chunk)) >= d.f.dropAfter {
			chunk = chunk[:max(0, d.f.dropAfter-sent)]
			w.Write(chunk)
			rc.Flush()
			p.st.dropped.Add(1)
			p.st.bodyBytes.Add(int64(len(chunk)))
			// Cut the connection: the client sees a short body.
			panic(http.ErrAbortHandler)
		}
		if blob && d.f.flip && !flipped && len(chunk) > 0 {
			chunk[len(chunk)/2] ^= 0x01
			flipped = true
			p.st.flipped.Add(1)
		}
		if len(chunk) > 0 {
			p.throttle(len(chunk))
			if _, err := w.Write(chunk); err != nil {
				return
			}
			sent += int64(len(chunk))
			if blob {
				p.st.bodyBytes.Add(int64(len(chunk)))
			}
		}
		if rerr != nil {
			return
		}
	}
}

// throttle waits until n more bytes fit the bandwidth cap.
func (p *faultProxy) throttle(n int) {
	p.mu.Lock()
	bps := p.f.bandwidth
	if bps <= 0 {
		p.mu.Unlock()
		return
	}
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(int64(n) * int64(time.Second) / bps))
	wait := p.next.Sub(now)
	p.mu.Unlock()
	time.Sleep(wait)
}

// hijackClose closes the connection without answering.
func hijackClose(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// ociError answers an error in the registry's JSON shape.
func ociError(w http.ResponseWriter, code int, errCode, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, errCode, msg)
}

// fakeCDN is a second loopback host that blob GETs are redirected to, as
// registries backed by S3 or a CDN do. It serves the bytes from the
// registry itself, refuses (and counts) any request that carries an
// Authorization header, and can answer 403 like an expired signed URL.
type fakeCDN struct {
	upstream string // registry host:port the bytes come from
	addr     string // host:port of the CDN: 127.0.0.2 when it can bind there
	sig      string // the "signature" in every redirect URL
	tr       *http.Transport

	expireN    atomic.Int64 // answer 403 to this many more requests
	requests   atomic.Int64
	expired    atomic.Int64
	authLeaks  atomic.Int64 // requests that carried Authorization
	badSig     atomic.Int64 // requests without the right signature
	bodyBytes  atomic.Int64
	leakHeader atomic.Value // string: the leaked header's scheme, for the report
}

// newFakeCDN starts a CDN on a second loopback address in front of
// upstream. sig is put in every signed URL (a test greps logs for it).
func newFakeCDN(t *testing.T, upstream, sig string) *fakeCDN {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeCDN{upstream: upstream, addr: ln.Addr().String(), sig: sig, tr: &http.Transport{DisableCompression: true}}
	srv := &http.Server{Handler: c, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		c.tr.CloseIdleConnections()
	})
	return c
}

// signedURL is where the registry sends a client for path.
func (c *fakeCDN) signedURL(path string) string {
	exp := strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10)
	return "http://" + c.addr + "/cdn" + path + "?X-Expires=" + exp + "&X-Signature=" + c.sig
}

func (c *fakeCDN) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.requests.Add(1)
	if a := r.Header.Get("Authorization"); a != "" {
		c.authLeaks.Add(1)
		scheme, _, _ := strings.Cut(a, " ")
		c.leakHeader.Store(scheme)
		http.Error(w, "this host must never see the registry's Authorization header", http.StatusBadRequest)
		return
	}
	if r.URL.Query().Get("X-Signature") != c.sig {
		c.badSig.Add(1)
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	for {
		n := c.expireN.Load()
		if n <= 0 {
			break
		}
		if c.expireN.CompareAndSwap(n, n-1) {
			c.expired.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
			return
		}
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/cdn")
	if !ok || blobDigest(path) == "" {
		http.NotFound(w, r)
		return
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+c.upstream+path, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if v := r.Header.Get("Range"); v != "" {
		out.Header.Set("Range", v)
	}
	resp, err := c.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, k := range []string{"Content-Length", "Content-Range", "Content-Type", "Accept-Ranges", "Etag"} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	n, _ := io.Copy(w, resp.Body)
	c.bodyBytes.Add(n)
}

// TestFaultProxySelf checks the proxy's own faults with a plain HTTP
// client against the in-process registry, so a fault test that passes
// cannot be passing because its fault silently did nothing.
func TestFaultProxySelf(t *testing.T) {
	host := startGGCR(t, nil)
	data := randomBytes(t, 200<<10)
	d := pushFile(t, host+"/self/test", "v1", "blob.bin", data)
	p := newFaultProxy(t, host)
	blobURL := "http://" + p.addr + "/v2/self/test/blobs/" + d
	hc := &http.Client{Timeout: 10 * time.Second}
	get := func(rng string) (int, []byte, http.Header, error) {
		req, _ := http.NewRequest(http.MethodGet, blobURL, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, resp.Header, err
	}

	if code, b, _, err := get("bytes=10-19"); err != nil || code != http.StatusPartialContent || !bytes.Equal(b, data[10:20]) {
		t.Fatalf("plain ranged GET through the proxy: %d %v, %d bytes", code, err, len(b))
	}

	p.set(func(f *faults) { f.failN, f.failCode, f.retryAfter = 2, http.StatusTooManyRequests, "1" })
	for i := 0; i < 2; i++ {
		if code, _, h, _ := get(""); code != http.StatusTooManyRequests || h.Get("Retry-After") != "1" {
			t.Errorf("fail-next %d: status %d Retry-After %q, want 429 and 1", i, code, h.Get("Retry-After"))
		}
	}
	if code, b, _, err := get(""); code != http.StatusOK || err != nil || !bytes.Equal(b, data) {
		t.Errorf("after the injected failures: %d %v", code, err)
	}

	p.set(func(f *faults) { f.flip = true })
	if _, b, _, _ := get(""); len(b) != len(data) || bytes.Equal(b, data) || sha256Hex(b) == sha256Hex(data) {
		t.Errorf("flip: the body came back unchanged (%d bytes)", len(b))
	}
	p.clear()

	p.set(func(f *faults) { f.dropAfter, f.dropN = 1000, 1 })
	if _, b, _, err := get(""); err == nil || len(b) != 1000 {
		t.Errorf("drop after 1000 bytes: read %d bytes, err %v; want 1000 and an error", len(b), err)
	}

	p.set(func(f *faults) { f.ignoreRange = true })
	if code, b, _, _ := get("bytes=10-19"); code != http.StatusOK || len(b) != len(data) {
		t.Errorf("ignore Range: status %d with %d bytes, want 200 with %d", code, len(b), len(data))
	}
	p.clear()

	p.set(func(f *faults) { f.hijack = true })
	if _, _, _, err := get(""); err == nil {
		t.Errorf("hijack: the request succeeded")
	}
	p.clear()

	p.down()
	if _, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		t.Errorf("down: a connection to %s was accepted", p.addr)
	}
	p.up()
	if code, _, _, err := get("bytes=0-0"); err != nil || code != http.StatusPartialContent {
		t.Errorf("up again: %d %v", code, err)
	}

	p.set(func(f *faults) { f.basicUser, f.basicPass = "u", "pw" })
	if code, _, h, _ := get(""); code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("basic auth: anonymous GET got %d %q, want 401 with a Basic challenge", code, h.Get("WWW-Authenticate"))
	}

	cdn := newFakeCDN(t, host, "sig-self-test")
	p.set(func(f *faults) { f.cdn, f.basicUser = cdn, "" })
	cdn.expireN.Store(1)
	if code, _, _, _ := get(""); code != http.StatusForbidden {
		t.Errorf("expired CDN URL: status %d, want 403", code)
	}
	if code, b, _, err := get("bytes=5-9"); err != nil || code != http.StatusPartialContent || !bytes.Equal(b, data[5:10]) {
		t.Errorf("through the CDN: %d %v %q", code, err, b)
	}
	req, _ := http.NewRequest(http.MethodGet, cdn.signedURL("/v2/self/test/blobs/"+d), nil)
	req.Header.Set("Authorization", "Basic eDp5")
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("CDN given an Authorization header: %v %v, want 400", resp, err)
	} else {
		resp.Body.Close()
	}
	if cdn.authLeaks.Load() != 1 || cdn.expired.Load() != 1 {
		t.Errorf("CDN counted %d leaks and %d expiries, want 1 and 1", cdn.authLeaks.Load(), cdn.expired.Load())
	}
	if p.st.failed.Load() != 2 || p.st.flipped.Load() != 1 || p.st.dropped.Load() != 1 || p.st.hijacked.Load() < 1 {
		t.Errorf("proxy counted failed=%d flipped=%d dropped=%d hijacked=%d, want 2 1 1 >=1",
			p.st.failed.Load(), p.st.flipped.Load(), p.st.dropped.Load(), p.st.hijacked.Load())
	}
}
