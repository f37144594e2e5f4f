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

// TestDirectRate: direct writes are timed together, without idle time
// and with parallel writes counted once, and directSlowWindows windows
// in a row under directMinRate turn them off.
func TestDirectRate(t *testing.T) {
	const mib = 1 << 20
	ms := time.Millisecond
	type write struct {
		start, end time.Duration // from t0
		n          int64
	}
	// seq returns count writes of n bytes one after another, each taking
	// took, with gap between them.
	seq := func(count int, n int64, took, gap time.Duration) []write {
		var ws []write
		at := time.Duration(0)
		for range count {
			ws = append(ws, write{at, at + took, n})
			at += took + gap
		}
		return ws
	}
	shift := func(ws []write, by time.Duration) []write {
		for i := range ws {
			ws[i].start, ws[i].end = ws[i].start+by, ws[i].end+by
		}
		return ws
	}
	// par returns batches of count writes of n bytes at once, each
	// taking took, one batch after another.
	par := func(batches, count int, n int64, took time.Duration) []write {
		var ws []write
		for b := range batches {
			for range count {
				ws = append(ws, write{time.Duration(b) * took, time.Duration(b+1) * took, n})
			}
		}
		return ws
	}
	// stagger returns count writes of n bytes each taking took, one
	// starting every every.
	stagger := func(count int, n int64, took, every time.Duration) []write {
		var ws []write
		for i := range count {
			at := time.Duration(i) * every
			ws = append(ws, write{at, at + took, n})
		}
		return ws
	}
	cat := func(parts ...[]write) []write {
		var ws []write
		at := time.Duration(0)
		for _, p := range parts {
			ws = append(ws, shift(p, at)...)
			at = ws[len(ws)-1].end + time.Millisecond
		}
		return ws
	}
	for _, tc := range []struct {
		name   string
		writes []write
		off    bool
	}{
		{"1 MiB in 1 ms each: 1 GB/s", seq(256, mib, ms, 0), false},
		{"1 MiB in 10 ms each: 105 MB/s", seq(128, mib, 10*ms, 0), true},
		{"slow, but one window short", seq(127, mib, 10*ms, 0), false},
		{"three slow windows, a fast one, three slow", cat(seq(96, mib, 10*ms, 0), seq(32, mib, ms, 0), seq(96, mib, 10*ms, 0)), false},
		{"a slow first window, then fast", cat(seq(32, mib, 10*ms, 0), seq(128, mib, ms, 0)), false},
		{"fast with idle seconds between: idle time is not counted", seq(256, mib, ms, time.Second), false},
		// Two writers, each 1 MiB in 20 ms, 10 ms apart: one always in progress.
		{"never idle, 1 MiB every 10 ms: 105 MB/s", stagger(129, mib, 20*ms, 10*ms), true},
		{"never idle, 1 MiB every 1 ms: 1 GB/s", stagger(257, mib, 2*ms, ms), false},
		{"8 at once, 4 MiB in 40 ms each: 839 MB/s together", par(4, 8, 4*mib, 40*ms), false},
		{"8 at once, 4 MiB in 400 ms each: 84 MB/s together", par(4, 8, 4*mib, 400*ms), true},
		// Each window: 4 failures of 100 ms, then 32 MiB at 1 GB/s: 78 MB/s.
		{"failed writes count their time, not bytes", cat(seq(4, 0, 100*ms, 0), seq(32, mib, ms, 0), seq(4, 0, 100*ms, 0), seq(32, mib, ms, 0),
			seq(4, 0, 100*ms, 0), seq(32, mib, ms, 0), seq(4, 0, 100*ms, 0), seq(32, mib, ms, 0)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(dir, dir, 1<<30, mib, newTestLogger(io.Discard))
			t0 := time.Unix(1e9, 0)
			// Replay the starts and ends in time order (ends first on a tie).
			type event struct {
				at  time.Duration
				end bool
				n   int64
			}
			var evs []event
			for _, w := range tc.writes {
				evs = append(evs, event{w.start, false, 0}, event{w.end, true, w.n})
			}
			slices.SortStableFunc(evs, func(a, b event) int {
				if a.at != b.at {
					return int(a.at - b.at)
				}
				if a.end != b.end {
					if a.end {
						return -1
					}
					return 1
				}
				return 0
			})
			s.mu.Lock()
			for _, e := range evs {
				if e.end {
					s.directDoneLocked(t0.Add(e.at), e.n)
				} else {
					s.directStartLocked(t0.Add(e.at))
				}
			}
			off := s.noDirect
			s.mu.Unlock()
			if off != tc.off {
				t.Errorf("direct writes off = %v, want %v", off, tc.off)
			}
		})
	}
}
