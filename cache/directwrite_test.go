package cache

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hashfs/hashfs/internal/digest"
)

// cachedPages reports, per 4 KiB page of the file at p, whether the
// page cache holds it.
func cachedPages(t *testing.T, p string) []bool {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+directAlign-1)/directAlign)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out
}

// TestWriteAt: whole aligned blocks go around the page cache when an
// O_DIRECT descriptor is given, everything else through it, and the
// file holds the bytes either way.
func TestWriteAt(t *testing.T) {
	probe := filepath.Join(t.TempDir(), "probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pf, err := os.OpenFile(probe, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		t.Skipf("the test directory's file system refuses O_DIRECT: %v", err)
	}
	buf := make([]byte, 1<<20) // a large allocation: page-aligned
	if _, err := pf.WriteAt(buf[:directAlign], 0); err != nil {
		t.Fatal(err)
	}
	pf.Close()
	// A file system with no disk under it (tmpfs) keeps O_DIRECT bytes in
	// its page cache: there only the bytes can be checked.
	residency := !cachedPages(t, probe)[0]
	if !residency {
		t.Log("O_DIRECT writes stay in this file system's page cache (tmpfs?): page residency not checked")
	}
	for i := range buf {
		buf[i] = byte(i*7 + i>>12)
	}
	const pg = directAlign
	for _, tc := range []struct {
		name   string
		data   []byte
		off    int64
		direct bool
		cached []bool // per page of the file after the write
	}{
		{"whole blocks, direct", buf[:4*pg], 4 * pg, true, []bool{false, false, false, false, false, false, false, false}},
		{"tail of a last chunk", buf[:2*pg+100], 0, true, []bool{false, false, true}},
		{"unaligned memory", buf[1 : 2*pg+1], 0, true, []bool{true, true}},
		{"unaligned offset", buf[:2*pg], 100, true, []bool{true, true, true}},
		{"no direct descriptor", buf[:2*pg], 0, false, []bool{true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(dir, dir, 1<<30, 1<<20, newTestLogger(io.Discard))
			p := filepath.Join(dir, "blob")
			f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var df *os.File
			if tc.direct {
				if df, err = os.OpenFile(p, os.O_WRONLY|unix.O_DIRECT, 0); err != nil {
					t.Fatal(err)
				}
				defer df.Close()
			}
			if err := s.writeAt(f, df, tc.data, tc.off); err != nil {
				t.Fatal(err)
			}
			if s.noDirect {
				t.Fatal("O_DIRECT was turned off")
			}
			if got := cachedPages(t, p); residency && !slices.Equal(got, tc.cached) {
				t.Errorf("pages in the page cache = %v, want %v", got, tc.cached)
			}
			got := make([]byte, len(tc.data))
			if _, err := f.ReadAt(got, tc.off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.data) {
				t.Error("the file does not hold the bytes written")
			}
			if st, _ := f.Stat(); st.Size() != tc.off+int64(len(tc.data)) {
				t.Errorf("size %d, want %d", st.Size(), tc.off+int64(len(tc.data)))
			}
		})
	}
}

