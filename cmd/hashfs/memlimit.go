package main

import (
	"log/slog"
	"runtime/debug"
)

// memorySlack is the daemon's memory besides the blob bytes its cache
// holds in flight: trees, indexes, FUSE buffers, the runtime. With the
// defaults (--chunk-size 1MiB --parallel 16: 64 MiB in flight) it makes
// the 80MiB default limit.
const memorySlack = 16 << 20

// setMemoryLimit sets the Go runtime's soft memory limit to limit (none
// if it is 0), raised to the blob bytes the cache may hold in flight
// plus memorySlack: below its live heap the collector would run
// without pause.
func setMemoryLimit(limit, inFlight int64, log *slog.Logger) {
	if limit <= 0 {
		return
	}
	if need := inFlight + memorySlack; limit < need {
		log.Info("memory limit raised to what --chunk-size and --parallel keep in flight",
			"memory_limit", need, "asked", limit)
		limit = need
	}
	debug.SetMemoryLimit(limit)
}
