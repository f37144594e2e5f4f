package cache

import (
	"fmt"
	"time"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// Quarantine (lazy mode): a large blob that was served before it was
// verified and then failed verification answers errors wrapping
// hfserr.ErrIntegrity for Options.QuarantineTime. Its chunks are purged,
// the failure is logged at Error and Options.OnQuarantine is called so
// the filesystem can drop pages the kernel already holds. After the
// quarantine the next read starts over with fresh fetches.

// quarantineErr returns an error if k is quarantined now.
func (c *Cache) quarantineErr(k blobKey) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.blobs[k]
	if st == nil {
		return nil
	}
	if left := time.Until(st.quarUntil); left > 0 {
		return fmt.Errorf("blob %s failed verification and is quarantined for another %s: %w",
			k.d, left.Round(time.Millisecond), hfserr.ErrIntegrity)
	}
	c.tidyLocked(k, st)
	return nil
}

// quarantine marks k bad, then purges its chunks: a reader that checks
// quarantineErr after reading cannot have been handed purged bytes
// without seeing the mark.
func (c *Cache) quarantine(k blobKey, got fmt.Stringer) {
	c.mu.Lock()
	c.stateLocked(k).quarUntil = time.Now().Add(c.o.QuarantineTime)
	c.mu.Unlock()
	c.store.purge(k.d)
	c.log.Error("blob failed verification after being served: quarantined",
		"digest", k.d.String(), "repository", c.o.Repository, "size", k.size,
		"got", got.String(), "for", c.o.QuarantineTime)
	if cb := c.o.OnQuarantine; cb != nil {
		d := k.d
		c.spawn(func() { cb(d) })
	}
}