// TestDirectOff: a file system that refuses O_DIRECT (EINVAL) turns it
// off for the store, so no descriptor is opened for it again; another
// error leaves it on. A write error other than EINVAL is returned.
func TestDirectOff(t *testing.T) {
	discard := newTestLogger(io.Discard)
	for _, tc := range []struct {
		err error
		off bool
	}{
		{&os.PathError{Op: "open", Path: "blob", Err: unix.EINVAL}, true},
		{&os.PathError{Op: "open", Path: "blob", Err: unix.EIO}, false},
		{&os.PathError{Op: "open", Path: "blob", Err: unix.EMFILE}, false},
	} {
		dir := t.TempDir()
		s := newStore(dir, dir, 1<<30, 1<<20, discard)
		s.mu.Lock()
		s.directFailedLocked(tc.err)
		s.mu.Unlock()
		if s.noDirect != tc.off {
			t.Errorf("after %v: O_DIRECT off = %v, want %v", tc.err, s.noDirect, tc.off)
		}
		d := digest.Of([]byte(dir))
		bf := &blobFile{chunks: map[int64]*entry{}}
		if err := os.MkdirAll(s.blobDir(d), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.path(d), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		df := s.directLocked(d, bf)
		s.mu.Unlock()
		if (df == nil) != tc.off {
			t.Errorf("after %v: descriptor %v, want one: %v", tc.err, df, !tc.off)
		}
		if df != nil {
			df.Close()
		}
	}

	// Turned off while a blob's descriptor is open: that blob's writes
	// go through the page cache from then on too.
	{
		dir := t.TempDir()
		s := newStore(dir, dir, 1<<30, 1<<20, discard)
		d := digest.Of([]byte("open"))
		if err := os.MkdirAll(s.blobDir(d), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.path(d), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		bf := &blobFile{chunks: map[int64]*entry{}}
		s.mu.Lock()
		df := s.directLocked(d, bf)
		s.directFailedLocked(unix.EINVAL)
		again := s.directLocked(d, bf)
		s.mu.Unlock()
		if df == nil || again != nil {
			t.Errorf("descriptor before and after turning off: %v, %v; want one, then none", df, again)
		}
		if df != nil {
			df.Close()
		}
	}

	// A descriptor open for reading only: the O_DIRECT write fails with
	// EBADF, which writeAt returns rather than writing elsewhere.
	dir := t.TempDir()
	s := newStore(dir, dir, 1<<30, 1<<20, discard)
	p := filepath.Join(dir, "blob")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ro, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	buf := make([]byte, 1<<20)
	if err := s.writeAt(f, ro, buf[:directAlign], 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("writeAt through a read-only descriptor = %v, want EBADF", err)
	}
	if s.noDirect {
		t.Fatal("EBADF turned O_DIRECT off")
	}
}

// TestDirectRate: each direct write is timed whole, as its reader waits
// for it (idle time between writes is not counted, writes in parallel
// each count), and directSlowWindows windows in a row under
// directMinRate turn them off.
func TestDirectRate(t *testing.T) {
	const mib = 1 << 20
	ms := time.Millisecond
	type write struct {
		n    int64
		took time.Duration
	}
	// seq returns count writes of n bytes, each taking took.
	seq := func(count int, n int64, took time.Duration) []write {
		return slices.Repeat([]write{{n, took}}, count)
	}
	cat := func(parts ...[]write) []write { return slices.Concat(parts...) }
	for _, tc := range []struct {
		name   string
		writes []write
		off    bool
	}{
		{"1 MiB in 1 ms each: 1 GB/s", seq(256, mib, ms), false},
		{"1 MiB in 10 ms each: 105 MB/s", seq(128, mib, 10*ms), true},
		{"slow, but one window short", seq(127, mib, 10*ms), false},
		{"three slow windows, a fast one, three slow", cat(seq(96, mib, 10*ms), seq(32, mib, ms), seq(96, mib, 10*ms)), false},
		{"a slow first window, then fast", cat(seq(32, mib, 10*ms), seq(128, mib, ms)), false},
		// 8 at once, 4 MiB in 40 ms each: the disk moves 839 MB/s, and
		// every reader waits 40 ms for its 4 MiB.
		{"in parallel, each write counts whole", seq(32, 4*mib, 40*ms), true},
		{"4 MiB in 10 ms each: 419 MB/s", seq(32, 4*mib, 10*ms), false},
		// Each window: 4 failures of 100 ms, then 32 MiB at 1 GB/s: 78 MB/s.
		{"failed writes count their time, not bytes", cat(seq(4, 0, 100*ms), seq(32, mib, ms), seq(4, 0, 100*ms), seq(32, mib, ms),
			seq(4, 0, 100*ms), seq(32, mib, ms), seq(4, 0, 100*ms), seq(32, mib, ms)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(dir, dir, 1<<30, mib, newTestLogger(io.Discard))
			s.mu.Lock()
			for _, w := range tc.writes {
				s.directDoneLocked(w.took, w.n)
			}
			off := s.noDirect
			s.mu.Unlock()
			if off != tc.off {
				t.Errorf("direct writes off = %v, want %v", off, tc.off)
			}
		})
	}
}
