package cache

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hashfs/hashfs/internal/digest"
)

// Writing around the page cache. A chunk that a reader gets through the
// daemon (a lazy blob's, or one fetched again for a blob that is not
// whole) is already in the kernel's page cache of the FUSE file it was
// read from. Writing the cache's copy through the page cache as well
// would keep the same bytes twice in memory, and copy each one into a
// page that nobody reads. Such chunks are written with O_DIRECT instead:
// the disk takes them straight from the fetch buffer. A strict
// verification writes through the page cache, since its readers then
// read the cache's file itself (passthrough).
//
// O_DIRECT wants the offset, the length and the buffer aligned to the
// device's block: chunks start at multiples of the chunk size (a
// multiple of 4 KiB) and fetch buffers are page-aligned, so only the
// tail of a blob's last chunk goes through the page cache. A file
// system that refuses O_DIRECT (EINVAL) turns it off for the store.

// directAlign is the alignment O_DIRECT writes keep: 4 KiB, a multiple
// of the logical block size of the disks in use.
const directAlign = 4096

// directLocked returns bf's O_DIRECT descriptor, opening it if needed
// (the blob's file exists: f is open), or nil when the store writes
// through the page cache.
func (s *store) directLocked(d digest.Digest, bf *blobFile) *os.File {
	if bf.df != nil || s.noDirect {
		return bf.df
	}
	df, err := os.OpenFile(s.path(d), os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		s.directFailedLocked(err)
		return nil
	}
	bf.df = df
	return df
}

// directFailedLocked turns O_DIRECT off for good if err says the file
// system does not take it; other errors leave it on for the next write.
func (s *store) directFailedLocked(err error) {
	if errors.Is(err, unix.EINVAL) && !s.noDirect {
		s.noDirect = true
		s.log.Debug("the cache's file system refuses O_DIRECT: chunks are written through the page cache", "err", err)
	}
}

// writeAt writes data at off: its whole blocks through df (O_DIRECT) if
// df is not nil and off and data's memory are aligned, the rest through
// f.
func (s *store) writeAt(f, df *os.File, data []byte, off int64) error {
	head := int64(len(data)) &^ (directAlign - 1)
	if df != nil && head > 0 && off%directAlign == 0 && uintptr(unsafe.Pointer(&data[0]))%directAlign == 0 {
		_, err := df.WriteAt(data[:head], off)
		switch {
		case err == nil:
			data, off = data[head:], off+head
		case errors.Is(err, unix.EINVAL):
			s.mu.Lock()
			s.directFailedLocked(err)
			s.mu.Unlock()
		default:
			return err
		}
	}
	if len(data) == 0 {
		return nil
	}
	_, err := f.WriteAt(data, off)
	return err
}
