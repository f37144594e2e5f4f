package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// flight runs one call per key at a time; later callers join it. The
// call runs in its own goroutine (under the daemon's context), so a
// caller that gives up does not cancel it for the others.
type flight[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*call[V]
}

type call[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// start joins the call running for k, or starts fn via spawn.
func (f *flight[K, V]) start(k K, spawn func(func()) bool, fn func() (V, error)) *call[V] {
	f.mu.Lock()
	if c, ok := f.calls[k]; ok {
		f.mu.Unlock()
		return c
	}
	if f.calls == nil {
		f.calls = map[K]*call[V]{}
	}
	c := &call[V]{done: make(chan struct{})}
	f.calls[k] = c
	f.mu.Unlock()
	finish := func() {
		f.mu.Lock()
		delete(f.calls, k)
		f.mu.Unlock()
		close(c.done)
	}
	if !spawn(func() { c.val, c.err = fn(); finish() }) {
		c.err = errClosed
		finish()
	}
	return c
}

// wait returns the call's result, or ctx's error if ctx ends first.
func (c *call[V]) wait(ctx context.Context) (V, error) {
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

// chunkFlightKey names one fetch of a chunk. gen separates fetches
// started before a purge of the blob from those started after it.
type chunkFlightKey struct {
	d    digest.Digest
	i, n int64
	gen  uint64
}

type chunkResult struct {
	data []byte // shared: never modified
	sum  [32]byte
}

// startChunk starts (or joins) getting chunk i of blob k: from memory or
// disk if a trusted copy is there, else from the source. sem, if not
// nil, bounds the concurrent source fetches of one verification job.
func (c *Cache) startChunk(k blobKey, i int64, sem chan struct{}) *call[chunkResult] {
	off, n := chunkSpan(k.size, c.o.ChunkSize, i)
	gen := c.store.gen(k.d)
	fk := chunkFlightKey{d: k.d, i: i, n: n, gen: gen}
	return c.chunks.start(fk, c.spawn, func() (chunkResult, error) {
		return c.loadChunk(k.d, i, off, n, gen, sem)
	})
}

// loadChunk returns chunk i (bytes [off,off+n)) of d with its sha256.
// With a trusted table the bytes match it; without one they are the
// bytes this process fetched (or wrote and re-read), and the caller
// decides whether unverified bytes may be used.
func (c *Cache) loadChunk(d digest.Digest, i, off, n int64, gen uint64, sem chan struct{}) (chunkResult, error) {
	ck := chunkKey{d, i}
	var want *[32]byte
	if tab, _ := c.table(d); tab != nil {
		want = tab.sumFor(i, n)
	}
	if want != nil {
		if b, ok := c.recent.Get(ck); ok && int64(len(b)) == n {
			return chunkResult{b, *want}, nil
		}
	}
	if data, sum, ok := c.store.read(ck, n, want); ok {
		return chunkResult{data, sum}, nil
	}
	if sem != nil {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		case <-c.ctx.Done():
			return chunkResult{}, c.ctx.Err()
		}
	}
	data, err := c.src.FetchRange(c.ctx, d, off, n)
	if errors.Is(err, hfserr.ErrInvalid) {
		// A range past the end: the blob is not the size its descriptor says.
		return chunkResult{}, fmt.Errorf("%s bytes %d-%d: %v: %w", d, off, off+n-1, err, hfserr.ErrIntegrity)
	}
	if err != nil {
		return chunkResult{}, fmt.Errorf("%s bytes %d-%d: %w", d, off, off+n-1, err)
	}
	if int64(len(data)) != n {
		return chunkResult{}, fmt.Errorf("fetch %s bytes %d-%d: got %d bytes: %w", d, off, off+n-1, len(data), hfserr.ErrIntegrity)
	}
	sum := sha256.Sum256(data)
	if want != nil && sum != *want {
		c.log.Warn("chunk from registry does not match the blob's verified chunk table",
			"digest", d.String(), "repository", c.o.Repository, "chunk", i, "got", digest.Digest(sum).String())
		return chunkResult{}, fmt.Errorf("%s chunk %d: %w", d, i, hfserr.ErrIntegrity)
	}
	if !c.store.put(ck, data, sum, gen) && want != nil {
		c.recent.Add(ck, data)
	}
	return chunkResult{data, sum}, nil
}
