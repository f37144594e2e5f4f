package fetch

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/pelletier/go-toml/v2"
	tomlu "github.com/pelletier/go-toml/v2/unstable"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// HostsDir is where containerd keeps registry hosts configuration.
const HostsDir = "/etc/containerd/certs.d"

// maxHostsFile caps a hosts.toml file.
const maxHostsFile = 1 << 20

// hostSettings are the per-host fields of hosts.toml that hashfs honours.
// client, header, dial_timeout and proxy are accepted and ignored.
type hostSettings struct {
	Capabilities []string `toml:"capabilities"`
	CA           any      `toml:"ca"` // a path or a list of paths
	SkipVerify   bool     `toml:"skip_verify"`
	OverridePath bool     `toml:"override_path"`
}

// LoadHosts reads containerd's registry hosts configuration
// (<dir>/<host>/hosts.toml, see containerd's docs/hosts.md) for
// registryHost, such as "ghcr.io", "registry.example:5000" or
// "index.docker.io" (whose directory is "docker.io"), and returns the
// endpoints to try in order: the [host."<url>"] entries in file order, then
// the upstream `server` (by default the registry itself).
//
// The directory is the first of "<host>_<port>_", "<host>:<port>" and
// "_default" that exists. No directory, or one without hosts.toml, means no
// mirrors and is not an error; PEM files "*.crt" in such a directory are
// then root certificates for the registry, as Docker's certs.d has them.
// A malformed file wraps hfserr.ErrInvalid.
func LoadHosts(dir, registryHost string) ([]Endpoint, error) {
	ns, err := hostNamespace(registryHost)
	if err != nil {
		return nil, err
	}
	upstream := Endpoint{Host: registryHost, Capabilities: CapAll, Server: true}
	hostDir := ""
	for _, cand := range slices.Compact([]string{portDirectory(ns), ns, "_default"}) {
		p := filepath.Join(dir, cand)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			hostDir = p
			break
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("hosts configuration %s: %w: %w", p, err, hfserr.ErrUnavailable)
		}
	}
	if hostDir == "" {
		return []Endpoint{upstream}, nil
	}
	file := filepath.Join(hostDir, "hosts.toml")
	b, err := readCapped(file, maxHostsFile)
	if errors.Is(err, fs.ErrNotExist) {
		crts, _ := filepath.Glob(filepath.Join(hostDir, "*.crt"))
		upstream.CA = crts
		return []Endpoint{upstream}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hosts configuration %s: %w", file, err)
	}
	eps, err := parseHosts(b, hostDir, upstream)
	if err != nil {
		return nil, fmt.Errorf("hosts configuration %s: %w", file, err)
	}
	return eps, nil
}

// parseHosts turns a hosts.toml file into endpoints; upstream is the server
// to use when the file names none. Relative CA paths are under baseDir.
func parseHosts(b []byte, baseDir string, upstream Endpoint) ([]Endpoint, error) {
	order, err := hostOrder(b)
	if err != nil {
		return nil, err
	}
	var f struct {
		hostSettings
		Server string                  `toml:"server"`
		Host   map[string]hostSettings `toml:"host"`
	}
	if err := toml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%v: %w", err, hfserr.ErrInvalid)
	}
	var eps []Endpoint
	for _, h := range order {
		ep, err := hostEndpoint(h, f.Host[h], baseDir)
		if err != nil {
			return nil, err
		}
		eps = append(eps, ep)
	}
	server := f.Server
	if server == "" {
		server = upstream.Host
	}
	ep, err := hostEndpoint(server, f.hostSettings, baseDir)
	if err != nil {
		return nil, err
	}
	if f.Server == "" {
		ep.Scheme = "" // the registry's own: https, or http for loopback
	}
	ep.Server = true
	return append(eps, ep), nil
}

