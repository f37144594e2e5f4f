// Package bufpool recycles the large buffers that hold fetched byte
// ranges. A cold blob moves through the daemon in spans of megabytes;
// allocating each one anew costs zeroing, garbage collection and, once
// the runtime has handed the memory back to the kernel, a page fault
// per 4 KiB when it is touched again (expensive in a VM whose balloon
// takes free pages back). The registry's bytes are read into a buffer
// from here, and the cache gives it back once its bytes are hashed and
// written.
//
// Ownership is the whole contract: Get hands out a buffer nobody else
// holds, and whoever calls Put must be the buffer's last user. A buffer
// that was not from Get may be given to Put too; it is kept if its
// capacity fits a size class.
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minClass = 18 // 256 KiB: smaller buffers are cheap to allocate
	maxClass = 26 // 64 MiB: larger ones are not kept
)

// A Pool holds one sync.Pool per power-of-two capacity from 2^minClass
// to 2^maxClass. A sync.Pool keeps what the program does not use for
// two garbage collections, so an idle daemon gives the memory back.
// The zero value is ready; a nil *Pool allocates every buffer and
// keeps none. One Pool serves a daemon: its fetcher takes buffers, its
// cache gives them back.
type Pool struct {
	classes [maxClass - minClass + 1]sync.Pool
}

// class returns the size class whose buffers hold n bytes, or -1.
func class(n int) int {
	if n <= 0 {
		return -1
	}
	c := max(bits.Len(uint(n-1)), minClass)
	if c > maxClass {
		return -1
	}
	return c - minClass
}

// Get returns a buffer of length n. Its contents are undefined: the
// caller overwrites all n bytes before reading any.
func (p *Pool) Get(n int) []byte {
	if p == nil || n < 1<<minClass {
		return make([]byte, n)
	}
	c := class(n)
	if c < 0 {
		return make([]byte, n)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<(c+minClass))
}

// Put gives b back for a later Get. The caller must not touch b, or
// any slice of it, afterwards.
func (p *Pool) Put(b []byte) {
	n := cap(b)
	if p == nil || n < 1<<minClass || n&(n-1) != 0 {
		return // not a class size: left to the garbage collector
	}
	c := class(n)
	if c < 0 {
		return
	}
	b = b[:n]
	p.classes[c].Put(&b)
}
