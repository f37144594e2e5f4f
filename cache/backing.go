package cache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/hashfs/hashfs/internal/digest"
)

// A blob is whole on disk when its file holds every chunk and each one
// matched the trusted table in this process: hashed when it was fetched
// and written (by the verification, or checked against the table), or
// read back and hashed since this process started. Its file then holds
// exactly the bytes of the digest, and the kernel may read it directly
// for FUSE passthrough (Reader.Backing). From then on the bytes are
// trusted as the cache directory holds them: it is 0700 and owned by the
// daemon, and a whole blob's file is never written again, only unlinked.

// Backing returns the blob's file, open read-only, if the blob is whole
// on disk: a reader may then read it instead of calling ReadAt. In
// strict mode (and lazy mode for blobs up to LazyVerifyMax) it first
// waits for the blob to verify, as the first ReadAt would; chunks cached
// before this process started are hashed against the table first, on
// every core. It returns nil with no error when the blob cannot be
// served that way (lazy and not verified yet, missing chunks, quarantine,
// a failed verification); errors are ctx's or the cache closing. The
// caller closes the file; the Reader's pin keeps the blob from eviction.
func (r *Reader) Backing(ctx context.Context) (*os.File, error) {
	c := r.c
	k := blobKey{r.d, r.size}
	if r.size <= 0 || c.quarantineErr(k) != nil {
		return nil, nil
	}
	tab, _ := c.table(k.d)
	if tab == nil {
		if c.isLazy(k) {
			return nil, nil
		}
		var err error
		if tab, err = c.waitVerified(ctx, k); err != nil {
			if ctx.Err() != nil || c.ctx.Err() != nil {
				return nil, err
			}
			return nil, nil // reads report the failure
		}
	}
	if tab.size != k.size {
		return nil, nil
	}
	f, todo, stamp := c.store.seal(k.d, tab)
	if f == nil && todo != nil {
		if _, err := c.seals.start(k.d, c.spawn, func() (struct{}, error) {
			c.checkChunks(k.d, tab, todo)
			return struct{}{}, nil
		}).wait(ctx); err != nil {
			return nil, err
		}
		f, _, stamp = c.store.seal(k.d, tab)
	}
	if stamp {
		c.startStamp(k.d)
	}
	return f, nil
}

// checkChunks hashes the given cached chunks of d against tab, one
// worker per core, while the kernel reads the file ahead; chunks that do
// not match are dropped.
func (c *Cache) checkChunks(d digest.Digest, tab *table, todo []int64) {
	c.store.readAhead(d)
	work := make(chan int64)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, tab.chunkSize)
			for i := range work {
				_, n := chunkSpan(tab.size, tab.chunkSize, i)
				c.store.read(chunkKey{d, i}, n, tab, buf)
			}
		}()
	}
	for _, i := range todo {
		if c.ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
}

// seal opens d's file read-only if every chunk is cached and matched
// tab in this process (or its stamp says so), and marks the blob whole;
// stamp is true for the one caller that is to stamp the file next
// (writeStamp), if the blob is big enough to need one (stampMin).
// Otherwise, if every chunk is cached, it returns the chunks not yet
// checked; if some are missing, nothing.
func (s *store) seal(d digest.Digest, tab *table) (f *os.File, todo []int64, stamp bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	bf, ok := s.lru.Peek(d)
	if !ok || int64(len(bf.chunks)) != int64(len(tab.sums)) {
		return nil, nil, false
	}
	if !bf.whole {
		// In file order: the workers then read the file as the kernel
		// reads it ahead (readAhead), not at random.
		for i := range int64(len(tab.sums)) {
			e := bf.chunks[i]
			switch {
			case e == nil || !tab.spans(i, e.size):
				return nil, nil, false // not a chunk of this blob: reads replace it
			case !e.verified:
				todo = append(todo, i)
			}
		}
		if len(todo) > 0 {
			return nil, todo, false
		}
	}
	f, err := os.Open(s.path(d))
	if err != nil {
		return nil, nil, false
	}
	seen, err := fileStamp(d, f)
	if err != nil || seen.size != tab.size {
		f.Close()
		return nil, nil, false
	}
	if !bf.whole {
		bf.whole, bf.seen = true, seen
	}
	stamp = !bf.stamping && tab.size >= stampMin
	bf.stamping = true
	s.lru.Get(d)
	return f, nil, stamp
}

// readAhead asks the kernel to read d's file into the page cache.
func (s *store) readAhead(d digest.Digest) {
	s.mu.Lock()
	bf, ok := s.lru.Peek(d)
	if !ok {
		s.mu.Unlock()
		return
	}
	f, err := s.openLocked(d, bf, false)
	s.mu.Unlock()
	if err != nil {
		return
	}
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_WILLNEED)
	s.mu.Lock()
	s.doneLocked(d, bf)
	s.mu.Unlock()
}

// BackingProbe opens a small file of the cache directory read-only, for
// a filesystem to ask the kernel whether it accepts files from there as
// passthrough backing files.
func (c *Cache) BackingProbe() (*os.File, error) {
	f, err := os.Open(filepath.Join(c.o.Dir, "chunk-size"))
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return f, nil
}