// hostEndpoint makes an Endpoint of a host URL ("https://mirror.example",
// "http://10.0.0.1:5000/prefix", or a bare host, which means https) and
// its settings.
func hostEndpoint(raw string, s hostSettings, baseDir string) (Endpoint, error) {
	what := fmt.Sprintf("host %q", clip(raw))
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("%s: %v: %w", what, redactURLError(err), hfserr.ErrInvalid)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Endpoint{}, fmt.Errorf("%s: want http(s)://host[:port][/path]: %w", what, hfserr.ErrInvalid)
	}
	ep := Endpoint{Scheme: u.Scheme, Host: u.Host, SkipVerify: s.SkipVerify}
	p := strings.TrimSuffix(path.Clean("/"+u.Path), "/")
	if !s.OverridePath && !strings.HasSuffix(p, "/v2") {
		p += "/v2"
	}
	if p == "" {
		p = "/"
	}
	if p != "/v2" {
		ep.Path = p
	}
	for _, c := range s.Capabilities {
		switch strings.ToLower(c) {
		case "pull":
			ep.Capabilities |= CapPull
		case "resolve":
			ep.Capabilities |= CapResolve
		case "push":
			ep.Capabilities |= CapPush
		default:
			return Endpoint{}, fmt.Errorf("%s: unknown capability %q: %w", what, clip(c), hfserr.ErrInvalid)
		}
	}
	if len(s.Capabilities) == 0 {
		ep.Capabilities = CapAll
	}
	var cas []any
	switch ca := s.CA.(type) {
	case nil:
	case string:
		cas = []any{ca}
	case []any:
		cas = ca
	default:
		return Endpoint{}, fmt.Errorf("%s: ca must be a path or a list of paths: %w", what, hfserr.ErrInvalid)
	}
	for _, c := range cas {
		p, ok := c.(string)
		if !ok || p == "" {
			return Endpoint{}, fmt.Errorf("%s: ca must be a path or a list of paths: %w", what, hfserr.ErrInvalid)
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		ep.CA = append(ep.CA, p)
	}
	if _, err := ep.registry(false); err != nil {
		return Endpoint{}, err
	}
	return ep, nil
}

// hostOrder returns the keys of the `host` table in the order they first
// appear: as [host."<url>"] tables (sub-tables such as .header included),
// as dotted keys under [host] or at the top level, or in an inline table.
func hostOrder(b []byte) ([]string, error) {
	var order []string
	add := func(parts []string) {
		if len(parts) >= 2 && parts[0] == "host" && !slices.Contains(order, parts[1]) {
			order = append(order, parts[1])
		}
	}
	var table []string
	p := tomlu.Parser{}
	p.Reset(b)
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case tomlu.Table, tomlu.ArrayTable:
			table = keyParts(e)
			add(table)
		case tomlu.KeyValue:
			key := append(slices.Clone(table), keyParts(e)...)
			add(key)
			if v := e.Value(); slices.Equal(key, []string{"host"}) && v.Kind == tomlu.InlineTable {
				for it := v.Children(); it.Next(); {
					if kv := it.Node(); kv.Kind == tomlu.KeyValue {
						add(append([]string{"host"}, keyParts(kv)...))
					}
				}
			}
		}
	}
	if err := p.Error(); err != nil {
		return nil, fmt.Errorf("%v: %w", err, hfserr.ErrInvalid)
	}
	return order, nil
}

func keyParts(e *tomlu.Node) []string {
	var parts []string
	for it := e.Key(); it.Next(); {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// hostNamespace is the directory name of a registry host: Docker Hub's
// aliases are "docker.io". Anything that could leave the directory is
// refused.
func hostNamespace(host string) (string, error) {
	switch host {
	case name.DefaultRegistry, "docker.io", "registry-1.docker.io":
		return "docker.io", nil
	}
	if _, err := name.NewRegistry(host); err != nil || host == "" || host == "." || host == ".." ||
		strings.ContainsAny(host, `/\`) || strings.HasPrefix(host, "_") {
		return "", fmt.Errorf("registry host %q: %w", clip(host), hfserr.ErrInvalid)
	}
	return host, nil
}

// portDirectory is containerd's directory name for a host with a port:
// "host:5000" is "host_5000_".
func portDirectory(host string) string {
	if i := strings.LastIndex(host, ":"); i > 0 && !strings.HasSuffix(host, "]") {
		return host[:i] + "_" + host[i+1:] + "_"
	}
	return host
}
