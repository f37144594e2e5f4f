// Package cache keeps blob bytes in a verifying on-disk chunk cache.
//
// A sha256 covers a whole blob, so a chunk can only be checked on its own
// once a trusted chunk table exists: the values recorded while the whole
// blob was hashed in order and found equal to its digest (sha256's
// chaining value at each chunk's end, hashstate.go). Strict mode serves
// nothing else; lazy mode serves unverified chunks of large blobs while
// a background job finishes verification, and quarantines blobs that
// fail. See Options for the knobs.
//
// A blob's cached chunks live in one file, each at its offset in the
// blob (chunkstore.go). A chunk is trusted in a process once that
// process has hashed its bytes: when it fetched and wrote them (the
// verification hashes every byte it writes) or when it first reads them
// back, which after a restart covers every chunk once. A blob whose
// chunks are all trusted is whole: its file is exactly the digest's
// bytes, and Reader.Backing hands it out for the kernel to read directly
// (FUSE passthrough), with no check per read. What is trusted from then
// on is the cache directory itself: Open makes it 0700, owned by the
// daemon's user, and this package never writes into a whole blob's file
// again (eviction and purges unlink it). Anyone who can write there can
// change what readers get, as they could replace the daemon's binary.
// A whole blob's file is stamped (stamp.go), and a restart finds it
// whole again without hashing it while the stamp matches the file.
//
// Lock order: no lock in this package is held while another is taken.
// Each of Cache.mu (blob states), Cache.life (closing), store.mu (chunk
// index and files), tables.mu and flight.mu is taken alone; file I/O
// that creates, punches or removes blob files happens under store.mu
// only (chunk bytes are written and read outside it).
package cache

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/semaphore"

	"github.com/hashfs/hashfs/internal/bufpool"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Source is where missing bytes come from (fetch.Client satisfies it).
// FetchRange's result belongs to the caller: with Options.Buffers set,
// a verification gives it to that pool once its bytes are hashed and
// written, so a Source must not keep it.
type Source interface {
	FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error)
}

// Rejecter is a Source that can serve a blob from elsewhere. Reject is
// called when the bytes of d it gave did not hash to d: it stops using
// the source that sent them for d and reports whether another may have d.
type Rejecter interface {
	Reject(d digest.Digest) bool
}

// Options configures a Cache. Zero values take the documented defaults.
type Options struct {
	Dir            string        // created 0700 (MkdirAll then Chmod); files 0600
	MaxSize        int64         // hard byte budget for chunk data on disk (tables and documents are not counted); 0 => 10 GiB
	ChunkSize      int64         // 0 => 1 MiB; a multiple of 4 KiB from 64 KiB to 64 MiB
	Mode           Mode          // Strict (default) or Lazy
	Parallel       int           // concurrent range fetches per blob verification; 0 => 8
	LazyVerifyMax  int64         // lazy: blobs at most this size are verified whole before serving (like strict); 0 => 16 MiB
	QuarantineTime time.Duration // lazy: how long a blob that failed verification answers EIO; 0 => 30s
	// BackgroundDelay is how long a blob must go unread in lazy mode before
	// the rest of it is fetched to verify it, so that readers touching a few
	// chunks get the bandwidth first. 0 => 1s; negative => no delay.
	BackgroundDelay time.Duration
	OnQuarantine    func(d digest.Digest)
	Logger          *slog.Logger
	Repository      string // for log lines only
	// Recheck makes Open ignore stamps (stamp.go): after a restart every
	// cached chunk is hashed against its table before it is served, also
	// those of whole blobs whose files have not changed since.
	Recheck bool
	// Buffers, if set, is the pool the Source's FetchRange results come
	// from: once a verification has hashed and written a span's bytes it
	// gives them back there (see fetch.Options.Buffers).
	Buffers *bufpool.Pool
}

