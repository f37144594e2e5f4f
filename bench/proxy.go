package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// profile is a network shape applied by the proxy to every request.
type profile struct {
	Name    string
	Latency time.Duration // added before each request is forwarded
	Rate    float64       // bytes per second per client connection; 0 = unlimited
}

var (
	loopback = profile{Name: "loopback"}
	wan      = profile{Name: "wan", Latency: 40 * time.Millisecond, Rate: 25e6}
)

// proxyStats counts what clients asked of the registry through one proxy.
type proxyStats struct {
	Requests      int64 `json:"requests"`
	BlobGets      int64 `json:"blob_gets"`
	BlobHeads     int64 `json:"blob_heads"`
	ManifestGets  int64 `json:"manifest_gets"`
	ManifestHeads int64 `json:"manifest_heads"`
	TagLists      int64 `json:"tag_lists"`
	Other         int64 `json:"other"`
	BlobBytes     int64 `json:"blob_bytes"` // response body bytes of blob GETs
	BodyBytes     int64 `json:"body_bytes"` // all response body bytes
	TagPageSize   int64 `json:"tag_page_size,omitempty"`
}

// proxy is a small shaping HTTP proxy in front of the registry. Every
// contender reads through it, so every contender gets the same shape and
// is counted the same way.
type proxy struct {
	prof     profile
	upstream *url.URL
	rt       *http.Transport
	srv      *http.Server
	addr     string

	requests, blobGets, blobHeads, manGets, manHeads, tagLists, other atomic.Int64
	blobBytes, bodyBytes, tagPageSize                                 atomic.Int64
}

type connKey struct{}

// limiter paces writes on one client connection to a byte rate. Idle time
// earns no credit, so every response starts at the capped rate; timer
// lateness is made up so the average stays at the rate.
type limiter struct {
	rate float64
	mu   sync.Mutex
	next time.Time
}

func (l *limiter) wait(ctx context.Context, n int) error {
	if l == nil || l.rate <= 0 {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.next) > 50*time.Millisecond {
		l.next = now // idle: no credit; a late wake-up below 50 ms is made up
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	d := l.next.Sub(now)
	l.mu.Unlock()
	return sleepCtx(ctx, d)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startProxy listens on a free 127.0.0.1 port and forwards to upstream.
func startProxy(prof profile, upstream string) (*proxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{
		prof:     prof,
		upstream: u,
		addr:     ln.Addr().String(),
		rt: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        512,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 30 * time.Second,
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, &limiter{rate: prof.Rate})
		},
	}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *proxy) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
	_ = p.srv.Close()
	p.rt.CloseIdleConnections()
}

// reset zeroes the counters; snapshot reads them.
func (p *proxy) reset() {
	for _, c := range []*atomic.Int64{&p.requests, &p.blobGets, &p.blobHeads, &p.manGets, &p.manHeads,
		&p.tagLists, &p.other, &p.blobBytes, &p.bodyBytes, &p.tagPageSize} {
		c.Store(0)
	}
}

func (p *proxy) snapshot() proxyStats {
	return proxyStats{
		Requests: p.requests.Load(), BlobGets: p.blobGets.Load(), BlobHeads: p.blobHeads.Load(),
		ManifestGets: p.manGets.Load(), ManifestHeads: p.manHeads.Load(), TagLists: p.tagLists.Load(),
		Other: p.other.Load(), BlobBytes: p.blobBytes.Load(), BodyBytes: p.bodyBytes.Load(),
		TagPageSize: p.tagPageSize.Load(),
	}
}

// classify counts the request and says whether its body is blob bytes.
func (p *proxy) classify(r *http.Request) (blob bool) {
	p.requests.Add(1)
	path := r.URL.Path
	head := r.Method == http.MethodHead
	switch {
	case strings.Contains(path, "/blobs/") && !strings.Contains(path, "/uploads"):
		if head {
			p.blobHeads.Add(1)
			return false
		}
		p.blobGets.Add(1)
		return r.Method == http.MethodGet
	case strings.Contains(path, "/manifests/"):
		if head {
			p.manHeads.Add(1)
		} else {
			p.manGets.Add(1)
		}
	case strings.HasSuffix(path, "/tags/list"):
		p.tagLists.Add(1)
		if n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64); err == nil {
			p.tagPageSize.CompareAndSwap(0, n)
		}
	default:
		p.other.Add(1)
	}
	return false
}

var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te", "Trailer"}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	blob := p.classify(r)
	if err := sleepCtx(ctx, p.prof.Latency); err != nil {
		return
	}
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = p.upstream.Scheme, p.upstream.Host
	out.Host = r.Host // the registry builds Location headers that point back at us
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	if r.ContentLength == 0 {
		out.Body = nil
	}
	resp, err := p.rt.RoundTrip(out)
	if err != nil {
		http.Error(w, fmt.Sprintf("bench proxy: %v", err), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	lim, _ := ctx.Value(connKey{}).(*limiter)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if lim.wait(ctx, n) != nil {
				return
			}
			m, werr := w.Write(buf[:n])
			p.bodyBytes.Add(int64(m))
			if blob {
				p.blobBytes.Add(int64(m))
			}
			if werr != nil {
				return
			}
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			return
		}
	}
}

// url returns the base URL of the proxy, e.g. http://127.0.0.1:4242.
func (p *proxy) url() string { return "http://" + p.addr }
