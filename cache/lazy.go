package cache

import (
	"errors"
	"time"
)

// Lazy mode: a blob larger than LazyVerifyMax with no chunk table is
// served chunk by chunk as reads touch it (one fetch per chunk, shared).
// Those chunks are unverified: on disk they have no table, so a restart
// deletes them. The first read starts a background job (at most
// maxBackground at once across the cache), once the blob has gone unread
// for BackgroundDelay, that gets the remaining chunks,
// reusing the cached ones, hashes the blob in order and commits the table
// on a match, which makes the chunks trusted. On a mismatch the blob is
// quarantined.

// isLazy reports whether reads of k may be served before verification.
func (c *Cache) isLazy(k blobKey) bool {
	return c.o.Mode == Lazy && k.size > c.o.LazyVerifyMax
}

// startBackground starts k's background verification unless one is
// running, recently failed, or k is quarantined.
func (c *Cache) startBackground(k blobKey) {
	now := time.Now()
	c.mu.Lock()
	st := c.stateLocked(k)
	st.lastRead = now
	if st.job != nil || now.Before(st.failUntil) || now.Before(st.quarUntil) {
		c.mu.Unlock()
		return
	}
	j := &job{done: make(chan struct{})}
	st.job = j
	c.mu.Unlock()
	if !c.spawn(func() {
		if err := c.waitIdle(k); err != nil {
			c.finishLazy(k, j, nil, err)
			return
		}
		select {
		case c.bgSem <- struct{}{}:
		case <-c.ctx.Done():
			c.finishLazy(k, j, nil, c.ctx.Err())
			return
		}
		// A reader's chain (chain.go) may have settled the blob meanwhile:
		// verified, or quarantined (a read after the quarantine starts
		// another job).
		tab, _ := c.table(k.d)
		var err error
		if tab == nil && c.quarantineErr(k) == nil {
			tab, err = c.verify(c.ctx, k)
		}
		<-c.bgSem
		c.finishLazy(k, j, tab, err)
	}) {
		c.finishLazy(k, j, nil, errClosed)
	}
}

// waitIdle returns once k has had no read for BackgroundDelay: readers
// touching a few chunks get the bandwidth, and the rest of the blob is
// fetched when they pause.
func (c *Cache) waitIdle(k blobKey) error {
	d := c.o.BackgroundDelay
	if d <= 0 {
		return nil
	}
	for {
		c.mu.Lock()
		wait := d - time.Since(c.stateLocked(k).lastRead)
		c.mu.Unlock()
		if wait <= 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return c.ctx.Err()
		}
	}
}

// lazyFailed quarantines k, served before it was found not to hash to
// its digest, and turns to another source for it.
func (c *Cache) lazyFailed(k blobKey, ie *IntegrityError) {
	c.quarantine(k, ie.Got)
	if r, ok := c.src.(Rejecter); ok {
		r.Reject(k.d) // once the quarantine ends, another source serves it
	}
}

func (c *Cache) finishLazy(k blobKey, j *job, tab *table, err error) {
	var ie *IntegrityError
	bad := errors.As(err, &ie)
	if bad {
		c.lazyFailed(k, ie)
	} else if err != nil && c.ctx.Err() == nil {
		c.log.Warn("background verification failed, will retry", "digest", k.d.String(),
			"repository", c.o.Repository, "size", k.size, "err", err)
	} else if tab != nil {
		c.log.Debug("blob verified", "digest", k.d.String(), "size", k.size)
	}
	c.mu.Lock()
	st := c.stateLocked(k)
	st.job = nil
	if err != nil && !bad {
		st.failErr, st.failUntil = err, time.Now().Add(c.failMem)
	}
	c.tidyLocked(k, st)
	c.mu.Unlock()
	j.tab, j.err = tab, err
	close(j.done)
}
