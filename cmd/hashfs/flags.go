package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/internal/bufpool"
	"github.com/hashfs/hashfs/internal/units"
)

// options are the flags shared by mount and demo.
type options struct {
	cacheDir       string
	cacheMax       units.Size
	verify         string
	chunkSize      units.Size
	parallel       int
	lazyVerifyMax  units.Size
	quarantineTime time.Duration
	tagTTL         time.Duration
	plainHTTP      bool
	allowOther     bool
	debug          bool
	fuseDebug      bool
	memoryLimit    units.Size
	pprofAddr      string
	logFormat      string
	daemon         bool
	offline        bool
	quiet          bool // commands whose output is their result log warnings only
	metricsAddr    string
	logFile        string
	hostsDir       string
	descURLs       bool
	recheck        bool
}

func defaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "hashfs")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "hashfs")
	}
	return filepath.Join(os.TempDir(), "hashfs-cache")
}

func (o *options) register(f *pflag.FlagSet) {
	o.cacheMax, o.chunkSize, o.lazyVerifyMax, o.memoryLimit = 10<<30, 1<<20, 16<<20, 80<<20
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "directory of the on-disk chunk cache (created 0700)")
	f.Var(&o.cacheMax, "cache-max-size", "hard budget for cached blob bytes, e.g. 512MiB, 20G; least recently used blobs are evicted, never one an open file is reading")
	f.StringVar(&o.verify, "verify", "strict", "strict: serve only bytes of blobs verified whole (or chunks matching a trusted chunk table); lazy: serve chunks as they arrive and finish verification in the background, quarantining blobs that do not match")
	f.Var(&o.chunkSize, "chunk-size", "unit of lazy fetches and of checks against a blob's chunk table, a multiple of 4KiB (verification asks for spans of up to 4MiB)")
	f.IntVar(&o.parallel, "parallel", 16, "concurrent range requests per blob; a blob's verification holds at most 2 × parallel chunks in memory (2 × parallel × 4MiB with chunks over 4MiB)")
	f.BoolVar(&o.recheck, "recheck", false, "after a restart, hash every cached chunk against its blob's table before serving it, also where the blob's file has not changed since this cache verified it (by default such files, stamped with their inode, size and ctime after an fsync, are served as they are)")
	f.Var(&o.lazyVerifyMax, "lazy-verify-max", "with --verify lazy, blobs up to this size are still verified whole before serving")
	f.DurationVar(&o.quarantineTime, "quarantine-time", 30*time.Second, "with --verify lazy, how long a blob that failed verification answers EIO before it is fetched again")
	f.DurationVar(&o.tagTTL, "tag-ttl", time.Minute, "how long a tag's answer is used before it is resolved again (the last known answer is kept while the registry is down)")
	f.BoolVar(&o.plainHTTP, "plain-http", false, "use plain HTTP for a non-loopback registry (loopback registries use it automatically)")
	f.BoolVar(&o.allowOther, "allow-other", false, "let other users read the mount (needs user_allow_other in /etc/fuse.conf when not root); permissions are enforced")
	f.BoolVar(&o.debug, "debug", false, "log every registry request and cache decision")
	f.BoolVar(&o.offline, "offline", false, "never contact the registry: serve only what is cached, with the last known tags")
	f.BoolVar(&o.daemon, "daemon", false, "run in the background: return once the mount is ready (exit 0) or failed (non-zero, with the reason)")
	f.StringVar(&o.logFile, "log-file", "", "with --daemon, append the daemon's logs to this file (default: discard)")
	f.StringVar(&o.logFormat, "log-format", "text", "log lines as text (key=value) or json")
	f.BoolVar(&o.fuseDebug, "fuse-debug", false, "log every FUSE request (very verbose)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address at /metrics, e.g. 127.0.0.1:9464; off when empty")
	f.StringVar(&o.pprofAddr, "pprof-addr", "", "serve Go profiles (goroutines, heap, CPU) on this address, e.g. 127.0.0.1:6060; off when empty")
	f.BoolVar(&o.descURLs, "descriptor-urls", true, "fetch blobs whose descriptors list http(s) \"urls\" (foreign layers) from those URLs too, verified like any other source; --descriptor-urls=false keeps a manifest from making the daemon send requests to hosts it names")
	f.StringVar(&o.hostsDir, "hosts-dir", "/etc/containerd/certs.d", "containerd hosts.toml directory: mirrors listed for a registry (<dir>/<host>/hosts.toml) are tried before it")
	f.Var(&o.memoryLimit, "memory-limit", "soft memory limit of the daemon's Go runtime (GOMEMLIMIT), raised if needed to the blob bytes the cache keeps in memory plus 16MiB (what --chunk-size and --parallel keep in flight, and with --verify lazy the chunks kept for its readers); 0: none")
}

func (o *options) cacheOptions(logger *slog.Logger, repo string) (cache.Options, error) {
	if o.logFormat != "text" && o.logFormat != "json" {
		return cache.Options{}, fmt.Errorf("--log-format %q: want text or json", o.logFormat)
	}
	mode, err := cache.ParseMode(o.verify)
	if err != nil {
		return cache.Options{}, fmt.Errorf("--verify: %w", err)
	}
	if o.chunkSize < 64<<10 || o.chunkSize > 64<<20 || o.chunkSize%(4<<10) != 0 {
		return cache.Options{}, fmt.Errorf("--chunk-size %d: must be a multiple of 4KiB between 64KiB and 64MiB", o.chunkSize)
	}
	if o.parallel < 1 || o.parallel > 64 {
		return cache.Options{}, fmt.Errorf("--parallel %d: must be between 1 and 64", o.parallel)
	}
	return cache.Options{
		Dir:            o.cacheDir,
		MaxSize:        int64(o.cacheMax),
		ChunkSize:      int64(o.chunkSize),
		Mode:           mode,
		Parallel:       o.parallel,
		LazyVerifyMax:  int64(o.lazyVerifyMax),
		QuarantineTime: o.quarantineTime,
		Recheck:        o.recheck,
		Logger:         logger,
		Repository:     repo,
	}, nil
}

func (o *options) logger() *slog.Logger {
	level := slog.LevelInfo
	if o.quiet {
		level = slog.LevelWarn
	}
	if o.debug {
		level = slog.LevelDebug
	}
	return newLogger(os.Stderr, o.logFormat, level)
}

// quietLogger is for commands whose output is their result.
func quietLogger() *slog.Logger { return newLogger(os.Stderr, "text", slog.LevelWarn) }

func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	ho := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// tempCache points o at a fresh temporary cache directory unless the user
// gave --cache-dir, for commands whose cache should not outlive them.
// The returned function removes it (and does nothing otherwise).
func (o *options) tempCache(cmd *cobra.Command, prefix string) (cleanup func(), err error) {
	if cmd.Flags().Changed("cache-dir") {
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	o.cacheDir = dir
	return func() { os.RemoveAll(dir) }, nil
}

// strictCache opens a strict cache on o's cache directory reading from
// src, for commands that write out only verified bytes (cat, pull).
func (o *options) strictCache(ctx context.Context, logger *slog.Logger, src cache.Source, name string, bufs *bufpool.Pool) (*cache.Cache, error) {
	copts, err := o.cacheOptions(logger, name)
	if err != nil {
		return nil, err
	}
	copts.Mode, copts.Buffers = cache.Strict, bufs
	return cache.Open(ctx, src, copts)
}
