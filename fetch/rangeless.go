package fetch

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/hashfs/hashfs/internal/bufpool"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// A server that ignores Range answers a ranged GET with the whole blob
// (200). Reading the range out of it and dropping the connection would
// make every later range download the blob from byte 0 again, which
// grows with the square of the blob's size for a reader going through
// it. Instead the body is kept, positioned after the range, and a later
// read of the same blob at or after that position continues it.

// fullBody is a 200 response body to a ranged GET, at pos.
type fullBody struct {
	body io.ReadCloser
	pos  int64
	size int64 // Content-Length, -1 if not sent
	used time.Time
}

// read returns bytes [off, off+n) of the blob, off >= b.pos: it skips to
// off and reads n bytes.
func (b *fullBody) read(off, n int64, bufs *bufpool.Pool) ([]byte, error) {
	if b.size >= 0 && b.size < off+n {
		return nil, fmt.Errorf("range beyond end of %d-byte blob: %w", b.size, hfserr.ErrInvalid)
	}
	if skip := off - b.pos; skip > 0 {
		m, err := io.CopyN(io.Discard, b.body, skip)
		b.pos += m
		if err != nil {
			return nil, transient(fmt.Errorf("skip %d bytes of full-blob response: %w", skip, err))
		}
	}
	buf := bufs.Get(int(n))
	m, err := io.ReadFull(b.body, buf)
	b.pos += int64(m)
	if err != nil {
		bufs.Put(buf)
		return nil, transient(fmt.Errorf("read body: %w", err))
	}
	return buf, nil
}

// fullBodies keeps the idle full-blob bodies of one Client, by blob.
type fullBodies struct {
	mu   sync.Mutex
	idle map[digest.Digest][]*fullBody
	n    int
}

const (
	maxFullBodies = 8                // kept at once per Client (each holds a connection)
	fullBodyIdle  = 30 * time.Second // closed when unused this long
)

// take returns the kept body of d furthest along that is not past off.
func (f *fullBodies) take(d digest.Digest, off int64) *fullBody {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expireLocked()
	bs := f.idle[d]
	best := -1
	for i, b := range bs {
		if b.pos <= off && (best < 0 || b.pos > bs[best].pos) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	b := bs[best]
	f.idle[d] = append(bs[:best], bs[best+1:]...)
	f.n--
	return b
}

// put keeps b for the next read of d, unless it is at its end or there
// are too many: then it is closed (the oldest goes first).
func (f *fullBodies) put(d digest.Digest, b *fullBody) {
	if b.size >= 0 && b.pos >= b.size {
		b.body.Close()
		return
	}
	b.used = time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.idle == nil {
		f.idle = map[digest.Digest][]*fullBody{}
	}
	f.idle[d] = append(f.idle[d], b)
	f.n++
	f.expireLocked()
	for f.n > maxFullBodies {
		f.closeOldestLocked()
	}
}

func (f *fullBodies) expireLocked() {
	for d, bs := range f.idle {
		kept := bs[:0]
		for _, b := range bs {
			if time.Since(b.used) > fullBodyIdle {
				b.body.Close()
				f.n--
			} else {
				kept = append(kept, b)
			}
		}
		if len(kept) == 0 {
			delete(f.idle, d)
		} else {
			f.idle[d] = kept
		}
	}
}

func (f *fullBodies) closeOldestLocked() {
	var od digest.Digest
	oi := -1
	var oldest time.Time
	for d, bs := range f.idle {
		for i, b := range bs {
			if oi < 0 || b.used.Before(oldest) {
				od, oi, oldest = d, i, b.used
			}
		}
	}
	if oi < 0 {
		f.n = 0
		return
	}
	bs := f.idle[od]
	bs[oi].body.Close()
	f.idle[od] = append(bs[:oi], bs[oi+1:]...)
	if len(f.idle[od]) == 0 {
		delete(f.idle, od)
	}
	f.n--
}

// isFullBody reports whether resp is a 200 to a ranged GET.
func isFullBody(resp *http.Response) bool { return resp.StatusCode == http.StatusOK }
