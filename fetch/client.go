// Package fetch talks HTTP to one OCI registry repository: ranged blob reads,
// manifests and tag lists, with authentication and a retry policy of its own.
// It keeps nothing on disk and knows nothing about FUSE.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/hashfs/hashfs/internal/bufpool"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Options configures a Client. The zero value is usable.
type Options struct {
	PlainHTTP bool              // use http:// even for non-loopback registries (loopback already uses http)
	Keychain  authn.Keychain    // nil => authn.DefaultKeychain
	Transport http.RoundTripper // base transport; nil => remote.DefaultTransport with short dial/header timeouts
	Retries   int               // attempts after the first for transient errors; 0 => 4 (negative => none)
	RetryBase time.Duration     // first backoff; 0 => 200ms, doubling, capped at 4s, with jitter
	Logger    *slog.Logger      // nil => discard
	UserAgent string
	// Endpoint, when its Host is set, is where to reach the repository
	// instead of its own registry: a mirror, with the same repository name
	// under its API root. Credentials are looked up for the endpoint's host.
	Endpoint Endpoint
	// Endpoints, if set, shares what is known of each endpoint's health
	// (see health) among the Clients made with it: the repositories of
	// one registry find it down once, not once each. nil: a Client keeps
	// its own.
	Endpoints *Endpoints
	// Buffers, if set, is where blob ranges are read into: FetchRange's
	// result then comes from it, and the caller may give it back with
	// Buffers.Put once done. nil: each range gets a new buffer.
	Buffers *bufpool.Pool
}

// Doc is a manifest document as served by the registry.
type Doc struct {
	Digest    digest.Digest // sha256 of Body
	MediaType string
	Body      []byte
}

// Descriptor describes a manifest without its body.
type Descriptor struct {
	Digest    digest.Digest
	Size      int64
	MediaType string
}

// Stats are running totals for one Client.
type Stats struct {
	Requests  int64 // HTTP requests issued by this package (each attempt counts)
	BlobBytes int64 // blob body bytes read, including bytes skipped when a server ignored Range
	Retries   int64 // attempts repeated after a transient failure
	Failures  int64 // operations that gave up after the retry budget, or at once at an endpoint found unreachable
	Skipped   int64 // operations not tried: the endpoint was unreachable a moment ago (ErrEndpointDown)
}

// Add adds o's counts to s.
func (s *Stats) Add(o Stats) {
	s.Requests += o.Requests
	s.BlobBytes += o.BlobBytes
	s.Retries += o.Retries
	s.Failures += o.Failures
	s.Skipped += o.Skipped
}

// MaxManifestSize is the largest manifest accepted; bigger ones are
// rejected with hfserr.ErrInvalid.
const MaxManifestSize = 4 << 20

const (
	defaultRetries   = 4
	defaultRetryBase = 200 * time.Millisecond
	dialTimeout      = 5 * time.Second
	headerTimeout    = 20 * time.Second
)