const (
	defaultMaxSize    = 10 << 30
	defaultChunkSize  = 1 << 20
	minChunkSize      = 64 << 10
	maxChunkSize      = 64 << 20
	defaultParallel   = 8
	defaultLazyVerify = 16 << 20
	defaultQuarantine = 30 * time.Second
	// failMemory is how long a failed strict verification is remembered,
	// so the kernel re-issuing readahead does not multiply fetches.
	failMemory = time.Second
	// maxBackground bounds lazy background verifications across the cache.
	maxBackground = 2
)

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, fmt.Errorf("cache: no directory: %w", hfserr.ErrInvalid)
	}
	if o.MaxSize == 0 {
		o.MaxSize = defaultMaxSize
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = defaultChunkSize
	}
	if o.Parallel == 0 {
		o.Parallel = defaultParallel
	}
	if o.LazyVerifyMax == 0 {
		o.LazyVerifyMax = defaultLazyVerify
	}
	if o.BackgroundDelay == 0 {
		o.BackgroundDelay = time.Second
	}
	if o.QuarantineTime == 0 {
		o.QuarantineTime = defaultQuarantine
	}
	switch {
	case o.MaxSize < 0:
		return o, fmt.Errorf("cache: max size %d: %w", o.MaxSize, hfserr.ErrInvalid)
	case !validChunkSize(o.ChunkSize):
		return o, fmt.Errorf("cache: chunk size %d: must be a multiple of 4KiB between 64KiB and 64MiB: %w", o.ChunkSize, hfserr.ErrInvalid)
	case o.Parallel < 0:
		return o, fmt.Errorf("cache: parallel %d: %w", o.Parallel, hfserr.ErrInvalid)
	case o.Mode != Strict && o.Mode != Lazy:
		return o, fmt.Errorf("cache: mode %v: %w", o.Mode, hfserr.ErrInvalid)
	case o.LazyVerifyMax < 0 || o.QuarantineTime < 0:
		return o, fmt.Errorf("cache: negative lazy limits: %w", hfserr.ErrInvalid)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Cache is a verifying on-disk chunk cache in front of a Source.
type Cache struct {
	o      Options
	src    Source
	log    *slog.Logger
	ctx    context.Context // daemon lifetime: shared fetches and jobs run under it
	cancel context.CancelFunc

	store     *store
	tables    *tables
	docsDir   string
	tmpDir    string
	lock      *os.File // flock held on <Dir>/lock while open
	chunks    flight[chunkFlightKey, chunkResult]
	seals     flight[digest.Digest, struct{}] // checks of cached chunks before a blob is whole
	mem       *lru.Cache[chunkKey, memChunk]  // chunks kept in memory (memchunks.go)
	bgSem     chan struct{}                   // lazy background verifications
	stampSem  chan struct{}                   // stamp jobs (stamp.go)
	spanSem   *semaphore.Weighted             // chunks held in spans by all verifications at once (span.go)
	window    int64                           // chunks one verification or lazy reader holds (windowChunks)
	probeRate float64                         // probeRate and bigSpanRate (spansize.go); tests lower them
	bigRate   float64
	failMem   time.Duration

	life   sync.Mutex
	closed bool
	wg     sync.WaitGroup

	mu     sync.Mutex
	blobs  map[blobKey]*blobState
	chains map[digest.Digest]*chain // lazy blobs hashed as they are read (chain.go)
}

var errClosed = fmt.Errorf("cache closed: %w", hfserr.ErrUnavailable)

// Open opens (creating if needed) the cache in o.Dir. ctx is the daemon's
// lifetime: shared fetches run under it, not under a reader's ctx.
// Leftover temp files are removed and the chunk index is rebuilt from
// disk, keeping only chunks of blobs with a trusted table.
func Open(ctx context.Context, src Source, o Options) (*Cache, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if src == nil {
		return nil, fmt.Errorf("cache: no source: %w", hfserr.ErrInvalid)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if err := os.Chmod(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	lock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	if o.ChunkSize, err = adoptChunkSize(o.Dir, o.ChunkSize, o.Logger); err != nil {
		return nil, err
	}
	sub := func(name string) string { return filepath.Join(o.Dir, name) }
	if err := os.RemoveAll(sub("tmp")); err != nil {
		return nil, fmt.Errorf("cache: clearing temp files: %w", err)
	}
	for _, name := range []string{"chunks", "tables", "docs", "tmp"} {
		if err := os.MkdirAll(sub(name), 0o700); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
		if err := os.Chmod(sub(name), 0o700); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	log := o.Logger.With("component", "cache")
	c := &Cache{
		o: o, src: src, log: log, lock: lock,
		store:     newStore(sub("chunks"), sub("tmp"), o.MaxSize, o.ChunkSize, log),
		tables:    newTables(sub("tables"), sub("tmp"), o.ChunkSize, log),
		docsDir:   sub("docs"),
		tmpDir:    sub("tmp"),
		bgSem:     make(chan struct{}, maxBackground),
		stampSem:  make(chan struct{}, maxStamping),
		window:    windowChunks(o.ChunkSize, o.Parallel),
		probeRate: probeRate, bigRate: bigSpanRate,
		failMem: failMemory,
		blobs:   map[blobKey]*blobState{},
		chains:  map[digest.Digest]*chain{},
	}
	c.store.recheck = o.Recheck
	c.spanSem = semaphore.NewWeighted(chunksInFlight(c.window))
	c.store.chained = c.chainCheck
	c.mem, _ = lru.NewWithEvict(memChunks(o.ChunkSize, c.window), c.leave)
	sizes, err := c.tables.scan()
	if err != nil {
		return nil, fmt.Errorf("cache: reading tables: %w", err)
	}
	removed, stamped, err := c.store.load(sizes, o.ChunkSize)
	if err != nil {
		return nil, fmt.Errorf("cache: reading chunks: %w", err)
	}
	log.Info("cache opened", "dir", o.Dir, "mode", o.Mode.String(), "usage", c.store.usageBytes(),
		"max", o.MaxSize, "verified_blobs", len(sizes), "stamped_blobs", stamped, "removed_unverified_chunks", removed)
	c.ctx, c.cancel = context.WithCancel(ctx)
	ok = true
	return c, nil
}

// Close stops background work and waits for it. Readers still open get
// errors wrapping hfserr.ErrUnavailable.
func (c *Cache) Close() error {
	c.life.Lock()
	was := c.closed
	c.closed = true
	c.life.Unlock()
	if was {
		return nil
	}
	c.cancel()
	c.wg.Wait()
	return c.lock.Close()
}

// spawn runs fn in a goroutine that Close waits for. It reports false,
// without running fn, once the cache is closed.
func (c *Cache) spawn(fn func()) bool {
	c.life.Lock()
	defer c.life.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
	return true
}

// Usage returns the bytes of chunk data on disk (and being written).
func (c *Cache) Usage() int64 { return c.store.usageBytes() }

// Mode returns the verification mode.
func (c *Cache) Mode() Mode { return c.o.Mode }

// ChunkSize returns the unit of fetches and checks, in bytes.
func (c *Cache) ChunkSize() int64 { return c.o.ChunkSize }

// Status describes what the cache knows about one blob.
type Status struct {
	Size        int64
	CachedBytes int64 // bytes of d's chunks on disk
	Verified    bool  // a trusted chunk table for d at this size exists
	Quarantined bool
}

// Status reports what the cache holds for d, shown with size bytes.
func (c *Cache) Status(d digest.Digest, size int64) Status {
	st := Status{Size: size, CachedBytes: c.store.blobBytes(d)}
	if size == 0 {
		st.Verified = d == emptyDigest
	} else if tab, _ := c.table(d); tab != nil {
		st.Verified = tab.size == size
	}
	st.Quarantined = c.quarantineErr(blobKey{d, size}) != nil
	return st
}

var emptyDigest = digest.Of(nil)

// table returns d's trusted chunk table, or nil. A table file found
// corrupt is removed together with d's chunks.
func (c *Cache) table(d digest.Digest) (*table, bool) {
	tab, corrupt := c.tables.get(d)
	if corrupt {
		c.store.purge(d)
	}
	return tab, corrupt
}
