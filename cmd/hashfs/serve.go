package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/fetch"
	"github.com/hashfs/hashfs/fs"
	"github.com/hashfs/hashfs/internal/bufpool"
	"github.com/hashfs/hashfs/manifestview"
)

// serve mounts the sources at mountpoint and blocks until the mount goes
// away (umount, fusermount3 -u) or ctx ends (SIGINT/SIGTERM), then
// unmounts. ready, if not nil, is called once the mount is live. One
// repository or layout is shown at the root; several sources, or a whole
// registry, are shown as a namespace with one sha256/ across all of them.
func serve(ctx context.Context, o *options, sources []string, mountpoint string, ready func()) error {
	logger := o.logger()
	args := make([]sourceArg, 0, len(sources))
	var registries []string
	for _, s := range sources {
		a, err := parseSource(s, o.plainHTTP)
		if err != nil {
			return err
		}
		if a.kind == wholeRegistry {
			registries = append(registries, a.ref)
		}
		args = append(args, a)
	}
	name := strings.Join(sources, " ")
	copts, err := o.cacheOptions(logger, name)
	if err != nil {
		return err
	}
	if err := fs.CheckMountpoint(mountpoint, logger); err != nil {
		return err
	}
	if o.pprofAddr != "" {
		if err := startPprof(o.pprofAddr, logger); err != nil {
			return fmt.Errorf("--pprof-addr: %w", err)
		}
	}
	copts.Buffers = new(bufpool.Pool) // fetched ranges, given back by the cache
	p := &parts{
		o: o, log: logger, set: fetch.NewSet(logger), union: manifestview.NewUnion(),
		fopts: fetch.Options{PlainHTTP: o.plainHTTP, Logger: logger, UserAgent: "hashfs",
			Endpoints: fetch.NewEndpoints(), Buffers: copts.Buffers},
		members: map[string]*member{},
	}
	// Offline, the cache reads from nothing but itself (no descriptor URLs
	// either), and a blob it lacks is unavailable rather than absent.
	var cacheSrc cache.Source = p.set
	if o.offline {
		p.offline = &offlineSource{}
		cacheSrc = p.offline
	}
	frs := make([]fetchRepo, len(args))
	for i, a := range args {
		if a.kind == wholeRegistry || o.offline {
			continue
		}
		if frs[i], err = p.open(a); err != nil {
			return err
		}
	}
	if !o.offline {
		var pinged []fetchRepo
		for _, fr := range frs {
			if fr != nil {
				pinged = append(pinged, fr)
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = p.ping(pctx, pinged)
		cancel()
		if err != nil {
			return err
		}
	}

	// The daemon context outlives every reader: shared fetches run under it.
	dctx, stop := context.WithCancel(context.Background())
	defer stop()
	var root *fs.Root
	copts.OnQuarantine = func(d digestT) {
		if root != nil {
			root.Invalidate(d)
		}
	}
	c, err := cache.Open(dctx, cacheSrc, copts)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer c.Close()
	setMemoryLimit(int64(o.memoryLimit), c.MemoryBytes(), logger)
	p.cache = c
	if p.offline != nil {
		p.offline.cache = c
	}
	if !o.offline && o.descURLs {
		p.set.Add(newDescriptorURLs(p.union.Lookup, p.fopts))
	}
	for i, a := range args {
		if a.kind == wholeRegistry {
			continue
		}
		repoName := a.ref
		if frs[i] != nil {
			repoName = frs[i].Name()
		}
		p.add(a.path, repoName, frs[i])
	}
	if o.offline {
		logger.Info("offline: serving only what is cached, with the last known tags")
	}
	cfg := fs.Config{Cache: c, TagTTL: o.tagTTL, Logger: logger,
		LayerIndexDir: filepath.Join(copts.Dir, "layerindex"), LayerIndexMax: layerIndexBudget(copts.MaxSize)}
	if len(args) == 1 && args[0].kind != wholeRegistry {
		m := p.all()[0]
		cfg.Repo, cfg.Stater = m.repo, m.stat
	} else {
		ns := newNamespace(p, registries, o.tagTTL, len(args) == 1)
		for _, host := range registries {
			// The catalog's first repositories join the root sha256/ now.
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			ns.catalog(cctx, host)
			cancel()
		}
		cfg.Namespace, cfg.Index = ns, p.union
	}
	st := &statusSource{repo: name, mountpoint: mountpoint, cacheDir: copts.Dir,
		started: time.Now(), parts: p, cache: c}
	cfg.Status = st.json
	root = fs.NewRoot(cfg)
	st.root = root
	if o.metricsAddr != "" {
		if err := startMetrics(o.metricsAddr, st, logger); err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
	}
	srv, err := fs.Mount(mountpoint, root, fs.MountOptions{
		FsName:     "hashfs:" + fsName(args),
		AllowOther: o.allowOther,
		FuseDebug:  o.fuseDebug,
		Logger:     logger,
	})
	if err != nil {
		return err
	}
	logger.Info("mounted", "sources", name, "mountpoint", mountpoint,
		"verify", c.Mode().String(), "cache_dir", copts.Dir)
	if ready != nil {
		ready()
	}
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
		logger.Info("unmounted", "mountpoint", mountpoint)
	case <-ctx.Done():
		logger.Info("signal received, unmounting", "mountpoint", mountpoint)
		if err := unmount(srv, mountpoint, logger); err != nil {
			return err
		}
		<-done
	}
	return nil
}

// fsName is the mount's source column in /proc/mounts: the one source,
// or the first and how many more.
func fsName(args []sourceArg) string {
	first := args[0].ref
	if args[0].kind == layoutSource {
		first = "oci:" + first
	}
	if len(args) == 1 {
		return first
	}
	return fmt.Sprintf("%s+%d", first, len(args)-1)
}

// unmount retries briefly while the mount is busy, then detaches it lazily
// so the daemon never exits leaving a dead mountpoint behind.
func unmount(srv interface{ Unmount() error }, mountpoint string, logger *slog.Logger) error {
	var err error
	for i := 0; i < 10; i++ {
		if err = srv.Unmount(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	logger.Warn("mount busy, detaching lazily", "mountpoint", mountpoint, "err", err)
	return fs.Detach(mountpoint)
}

// layerIndexBudget is how many bytes of layer indexes the cache directory
// keeps: a twentieth of the blob budget, as an index is about 2% of its
// layer and outlives the layer's chunks (at least 64 MiB).
func layerIndexBudget(cacheMax int64) int64 {
	return max(cacheMax/20, 64<<20)
}
