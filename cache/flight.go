package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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
	c, fresh := f.claim(k)
	if fresh && !spawn(func() { v, err := fn(); f.settle(k, c, v, err) }) {
		var zero V
		f.settle(k, c, zero, errClosed)
	}
	return c
}

// claim returns the call running for k (fresh false), or registers a
// new one (fresh true) that the caller must settle: a caller that gets
// several keys' results from one operation claims each first.
func (f *flight[K, V]) claim(k K) (c *call[V], fresh bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.calls[k]; ok {
		return c, false
	}
	if f.calls == nil {
		f.calls = map[K]*call[V]{}
	}
	c = &call[V]{done: make(chan struct{})}
	f.calls[k] = c
	return c, true
}

// settle gives a claimed call its result and lets later callers start
// a new one.
func (f *flight[K, V]) settle(k K, c *call[V], v V, err error) {
	c.val, c.err = v, err
	f.mu.Lock()
	delete(f.calls, k)
	f.mu.Unlock()
	close(c.done)
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

// doneWithin reports whether the call is done, waiting at most d (or
// until ctx ends) for it.
func (c *call[V]) doneWithin(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// chunkFlightKey names one fetch of a chunk. gen separates fetches
// started before a purge of the blob from those started after it.
type chunkFlightKey struct {
	d    digest.Digest
	i, n int64
	gen  uint64
}

type chunkResult struct {
	data     []byte  // shared: never modified
	verified bool    // data matched the blob's chunk table
	rb       *runBuf // data's buffer, if a read-ahead run's: acquire before reading data
}

// startChunk starts (or joins) getting chunk i of blob k: from memory or
// disk if a trusted copy is there, else from the source.
func (c *Cache) startChunk(k blobKey, i int64) *call[chunkResult] {
	off, n := chunkSpan(k.size, c.o.ChunkSize, i)
	gen := c.store.gen(k.d)
	fk := chunkFlightKey{d: k.d, i: i, n: n, gen: gen}
	return c.chunks.start(fk, c.spawn, func() (chunkResult, error) {
		return c.loadChunk(k, i, off, n, gen)
	})
}

// loadChunk returns chunk i (bytes [off,off+n)) of d. With a trusted
// table the bytes match it (verified); without one they are the bytes
// this process fetched (or wrote and re-read), and the caller decides
// whether unverified bytes may be used.
func (c *Cache) loadChunk(k blobKey, i, off, n int64, gen uint64) (chunkResult, error) {
	d := k.d
	ck := chunkKey{d, i}
	tab, _ := c.table(d)
	if tab != nil && !tab.spans(i, n) {
		tab = nil // a descriptor that lies about the size: never verified
	}
	if tab != nil {
		if m, ok := c.memGet(ck, n, tab); ok { // verified: no buffer count to hold
			return chunkResult{data: m.data, verified: true}, nil
		}
	}
	if data, _, ok := c.store.read(ck, n, tab, nil); ok {
		return chunkResult{data: data, verified: tab != nil}, nil
	}
	data, err := c.fetch(d, off, n, nil)
	if err != nil {
		return chunkResult{}, err
	}
	return c.keepChunk(k, i, data, gen, tab, nil)
}

// keepChunk stores chunk i of blob k, just fetched, and returns it:
// checked against tab if the blob has a trusted table, else as
// unverified bytes, hashed into the blob's chain if they are the next
// it needs (chain.go), or else kept in memory until the chain gets there
// (Cache.leave hashes them if they leave memory first). rb, if not nil,
// is data's buffer, on which the caller holds a count.
func (c *Cache) keepChunk(k blobKey, i int64, data []byte, gen uint64, tab *table, rb *runBuf) (chunkResult, error) {
	d := k.d
	ck := chunkKey{d, i}
	if tab == nil {
		keep := func(e *entry, ahead bool) {
			if rb.acquire() { // the caller's count is held: this cannot fail
				c.mem.Add(ck, memChunk{data: data, gen: gen, rb: rb, ent: e, ahead: ahead})
			}
		}
		// Written before the chain is taken: a write can wait for a busy
		// disk, and the chain's next chunks would wait with it.
		e := c.store.put(d, i, data, nil, gen, false, true)[0]
		if ch := c.chainFor(k, i, gen); ch != nil {
			ch.add(i, chunkCount(k.size, c.o.ChunkSize), data, e)
			c.extend(k, ch, c.window)
			ch.mu.Unlock()
			// Only now may other readers find it: a reader at the blob's
			// end learns of a mismatch before it has the last bytes.
			keep(e, false)
		} else {
			// Ahead of the chain: no hash of its own yet. The chain, or a
			// background verification, hashes it from memory when it gets
			// there; if it leaves memory first, it gets one then (leave).
			keep(e, true)
			// The chain may have stopped short of this chunk while it
			// was on its way to memory: then it goes on from here.
			c.resume(k, i, gen)
		}
		return chunkResult{data: data, rb: rb}, nil
	}
	if !tab.check(i, data) {
		c.log.Warn("chunk from registry does not match the blob's verified chunk table",
			"digest", d.String(), "repository", c.o.Repository, "chunk", i)
		return chunkResult{}, fmt.Errorf("%s chunk %d: %w", d, i, hfserr.ErrIntegrity)
	}
	if c.store.put(d, i, data, nil, gen, true, true)[0] == nil {
		b := data
		if rb != nil {
			b = bytes.Clone(data) // kept past the run's buffer
		}
		c.mem.Add(ck, memChunk{data: b, gen: gen, verified: true})
	}
	return chunkResult{data: data, verified: true, rb: rb}, nil
}

// fetch gets bytes [off, off+n) of d from the source, under the
// daemon's context; sem, if not nil, bounds the fetches of one job.
func (c *Cache) fetch(d digest.Digest, off, n int64, sem chan struct{}) ([]byte, error) {
	if sem != nil {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		case <-c.ctx.Done():
			return nil, c.ctx.Err()
		}
	}
	data, err := c.src.FetchRange(c.ctx, d, off, n)
	if errors.Is(err, hfserr.ErrInvalid) {
		// A range past the end: the blob is not the size its descriptor says.
		return nil, fmt.Errorf("%s bytes %d-%d: %v: %w", d, off, off+n-1, err, hfserr.ErrIntegrity)
	}
	if err != nil {
		return nil, fmt.Errorf("%s bytes %d-%d: %w", d, off, off+n-1, err)
	}
	if int64(len(data)) != n {
		return nil, fmt.Errorf("fetch %s bytes %d-%d: got %d bytes: %w", d, off, off+n-1, len(data), hfserr.ErrIntegrity)
	}
	return data, nil
}
