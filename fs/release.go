package fs

import (
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Ordering releases before passthrough opens. go-fuse (v2.12.1) counts
// an inode's passthrough backing id down on every release once the inode
// has an id, also for a handle that was opened before it had one. It
// does that bookkeeping after our Release returns. If a passthrough open
// registers the id in between (our Release already counted the ordinary
// handle out, so the open sees none left), the late release takes the
// id's count to zero and unregisters it while the kernel still uses it;
// the next open registers a second id and the kernel fails that open
// with EIO (two backing files for one inode).
//
// releaseOrder closes that gap: every RELEASE runs, with go-fuse's
// bookkeeping, under a read lock of Root.releasing, and an open that is
// about to give a file its first passthrough handle takes the write lock
// once (fileNode.Open); opens that join that run of passthrough handles
// meanwhile wait for it (fileNode.passReady). The ordinary handles it saw
// released had their Release run inside such a read lock, so when the
// write lock is granted go-fuse has finished with them, before any id of
// the run is registered.

// releaseOrder is go-fuse's raw file system with RELEASE run under mu's
// read lock.
type releaseOrder struct {
	fuse.RawFileSystem
	mu *sync.RWMutex
}

func (r releaseOrder) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.RawFileSystem.Release(cancel, in)
}

// releasesDone waits until every RELEASE that began before it has
// finished, go-fuse's bookkeeping included.
func (r *Root) releasesDone() {
	r.releasing.Lock()
	r.releasing.Unlock() //nolint:staticcheck // a barrier, not a critical section
}
