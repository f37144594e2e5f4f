package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/fetch"
	"github.com/hashfs/hashfs/manifestview"
)

// member is one repository of a mount: where its bytes come from, its
// names (manifestview.Repo), and how its sha256/ sizes digests.
type member struct {
	path string    // namespace path: "<registry>/<repo>" or "oci/<dir>"
	fr   fetchRepo // nil with --offline
	src  source
	repo *manifestview.Repo
	stat stater
}

// parts are what every repository of one mount shares: one cache, one
// fetch.Set of blob sources, and one Union for the root sha256/.
type parts struct {
	o       *options
	log     *slog.Logger
	fopts   fetch.Options
	cache   *cache.Cache
	set     *fetch.Set
	union   *manifestview.Union
	offline *offlineSource // set with --offline

	mu      sync.Mutex
	members map[string]*member
	order   []*member
}

// open returns the fetchRepo of arg (a repository or a layout); it does no
// network I/O. A repository whose registry has mirrors in --hosts-dir is
// read through them first.
func (p *parts) open(arg sourceArg) (fetchRepo, error) {
	if arg.kind == layoutSource {
		l, err := fetch.OpenLayout(arg.ref)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	return openRepository(arg.ref, p.o.hostsDir, p.fopts)
}

// add makes fr (nil with --offline) the repository at path, once.
func (p *parts) add(path, repoName string, fr fetchRepo) *member {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.members[path]; m != nil {
		return m
	}
	var src source = p.offline
	if fr != nil {
		src = registrySource{fr}
	}
	tf := newTagsFile(p.o.cacheDir, repoName, p.log)
	rf := newReferrersFiles(p.o.cacheDir, repoName, p.log)
	knownRefs := rf.load
	if fr == nil {
		knownRefs = rf.loadOffline
	}
	repo := manifestview.NewRepo(src, p.cache, manifestview.RepoOptions{
		KnownTags:      tf.load(),
		OnTags:         tf.save,
		KnownReferrers: knownRefs,
		OnReferrers:    rf.save,
		TagTTL:         p.o.tagTTL,
		Logger:         p.log.With("source", repoName),
		// Docker Hub counts manifest GETs against its pull rate limit and
		// HEADs not; elsewhere a GET costs the same round trip and saves
		// fetching the manifest again when its tree is browsed.
		ResolveTagsWithGet: !strings.HasPrefix(repoName, "index.docker.io/"),
	})
	m := &member{path: path, fr: fr, src: src, repo: repo, stat: stater{src: src, repo: repo, set: p.set}}
	p.members[path] = m
	p.order = append(p.order, m)
	if fr != nil {
		p.set.Add(src)
	}
	p.union.Add(manifestview.Member{Name: repoName, Repo: repo, Stater: m.stat})
	return m
}

func (p *parts) member(path string) *member {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.members[path]
}

func (p *parts) all() []*member {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*member(nil), p.order...)
}

// ping checks that every source answers. One source must; with many, a
// source that does not is logged and left in (it may come back), unless
// none answers.
func (p *parts) ping(ctx context.Context, frs []fetchRepo) error {
	var errs []error
	for _, fr := range frs {
		if err := fr.Ping(ctx); err != nil {
			if len(frs) == 1 {
				return fmt.Errorf("%s: %w (--offline serves what is cached)", fr.Name(), err)
			}
			p.log.Warn("source not answering, will be tried again on use", "source", fr.Name(), "err", err)
			errs = append(errs, err)
		}
	}
	if len(frs) > 1 && len(errs) == len(frs) {
		return fmt.Errorf("no source answers (--offline serves what is cached): %w", errs[0])
	}
	return nil
}
