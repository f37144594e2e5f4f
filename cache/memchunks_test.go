package cache

import "testing"

// TestMemoryBytes: the daemon's memory limit is raised to this, so it
// must count every blob byte the cache may hold at once in each mode.
func TestMemoryBytes(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name            string
		o               Options
		spans, inMemory int64
	}{
		// 2 windows of 2 × 16 chunks in flight; lazy keeps a window (32) more.
		{"strict 1MiB x16", Options{ChunkSize: mib, Parallel: 16}, 64 * mib, 64 * mib},
		{"lazy 1MiB x16", Options{ChunkSize: mib, Parallel: 16, Mode: Lazy}, 64 * mib, 96 * mib},
		// 64 MiB chunks: a window of 2, 4 in flight; lazy keeps 2 more.
		{"lazy 64MiB x16", Options{ChunkSize: 64 * mib, Parallel: 16, Mode: Lazy}, 256 * mib, 384 * mib},
		// 256 KiB chunks, 4 at once: a window of 8, 16 in flight; lazy keeps 8 more.
		{"lazy 256KiB x4", Options{ChunkSize: mib / 4, Parallel: 4, Mode: Lazy}, 4 * mib, 6 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := openCache(t, t.TempDir(), newFake(), tc.o)
			if got := c.SpanBytes(); got != tc.spans {
				t.Errorf("SpanBytes = %d MiB, want %d MiB", got/mib, tc.spans/mib)
			}
			if got := c.MemoryBytes(); got != tc.inMemory {
				t.Errorf("MemoryBytes = %d MiB, want %d MiB", got/mib, tc.inMemory/mib)
			}
		})
	}
}
