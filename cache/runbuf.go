package cache

import (
	"sync/atomic"

	"github.com/hashfs/hashfs/internal/bufpool"
)

// runBuf is the buffer a lazy read-ahead run was fetched into, shared by
// its chunks: their flight results and their copies in Cache.mem. Each
// holder counts once; the last to let go gives the buffer back to the
// pool. A reader takes a count before it copies out, and cannot once
// the count is gone, so it never reads a buffer that a later fetch is
// filling: it reads the chunk again instead. A nil *runBuf stands for
// bytes the garbage collector owns.
type runBuf struct {
	refs atomic.Int32
	buf  []byte
	bufs *bufpool.Pool
}

// newRunBuf wraps buf, with one count for the caller.
func newRunBuf(buf []byte, bufs *bufpool.Pool) *runBuf {
	r := &runBuf{buf: buf, bufs: bufs}
	r.refs.Store(1)
	return r
}

// acquire takes a count, unless the buffer is already given back.
func (r *runBuf) acquire() bool {
	if r == nil {
		return true
	}
	for {
		n := r.refs.Load()
		if n <= 0 {
			return false
		}
		if r.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release gives a count back; the last gives the buffer to the pool.
func (r *runBuf) release() {
	if r != nil && r.refs.Add(-1) == 0 {
		r.bufs.Put(r.buf)
	}
}
