package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// blobKey names a blob as a reader sees it: a descriptor that lies about
// the size gets its own verification and quarantine state.
type blobKey struct {
	d    digest.Digest
	size int64
}

// IntegrityError reports that a blob's bytes, hashed whole, are not its
// digest. It wraps hfserr.ErrIntegrity.
type IntegrityError struct {
	Digest digest.Digest
	Size   int64
	Got    digest.Digest // what the bytes that arrived hash to
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("blob %s (%d bytes): content hashes to %s", e.Digest, e.Size, e.Got)
}

func (e *IntegrityError) Unwrap() error { return hfserr.ErrIntegrity }

// job is one whole-blob verification; readers wait on done.
type job struct {
	done chan struct{}
	tab  *table
	err  error
}

// verify gets every chunk of k (from the cache or the source, in spans
// of a few chunks, see span.go), hashes them in order and, if the blob
// hashes to its digest, commits the chunk table. Chunks are cached as
// they arrive, so they are unverified until the table exists; a
// mismatch purges them.
func (c *Cache) verify(ctx context.Context, k blobKey) (*table, error) {
	cs := c.o.ChunkSize
	n := chunkCount(k.size, cs)
	w := c.window
	// Chunks per request: small, or big on a fast source (spansize.go).
	sizer := newSpanSizer(cs, w, c.probeRate, c.bigRate)
	sem := make(chan struct{}, c.o.Parallel)
	// Chunks whose bytes are held (fetching, waiting to be hashed or
	// being written): at most w in memory, and disk writes pace fetches.
	slots := semaphore.NewWeighted(w)
	ring := make([]*call[spanResult], w)
	sums := make([][32]byte, n) // chaining values (hashstate.go)
	ents := make([]*entry, n)
	type written struct {
		first  int64
		stored chan []*entry
	}
	var writes []written
	// The spans started and not yet hashed, in order, with the hasher's
	// share of their place in the cache-wide bound (chunksInFlight).
	type started struct {
		end  int64
		hold *spanHold
	}
	var held []started
	defer func() {
		for _, s := range held {
			s.hold.done()
		}
	}()
	h := sha256.New()
	var start int64 // chunks already hashed, by the chain of a lazy reader (chain.go)
	if c.isLazy(k) {
		if ch := c.takeChain(k, c.store.gen(k.d)); ch != nil {
			h, start = ch.h, ch.next
			copy(sums, ch.sums[:start])
			copy(ents, ch.ents)
		}
	}
	next := start
	// startSpans starts spans while the window ahead of chunk i has room.
	startSpans := func(i int64) error {
		for next < n {
			per, ok := sizer.next(next - start)
			end := min(n, next+per)
			if !ok || end > i+w {
				break
			}
			hold, err := c.holdSpan(ctx, len(held) > 0, end-next)
			if err != nil {
				return err
			}
			if hold == nil {
				break // hash what is held first
			}
			if err := slots.Acquire(ctx, end-next); err != nil {
				hold.done()
				hold.done()
				return err
			}
			cl := c.startSpan(k, next, end, sem, slots, hold)
			for j := next; j < end; j++ {
				ring[j%w] = cl
			}
			held = append(held, started{end, hold})
			next = end
		}
		return nil
	}
	for i := start; i < n; i++ {
		if err := startSpans(i); err != nil {
			return nil, err
		}
		if i == start && sizer.state == probing && !ring[i%w].doneWithin(ctx, sizer.probeWait()) {
			// The lone first span cannot be fast any more: small spans,
			// started now rather than after it.
			sizer.giveUp()
			if err := startSpans(i); err != nil {
				return nil, err
			}
		}
		cl := ring[i%w]
		ring[i%w] = nil
		res, err := cl.wait(ctx)
		if err != nil {
			return nil, err
		}
		if i == res.first {
			sizer.observe(int64(len(res.ents)), len(res.data), res.took, res.stored != nil)
		}
		h.Write(res.chunk(i))
		if res.stored == nil {
			ents[i] = res.ents[i-res.first]
		} else if i == res.first {
			writes = append(writes, written{res.first, res.stored})
		}
		if i < n-1 {
			sums[i] = chainingValue(h)
		}
		if i+1 == held[0].end { // the hasher is done with this span's bytes
			held[0].hold.done()
			held = held[1:]
		}
	}
	var got digest.Digest
	h.Sum(got[:0])
	if got != k.d {
		return nil, &IntegrityError{Digest: k.d, Size: k.size, Got: got}
	}
	if n > 0 {
		sums[n-1] = got
	}
	for _, wr := range writes {
		select {
		case e := <-wr.stored:
			copy(ents[wr.first:], e)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	tab := &table{size: k.size, chunkSize: cs, sums: sums}
	c.tables.put(k.d, tab)
	c.store.markVerified(k.d, 0, ents) // hashed just now: no second hash
	return tab, nil
}

// blobState is what the cache remembers about one blob between reads.
// Guarded by Cache.mu.
type blobState struct {
	job       *job
	failErr   error // the last failed verification, remembered until failUntil
	failUntil time.Time
	quarUntil time.Time // lazy: the blob answers ErrIntegrity until then
	lastRead  time.Time // lazy: the last read served before verification
}

func (c *Cache) stateLocked(k blobKey) *blobState {
	st := c.blobs[k]
	if st == nil {
		st = &blobState{}
		c.blobs[k] = st
	}
	return st
}

// tidyLocked forgets a blob state that no longer says anything.
func (c *Cache) tidyLocked(k blobKey, st *blobState) {
	now := time.Now()
	if st.job == nil && !now.Before(st.failUntil) && !now.Before(st.quarUntil) {
		delete(c.blobs, k)
	}
}

// strictJob returns the running verification of k, starting one unless
// a recent one failed: then it returns that failure.
func (c *Cache) strictJob(k blobKey) (*job, error) {
	c.mu.Lock()
	st := c.stateLocked(k)
	if j := st.job; j != nil {
		c.mu.Unlock()
		return j, nil
	}
	if time.Now().Before(st.failUntil) {
		err := st.failErr
		c.mu.Unlock()
		return nil, err
	}
	j := &job{done: make(chan struct{})}
	st.job = j
	c.mu.Unlock()
	if !c.spawn(func() {
		tab, err := c.verify(c.ctx, k)
		for tries := 0; tries < maxRejects && c.rejected(k, err); tries++ {
			bad := err
			tab, err = c.verify(c.ctx, k)
			var ie *IntegrityError
			if err != nil && !errors.As(err, &ie) && (errors.Is(err, hfserr.ErrNotFound) || errors.Is(err, hfserr.ErrIntegrity)) {
				err = bad // no other source had it: the verdict is the mismatch
				break
			}
		}
		c.finishStrict(k, j, tab, err)
	}) {
		c.finishStrict(k, j, nil, errClosed)
	}
	return j, nil
}

// maxRejects bounds how many times one verification moves on to another
// source after bytes that did not verify.
const maxRejects = 4

// rejected reports whether err is a failed verification of k that the
// source can answer with another copy (a Rejecter with one more source):
// the bad chunks are gone and the caller may verify again.
func (c *Cache) rejected(k blobKey, err error) bool {
	var ie *IntegrityError
	r, ok := c.src.(Rejecter)
	if !ok || !errors.As(err, &ie) {
		return false
	}
	c.store.purge(k.d)
	if !r.Reject(k.d) {
		return false
	}
	c.log.Warn("blob failed verification, trying another source", "digest", k.d.String(),
		"size", k.size, "got", ie.Got.String())
	return true
}

func (c *Cache) finishStrict(k blobKey, j *job, tab *table, err error) {
	var ie *IntegrityError
	switch {
	case errors.As(err, &ie):
		c.store.purge(k.d)
		c.log.Warn("blob failed verification, not serving it", "digest", k.d.String(),
			"repository", c.o.Repository, "size", k.size, "got", ie.Got.String())
	case err != nil && c.ctx.Err() == nil:
		c.log.Warn("blob verification failed", "digest", k.d.String(),
			"repository", c.o.Repository, "size", k.size, "err", err)
	case err == nil:
		c.log.Debug("blob verified", "digest", k.d.String(), "size", k.size)
	}
	c.mu.Lock()
	st := c.stateLocked(k)
	st.job = nil
	if err != nil {
		st.failErr, st.failUntil = err, time.Now().Add(c.failMem)
	}
	c.tidyLocked(k, st)
	c.mu.Unlock()
	j.tab, j.err = tab, err
	close(j.done)
}

// waitVerified returns k's trusted table, verifying the whole blob first
// if needed. ctx ends only the wait, never the shared job.
func (c *Cache) waitVerified(ctx context.Context, k blobKey) (*table, error) {
	j, err := c.strictJob(k)
	if err != nil {
		return nil, err
	}
	select {
	case <-j.done:
		return j.tab, j.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
