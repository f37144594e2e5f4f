package fs

import (
	"errors"
	"fmt"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// FUSE passthrough: for an open of a blob that is whole and verified in
// the cache, the kernel reads the cache's file itself instead of sending
// READ requests to the daemon (fileNode.Open, blobHandle.PassthroughFd).
// It needs Linux 6.9+ and CAP_SYS_ADMIN, and the cache directory must
// not be on a stacked filesystem such as overlayfs. enablePassthrough
// asks the kernel once, at mount, to take a file of the cache directory
// as a backing file; if it refuses, every open reads through the daemon.

// enablePassthrough turns passthrough on for root if the kernel accepts
// a backing file from the cache directory.
func enablePassthrough(srv *fuse.Server, root *Root) error {
	if root.cfg.Cache == nil {
		return errors.New("no cache")
	}
	if srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0 {
		return errors.New("the kernel does not offer it (Linux 6.9+ with CONFIG_FUSE_PASSTHROUGH)")
	}
	f, err := root.cfg.Cache.BackingProbe()
	if err != nil {
		return err
	}
	defer f.Close()
	id, errno := srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(f.Fd())})
	if errno != 0 {
		return fmt.Errorf("the kernel refused a backing file from the cache directory (needs CAP_SYS_ADMIN, and no overlayfs under the cache): %w", errno)
	}
	if errno := srv.UnregisterBackingFd(id); errno != 0 {
		return fmt.Errorf("unregistering the probe's backing file: %w", errno)
	}
	root.passthrough.Store(true)
	return nil
}
