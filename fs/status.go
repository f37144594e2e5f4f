package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// xattrStatus on the mount's root answers the daemon's status as JSON
// (what `hashfs status MOUNTPOINT` prints).
const xattrStatus = "user.hashfs.status"

// recentFailures is how many failed operations the root remembers.
const recentFailures = 10

// Failure is one operation that answered an error other than ENOENT.
type Failure struct {
	Time   time.Time `json:"time"`
	Op     string    `json:"op"`
	Digest string    `json:"digest"`
	Errno  string    `json:"errno"`
	Err    string    `json:"error"`
}

var (
	_ = (gofs.NodeGetxattrer)((*Root)(nil))
	_ = (gofs.NodeListxattrer)((*Root)(nil))
)

func (r *Root) recordFailure(f Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors++
	r.failures = append(r.failures, f)
	if len(r.failures) > recentFailures {
		r.failures = r.failures[len(r.failures)-recentFailures:]
	}
}

// Failures returns how many operations failed (other than ENOENT) and
// the most recent of them, oldest first.
func (r *Root) Failures() (int64, []Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errors, append([]Failure(nil), r.failures...)
}

// Getxattr answers user.hashfs.status.
func (r *Root) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if attr != xattrStatus || r.cfg.Status == nil {
		return 0, syscall.ENODATA
	}
	b, err := r.cfg.Status()
	if err != nil {
		return 0, syscall.EIO
	}
	return xattrReply(dest, b)
}

// Listxattr names user.hashfs.status.
func (r *Root) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if r.cfg.Status == nil {
		return 0, 0
	}
	return xattrReply(dest, append([]byte(xattrStatus), 0))
}
