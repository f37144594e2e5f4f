package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// floorWork measures, on this machine and just before it is needed, the
// work a cold strict read of size bytes cannot skip in hashfs itself,
// whatever its design: hashing the bytes once (sha256 on one thread)
// and putting them in the page cache once, where the reader will find
// them (dd of as many bytes into a new file right after the page cache
// is dropped, as a cold read starts: the cheapest this write gets here). With the work the registry and
// the proxy do to send the bytes in one stream (curl's figures), it
// bounds the best a 2-core machine can do; explain compares it with
// the target.
func (b *bench) floorWork(ctx context.Context, size int64) (hashCPU, writeCPU, lateWriteCPU float64, err error) {
	hashCPU = hashCost(size)
	if writeCPU, err = b.pageFill(ctx, size, 0); err != nil {
		return 0, 0, 0, err
	}
	// Most of a cold read's writes come seconds after the drop: the same
	// write then, for the report to show what this VM charges for it.
	if lateWriteCPU, err = b.pageFill(ctx, size, 3*time.Second); err != nil {
		return 0, 0, 0, err
	}
	return hashCPU, writeCPU, lateWriteCPU, nil
}

// pageFill drops the page cache, waits pause, and returns the CPU
// seconds dd spends writing size bytes into a new file.
func (b *bench) pageFill(ctx context.Context, size int64, pause time.Duration) (float64, error) {
	f := filepath.Join(b.work, "pagefill")
	defer os.Remove(f)
	var m measurement
	b.cold(&m)
	time.Sleep(pause)
	cmd := exec.CommandContext(ctx, "dd", "if=/dev/zero", "of="+f, "bs=1M", fmt.Sprintf("count=%d", (size+1<<20-1)>>20), "status=none")
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("dd: %v: %s", err, out)
	}
	st := cmd.ProcessState
	return (st.UserTime() + st.SystemTime()).Seconds(), nil
}

// hashCost is the CPU seconds one thread spends on sha256 of size bytes,
// from hashing 256 MiB (or size, if less) of a 1 MiB buffer.
func hashCost(size int64) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	buf := make([]byte, 1<<20)
	n := min(size, 256<<20)
	h := sha256.New()
	t0 := threadCPU()
	for done := int64(0); done < n; done += int64(len(buf)) {
		h.Write(buf[:min(int64(len(buf)), n-done)])
	}
	return (threadCPU() - t0) * float64(size) / float64(n)
}

func threadCPU() float64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
