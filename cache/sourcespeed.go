package cache

import (
	"sync/atomic"
	"time"
)

// sourceSpeed is what the cache has learned of its source from range
// requests that ran alone: with others in flight on a 2-core machine a
// request measures its share of the CPU, not the link (see spanSizer).
// A lazy reader's readahead asks for runs of chunks in one request
// only on a source that proved fast, and single chunks otherwise.
type sourceSpeed struct {
	active  atomic.Int64 // requests in flight
	started atomic.Int64 // requests ever started
	verdict atomic.Int32 // speedUnknown, speedFast or speedSlow
	rate    float64      // probeRate; tests lower it
}

const (
	speedUnknown int32 = iota
	speedFast
	speedSlow
)

// begin notes a request starting; end takes what begin returned.
func (s *sourceSpeed) begin() (alone bool, seq int64) {
	alone = s.active.Add(1) == 1
	return alone, s.started.Add(1)
}

// end notes a request of n bytes that took took. If no other request
// was in flight at any time during it, and it moved a megabyte or more,
// it sets the verdict.
func (s *sourceSpeed) end(alone bool, seq, n int64, took time.Duration) {
	s.active.Add(-1)
	if !alone || s.started.Load() != seq || n < 1<<20 || took <= 0 {
		return
	}
	v := speedSlow
	if float64(n) >= s.rate*took.Seconds() {
		v = speedFast
	}
	s.verdict.Store(v)
}

func (s *sourceSpeed) fast() bool { return s.verdict.Load() == speedFast }
