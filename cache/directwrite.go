package cache

import (
	"errors"
	"os"
	"time"
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

// A direct write waits for the disk, where a page-cache write returns at
// once, and the reader of the chunk waits with it: on a slow, remote or
// busy cache disk (a spinning disk, NFS, a throttled cloud volume, or a
// disk the registry reads the blob from at the same time) it holds up
// the very readers it spares a copy. The store times each direct write
// on its own, as its reader waits for it, in windows of directWindow
// bytes, and writes through the page cache for good once
// directSlowWindows windows in a row went at under directMinRate. (One
// slow window is no verdict: a fresh daemon's first one ran at 220 MB/s
// on a disk that then took 500–900.) Writes in parallel are each timed
// whole: four 1 MiB writes that take 15 ms together keep four readers
// waiting 15 ms each. In a cold lazy read of 1 GiB (cat, from a
// registry on the same VM reading the blob from the same disk), 1 MiB
// direct writes took 1–100 ms each; timed together they passed and the
// read took 3.8–3.9 s, timed each they were turned off after 128 MiB
// and it took 2.8–3.4 s (through the page cache from the start, 2.2–2.4).

const (
	// directAlign is the alignment O_DIRECT writes keep: 4 KiB, a
	// multiple of the logical block size of the disks in use.
	directAlign = 4096
	// directMinRate is the slowest a disk may take direct writes, in
	// bytes per second: below it a 1 MiB chunk waits over 5 ms.
	directMinRate = 200e6
	// directWindow is how many bytes of direct writes are timed together.
	directWindow = 32 << 20
	// directSlowWindows is how many slow windows in a row turn direct
	// writes off.
	directSlowWindows = 4
)

// directTiming adds up the store's direct writes (guarded by store.mu).
type directTiming struct {
	took  time.Duration // the writes' durations, each whole, this window
	bytes int64         // bytes they wrote, this window
	slow  int           // windows in a row under directMinRate
}

// directDoneLocked records a direct write of n bytes (0 if it failed)
// that took took, and turns direct writes off if the window it completes
// is the directSlowWindows-th in a row under directMinRate.
func (s *store) directDoneLocked(took time.Duration, n int64) {
	t := &s.dio
	t.bytes += n
	t.took += took
	if t.bytes < directWindow {
		return
	}
	rate := float64(t.bytes) / max(t.took.Seconds(), 1e-9)
	t.took, t.bytes = 0, 0
	if rate >= directMinRate {
		t.slow = 0
		return
	}
	if t.slow++; t.slow >= directSlowWindows && !s.noDirect {
		s.noDirect = true
		s.log.Info("the cache disk takes direct writes slowly: chunks are written through the page cache",
			"mb_per_s", int(rate/1e6), "floor_mb_per_s", int(directMinRate/1e6))
	}
}

// directLocked returns bf's O_DIRECT descriptor, opening it if needed
// (the blob's file exists: f is open), or nil when the store writes
// through the page cache.
func (s *store) directLocked(d digest.Digest, bf *blobFile) *os.File {
	if s.noDirect {
		return nil
	}
	if bf.df != nil {
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
		start := time.Now()
		_, err := df.WriteAt(data[:head], off)
		took := time.Since(start)
		s.mu.Lock()
		if err == nil {
			s.directDoneLocked(took, head)
		} else {
			s.directDoneLocked(took, 0)
			s.directFailedLocked(err)
		}
		s.mu.Unlock()
		switch {
		case err == nil:
			data, off = data[head:], off+head
		case !errors.Is(err, unix.EINVAL):
			return err
		}
	}
	if len(data) == 0 {
		return nil
	}
	_, err := f.WriteAt(data, off)
	return err
}
