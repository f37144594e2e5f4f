package main

import (
	"log/slog"
	"runtime/debug"
)

// memorySlack is the daemon's memory besides the blob bytes its cache
// holds in memory: trees, indexes, FUSE buffers, the runtime. With the
// defaults (--chunk-size 1MiB --parallel 16: 64 MiB in flight) it makes
// the 80MiB default limit; --verify lazy keeps 32 MiB more for its
// readers, so its limit is raised to 112MiB.
const memorySlack = 16 << 20

// setMemoryLimit sets the Go runtime's soft memory limit to limit (none
// if it is 0), raised to the blob bytes the cache may hold in memory
// (cache.MemoryBytes) plus memorySlack. Below its live heap the
// collector runs without pause, and every collection empties the
// buffer pools and hands pages back to the kernel, which the next
// fetch faults in again.
func setMemoryLimit(limit, inMemory int64, log *slog.Logger) {
	if limit <= 0 {
		return
	}
	if need := inMemory + memorySlack; limit < need {
		log.Info("memory limit raised to the blob bytes the cache keeps in memory with these flags",
			"memory_limit", need, "asked", limit)
		limit = need
	}
	debug.SetMemoryLimit(limit)
}
