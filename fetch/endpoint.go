package fetch

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// Capability is what an endpoint is trusted to do, as in containerd's
// hosts.toml: pull blobs and manifests by digest, resolve tags, push.
type Capability uint8

const (
	CapPull Capability = 1 << iota
	CapResolve
	CapPush

	// CapAll is what an endpoint may do when nothing says otherwise.
	CapAll = CapPull | CapResolve | CapPush
)

func (c Capability) String() string {
	var parts []string
	for _, x := range []struct {
		c Capability
		s string
	}{{CapPull, "pull"}, {CapResolve, "resolve"}, {CapPush, "push"}} {
		if c&x.c != 0 {
			parts = append(parts, x.s)
		}
	}
	return strings.Join(parts, ",")
}

// Endpoint is a place to reach a repository's registry API: the registry
// itself or a mirror of it. The zero value means "the repository's own
// registry".
type Endpoint struct {
	Scheme       string     // "https" or "http"; "" => https (loopback hosts use http, as for registries)
	Host         string     // host[:port]
	Path         string     // API root; "" => "/v2"
	Capabilities Capability // 0 => CapAll
	SkipVerify   bool       // do not check the server's certificate
	CA           []string   // PEM files of extra root certificates (absolute paths)
	Server       bool       // the upstream (hosts.toml `server`) rather than a mirror
}

// String is the endpoint's API root URL, such as "https://mirror.example/v2".
func (e Endpoint) String() string {
	s := e.Scheme
	if s == "" {
		s = "https"
	}
	return s + "://" + e.Host + e.apiRoot()
}

// Can reports whether the endpoint is trusted with every capability in c.
func (e Endpoint) Can(c Capability) bool {
	have := e.Capabilities
	if have == 0 {
		have = CapAll
	}
	return have&c == c
}

func (e Endpoint) apiRoot() string {
	if e.Path == "" {
		return "/v2"
	}
	return e.Path
}

// registry checks e and returns the registry it names; plainHTTP forces
// http whatever the scheme.
func (e Endpoint) registry(plainHTTP bool) (name.Registry, error) {
	var opts []name.Option
	switch e.Scheme {
	case "", "https":
	case "http":
		plainHTTP = true
	default:
		return name.Registry{}, fmt.Errorf("endpoint %q: scheme must be http or https: %w", clip(e.String()), hfserr.ErrInvalid)
	}
	if plainHTTP {
		opts = append(opts, name.Insecure)
	}
	if e.Path != "" && (!strings.HasPrefix(e.Path, "/") || path.Clean(e.Path) != e.Path || strings.ContainsAny(e.Path, "?#%")) {
		return name.Registry{}, fmt.Errorf("endpoint %q: path must be clean and absolute: %w", clip(e.String()), hfserr.ErrInvalid)
	}
	r, err := name.NewRegistry(e.Host, opts...)
	if err != nil || e.Host == "" {
		return name.Registry{}, fmt.Errorf("endpoint %q: bad host: %v: %w", clip(e.String()), err, hfserr.ErrInvalid)
	}
	return r, nil
}

// withTLS returns base configured for e's TLS settings: base itself when
// there are none, else a clone of it (which must then be an *http.Transport).
func (e Endpoint) withTLS(base http.RoundTripper) (http.RoundTripper, error) {
	if !e.SkipVerify && len(e.CA) == 0 {
		return base, nil
	}
	t, ok := base.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("endpoint %s: TLS settings need an *http.Transport, have %T: %w", e, base, hfserr.ErrInvalid)
	}
	t = t.Clone()
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	t.TLSClientConfig.InsecureSkipVerify = e.SkipVerify
	if len(e.CA) > 0 {
		pool := t.TLSClientConfig.RootCAs
		if pool == nil {
			var err error
			if pool, err = x509.SystemCertPool(); err != nil {
				pool = x509.NewCertPool()
			}
		} else {
			pool = pool.Clone()
		}
		for _, f := range e.CA {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("endpoint %s: CA: %w: %w", e, err, hfserr.ErrInvalid)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("endpoint %s: CA %s holds no PEM certificate: %w", e, f, hfserr.ErrInvalid)
			}
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return t, nil
}

// namespace is the value of the "ns" query parameter that tells a mirror
// which registry a request is for (containerd's convention).
func namespace(reg name.Registry) string {
	if h := reg.RegistryStr(); h != name.DefaultRegistry {
		return h
	}
	return "docker.io"
}