// pathComponent is one slash-separated part of a repository name, as the
// distribution spec defines it (name.NewRepository lets "a//b" through).
var pathComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$`)

// Client reads from one repository, at its registry or at one mirror of it.
// It is safe for concurrent use.
type Client struct {
	meter

	repo     name.Repository // the repository as named, at its own registry
	target   name.Repository // the same repository at the endpoint spoken to
	reg      name.Registry   // target.Registry
	ep       Endpoint        // the endpoint spoken to, with its host filled in
	mirror   bool            // ep is not the repository's own registry
	keychain authn.Keychain
	base     http.RoundTripper

	mu       sync.Mutex
	rt       http.RoundTripper // authenticated transport, nil until built
	building *build            // in-flight build, nil if none

	noReferrersAPI atomic.Bool // the registry answered that it has no referrers API
	full           fullBodies  // kept answers of a server that ignored Range (rangeless.go)
	bufs           *bufpool.Pool
}

// build is one in-flight construction of the authenticated transport,
// shared by every caller that arrives while it runs.
type build struct {
	done chan struct{}
	rt   http.RoundTripper
	err  error
}

// New parses repo (for example "ghcr.io/owner/name" or "busybox") and returns
// a Client for it. It does no network I/O.
func New(repo string, o Options) (*Client, error) {
	var nopts []name.Option
	if o.PlainHTTP {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.NewRepository(repo, nopts...)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %v: %w", clip(repo), err, hfserr.ErrInvalid)
	}
	for _, part := range strings.Split(r.RepositoryStr(), "/") {
		if !pathComponent.MatchString(part) {
			return nil, fmt.Errorf("repository %q: path component %q is not of the form %s: %w",
				clip(repo), clip(part), pathComponent, hfserr.ErrInvalid)
		}
	}
	c := &Client{
		repo:     r,
		target:   r,
		reg:      r.Registry,
		ep:       Endpoint{Scheme: r.Registry.Scheme(), Host: r.RegistryStr(), Capabilities: CapAll, Server: true},
		keychain: o.Keychain,
		base:     o.Transport,
		bufs:     o.Buffers,
	}
	c.meter.init(o)
	if c.keychain == nil {
		c.keychain = authn.DefaultKeychain
	}
	if c.base == nil {
		c.base = defaultTransport()
	}
	if o.Endpoint.Host != "" {
		reg, err := o.Endpoint.registry(o.PlainHTTP)
		if err != nil {
			return nil, err
		}
		if c.base, err = o.Endpoint.withTLS(c.base); err != nil {
			return nil, err
		}
		c.ep = o.Endpoint
		c.ep.Host = reg.RegistryStr()
		if c.ep.Scheme == "" {
			c.ep.Scheme = reg.Scheme()
		}
		c.target, c.reg = reg.Repo(r.RepositoryStr()), reg
		c.mirror = c.reg.RegistryStr() != r.RegistryStr() || c.ep.apiRoot() != "/v2"
	}
	c.base = transport.NewUserAgent(c.base, o.UserAgent)
	c.health = o.Endpoints.of(c.ep.Scheme + "://" + c.ep.Host)
	return c, nil
}

// MaxIdleConnsPerHost bounds the keep-alive connections kept per host
// between reads (two goroutines each); enough to reuse every connection
// of a few blobs fetched with --parallel 16.
const MaxIdleConnsPerHost = 50

func defaultTransport() http.RoundTripper {
	t, ok := remote.DefaultTransport.(*http.Transport)
	if !ok {
		return remote.DefaultTransport
	}
	t = t.Clone()
	t.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = headerTimeout
	t.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	t.IdleConnTimeout = 30 * time.Second
	return t
}

// Repository returns the canonical repository name, such as
// "index.docker.io/library/busybox".
func (c *Client) Repository() string { return c.repo.Name() }

// Name identifies the Client among blob sources: its Repository, followed
// by " via <endpoint>" when it talks to a mirror.
func (c *Client) Name() string {
	if c.mirror {
		return c.Repository() + " via " + c.ep.String()
	}
	return c.Repository()
}

// Endpoint returns where the Client sends its requests.
func (c *Client) Endpoint() Endpoint { return c.ep }

// Stats returns the running totals.
func (c *Client) Stats() Stats { return c.meter.snapshot() }

// Ping performs the authentication handshake and checks that the repository
// exists and may be read. Errors wrap hfserr.ErrUnavailable (unreachable),
// ErrDenied (401/403) or ErrNotFound (no such repository).
func (c *Client) Ping(ctx context.Context) error {
	u := c.url("/tags/list", "n", "1")
	return c.retry(ctx, "ping "+c.Repository(), func(ctx context.Context, hc *http.Client) error {
		resp, err := c.do(ctx, hc, http.MethodGet, u, nil, false)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return c.statusError(resp)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	})
}

// url returns the absolute URL of <api root>/<name><suffix> at the endpoint,
// with query holding key, value pairs. Requests to a mirror carry the
// repository's registry as "ns", as containerd sends them.
func (c *Client) url(suffix string, query ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(query); i += 2 {
		q.Set(query[i], query[i+1])
	}
	if c.mirror {
		q.Set("ns", namespace(c.repo.Registry))
	}
	u := url.URL{
		Scheme:   c.reg.Scheme(),
		Host:     c.reg.RegistryStr(),
		Path:     strings.TrimSuffix(c.ep.apiRoot(), "/") + "/" + c.target.RepositoryStr() + suffix,
		RawQuery: q.Encode(),
	}
	return u.String()
}

// httpClient returns a client on the authenticated transport, building the
// transport on first use. A failed build is not cached: the next call tries
// again, so a registry that was down at first use is picked up later.
func (c *Client) httpClient(ctx context.Context) (*http.Client, error) {
	for {
		c.mu.Lock()
		if c.rt != nil {
			rt := c.rt
			c.mu.Unlock()
			return &http.Client{Transport: rt}, nil
		}
		if b := c.building; b != nil {
			c.mu.Unlock()
			select {
			case <-b.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if b.err == nil {
				return &http.Client{Transport: b.rt}, nil
			}
			// The builder's own context ended: that says nothing about
			// the registry, so try again under ours.
			if errors.Is(b.err, context.Canceled) || errors.Is(b.err, context.DeadlineExceeded) {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				continue
			}
			return nil, b.err
		}
		b := &build{done: make(chan struct{})}
		c.building = b
		c.mu.Unlock()

		b.rt, b.err = c.buildTransport(ctx)
		c.mu.Lock()
		if b.err == nil {
			c.rt = b.rt
		}
		c.building = nil
		c.mu.Unlock()
		close(b.done)
		if b.err != nil {
			return nil, b.err
		}
		return &http.Client{Transport: b.rt}, nil
	}
}

func (c *Client) buildTransport(ctx context.Context) (http.RoundTripper, error) {
	// Credentials are those of the host spoken to: a mirror never sees the
	// upstream registry's.
	auth, err := c.keychain.Resolve(c.target)
	if err != nil {
		return nil, fmt.Errorf("resolve credentials for %s: %w: %w", c.reg.RegistryStr(), hfserr.ErrDenied, err)
	}
	start := time.Now()
	c.requests.Add(1) // at least the /v2/ ping; token exchanges are not counted
	rt, err := transport.NewWithContext(ctx, c.reg, auth, c.base, []string{c.target.Scope(transport.PullScope)})
	if err != nil {
		c.log.Debug("registry handshake failed", "registry", c.reg.RegistryStr(), "duration", time.Since(start), "err", err)
		err = c.handshakeError(ctx, err)
		// A mirror whose API root is not /v2 may not answer the /v2/ ping
		// at all: talk to it anonymously.
		if c.ep.apiRoot() != "/v2" && errors.Is(err, hfserr.ErrNotFound) {
			c.log.Debug("no /v2/ at endpoint; continuing without authentication", "endpoint", c.ep.String())
			return c.base, nil
		}
		return nil, err
	}
	c.log.Debug("registry handshake", "registry", c.reg.RegistryStr(), "duration", time.Since(start))
	return rt, nil
}

// handshakeError classifies an error from transport.NewWithContext.
func (c *Client) handshakeError(ctx context.Context, err error) error {
	what := "authenticate to " + c.reg.RegistryStr()
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return classifyStatus(te.StatusCode, true, 0, fmt.Errorf("%s: %w", what, err))
	}
	return classifyTransportErr(fmt.Errorf("%s: %w", what, err))
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
