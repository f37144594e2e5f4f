package main

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/fetch"
	"github.com/hashfs/hashfs/fs"
	"github.com/hashfs/hashfs/manifestview"
)

// serve mounts repo at mountpoint and blocks until the mount goes away
// (umount, fusermount3 -u) or ctx ends (SIGINT/SIGTERM), then unmounts.
// ready, if not nil, is called once the mount is live.
func serve(ctx context.Context, o *options, repo, mountpoint string, ready func()) error {
	logger := o.logger()
	if o.memoryLimit > 0 {
		debug.SetMemoryLimit(int64(o.memoryLimit))
	}
	client, err := fetch.New(repo, fetch.Options{PlainHTTP: o.plainHTTP, Logger: logger, UserAgent: "hashfs"})
	if err != nil {
		return err
	}
	copts, err := o.cacheOptions(logger, client.Repository())
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
	var src source = registrySource{client}
	offline := &offlineSource{}
	if o.offline {
		src = offline
	} else {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = client.Ping(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("registry for %s: %w (--offline serves what is cached)", client.Repository(), err)
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
	c, err := cache.Open(dctx, src, copts)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer c.Close()
	offline.cache = c
	tagsFile := newTagsFile(copts.Dir, client.Repository(), logger)
	repoView := manifestview.NewRepo(src, c, manifestview.RepoOptions{
		KnownTags: tagsFile.load(),
		OnTags:    tagsFile.save,
		TagTTL:    o.tagTTL,
		Logger:    logger,
		// Docker Hub counts manifest GETs against its pull rate limit and
		// HEADs not; elsewhere a GET costs the same round trip and saves
		// fetching the manifest again when its tree is browsed.
		ResolveTagsWithGet: !strings.HasPrefix(client.Repository(), "index.docker.io/"),
	})
	if o.offline {
		logger.Info("offline: serving only what is cached, with the last known tags")
	}
	st := &statusSource{repo: client.Repository(), mountpoint: mountpoint, cacheDir: copts.Dir,
		started: time.Now(), client: client, cache: c}
	root = fs.NewRoot(fs.Config{
		Repo:   repoView,
		Cache:  c,
		Stater: stater{src: src, repo: repoView},
		TagTTL: o.tagTTL,
		Logger: logger,
		Status: st.json,
	})
	st.root = root
	if o.metricsAddr != "" {
		if err := startMetrics(o.metricsAddr, st, logger); err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
	}
	srv, err := fs.Mount(mountpoint, root, fs.MountOptions{
		FsName:     "hashfs:" + client.Repository(),
		AllowOther: o.allowOther,
		FuseDebug:  o.fuseDebug,
		Logger:     logger,
	})
	if err != nil {
		return err
	}
	logger.Info("mounted", "repository", client.Repository(), "mountpoint", mountpoint,
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
