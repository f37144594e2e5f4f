package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/hashfs/hashfs/fetch"
	"github.com/hashfs/hashfs/fs"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// catalogMembers bounds how many repositories read from a registry's
// catalog join the root sha256/ search up front; others join once visited.
const catalogMembers = 64

// maxProbes bounds the remembered answers about paths that are not
// repositories.
const maxProbes = 4096

// namespace is fs.Namespace for a many-source mount: the repositories and
// layouts named on the command line, plus, for each whole registry, the
// repositories its catalog lists and any other one looked up by path.
type namespace struct {
	p          *parts
	registries []string // hosts mounted whole
	ttl        time.Duration
	// base is "<host>/" when the only source is a whole registry: the
	// mount's root is then that registry's namespace.
	base string

	flight   singleflight.Group // one catalog request per registry at a time
	mu       sync.Mutex
	catalogs map[string]catalogAnswer
	notRepo  map[string]time.Time // paths found not to be repositories, when
}

type catalogAnswer struct {
	names []string // nil: no catalog offered
	at    time.Time
}

var _ fs.Namespace = (*namespace)(nil)

func newNamespace(p *parts, registries []string, ttl time.Duration, only bool) *namespace {
	n := &namespace{p: p, registries: registries, ttl: ttl,
		catalogs: map[string]catalogAnswer{}, notRepo: map[string]time.Time{}}
	if only && len(registries) == 1 {
		n.base = registries[0] + "/"
	}
	return n
}

// Paths lists the members and the repositories of each registry's
// catalog, relative to the base.
func (n *namespace) Paths(ctx context.Context) []string {
	var out []string
	for _, p := range n.paths(ctx) {
		if rel, ok := strings.CutPrefix(p, n.base); ok && rel != "" {
			out = append(out, rel)
		}
	}
	return out
}

// Lookup says what path (relative to the base) is.
func (n *namespace) Lookup(ctx context.Context, path string) (fs.Entry, error) {
	return n.lookup(ctx, n.base+path)
}

func (n *namespace) paths(ctx context.Context) []string {
	var out []string
	for _, m := range n.p.all() {
		out = append(out, m.path)
	}
	for _, host := range n.registries {
		out = append(out, host)
		for _, r := range n.catalog(ctx, host) {
			out = append(out, host+"/"+r)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// lookup says what the full path is. Below a whole registry, a path that
// is not yet a member becomes one when the registry's catalog lists it or,
// without a catalog, when the registry answers its tag list.
func (n *namespace) lookup(ctx context.Context, path string) (fs.Entry, error) {
	dir := n.below(ctx, path)
	if m := n.p.member(path); m != nil {
		return fs.Entry{Repo: m.repo, Stater: m.stat, Dir: dir}, nil
	}
	host, repo := n.registryOf(path)
	if host == "" || repo == "" {
		return fs.Entry{Dir: dir}, nil
	}
	m, err := n.probe(ctx, host, repo)
	if err != nil {
		return fs.Entry{}, err
	}
	if m == nil {
		return fs.Entry{Dir: dir}, nil
	}
	return fs.Entry{Repo: m.repo, Stater: m.stat, Dir: dir}, nil
}

// below reports whether repositories may exist below path: a member or a
// catalog entry does, and anything below a registry without a catalog may.
func (n *namespace) below(ctx context.Context, path string) bool {
	prefix := path + "/"
	for _, p := range n.paths(ctx) {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	host, repo := n.registryOf(path)
	return host != "" && (repo == "" || n.catalog(ctx, host) == nil)
}

// registryOf splits path into a mounted registry and the repository name
// below it ("" when path is not below a whole registry).
func (n *namespace) registryOf(path string) (host, repo string) {
	for _, h := range n.registries {
		if path == h {
			return h, ""
		}
		if r, ok := strings.CutPrefix(path, h+"/"); ok {
			return h, r
		}
	}
	return "", ""
}

// catalog returns the registry's repositories (nil when it offers no
// catalog or cannot be asked), asking again after the tag TTL. The first
// catalogMembers of them become members.
func (n *namespace) catalog(ctx context.Context, host string) []string {
	n.mu.Lock()
	a, ok := n.catalogs[host]
	n.mu.Unlock()
	if ok && time.Since(a.at) < n.ttl {
		return a.names
	}
	if n.p.offline != nil {
		return nil
	}
	v, err, _ := n.flight.Do(host, func() (any, error) { return fetch.Catalog(ctx, host, n.p.fopts) })
	names, _ := v.([]string)
	if err != nil {
		n.p.log.Debug("no catalog", "registry", host, "err", err)
		if ok && errors.Is(err, hfserr.ErrUnavailable) {
			return a.names // keep the last answer while the registry is away
		}
		names = nil
	}
	n.mu.Lock()
	n.catalogs[host] = catalogAnswer{names: names, at: time.Now()}
	n.mu.Unlock()
	for i, r := range names {
		if i >= catalogMembers {
			break
		}
		if fr, err := n.p.open(sourceArg{kind: repoSource, ref: host + "/" + r}); err == nil {
			n.p.add(host+"/"+r, fr.Name(), fr)
		}
	}
	return names
}

// probe makes host/repo a member if it is a repository. A registry that
// does not know it answers not found (or, like ghcr.io, denied); that
// answer is remembered for the tag TTL.
func (n *namespace) probe(ctx context.Context, host, repo string) (*member, error) {
	path := host + "/" + repo
	n.mu.Lock()
	at, known := n.notRepo[path]
	n.mu.Unlock()
	if known && time.Since(at) < n.ttl {
		return nil, nil
	}
	if names := n.catalog(ctx, host); names != nil && !slices.Contains(names, repo) {
		return nil, nil
	}
	if n.p.offline != nil {
		return nil, nil
	}
	fr, err := n.p.open(sourceArg{kind: repoSource, ref: path})
	if errors.Is(err, hfserr.ErrInvalid) {
		return nil, nil // not a repository name at all
	}
	if err != nil {
		return nil, err
	}
	if _, err := fr.Tags(ctx); err != nil {
		if errors.Is(err, hfserr.ErrNotFound) || errors.Is(err, hfserr.ErrDenied) {
			n.mu.Lock()
			if len(n.notRepo) >= maxProbes {
				clear(n.notRepo)
			}
			n.notRepo[path] = time.Now()
			n.mu.Unlock()
			return nil, nil
		}
		return nil, err
	}
	return n.p.add(path, fr.Name(), fr), nil
}
