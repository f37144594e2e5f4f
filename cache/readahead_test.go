package cache

import (
	"context"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
)

func TestReadaheadAdvance(t *testing.T) {
	tests := []struct {
		name  string
		reads [][2]int64 // [off, end)
		want  []int64    // window after each read
	}{
		{"sequential grows to the limit", [][2]int64{{0, 10}, {10, 20}, {20, 30}, {30, 40}, {40, 50}}, []int64{1, 2, 4, 4, 4}},
		{"a seek resets", [][2]int64{{0, 10}, {10, 20}, {500, 510}, {510, 520}}, []int64{1, 2, 0, 1}},
		{"random never reads ahead", [][2]int64{{300, 310}, {100, 110}, {700, 710}}, []int64{0, 0, 0}},
		// The kernel's READs of one sequential reader, taken out of order.
		{"swapped reads stay sequential", [][2]int64{{0, 10}, {20, 30}, {10, 20}, {30, 40}, {50, 60}, {40, 50}}, []int64{1, 2, 4, 4, 4, 4}},
		// Within two reads' length of the furthest end: 30+2×10.
		{"a jump of two reads is near", [][2]int64{{0, 10}, {10, 20}, {20, 30}, {50, 60}}, []int64{1, 2, 4, 4}},
		{"a jump past two reads is a seek", [][2]int64{{0, 10}, {10, 20}, {20, 30}, {51, 61}}, []int64{1, 2, 4, 0}},
		{"a step back past two reads is a seek", [][2]int64{{0, 10}, {10, 20}, {20, 30}, {30, 40}, {9, 19}}, []int64{1, 2, 4, 4, 0}},
		// Near is two of the read's own lengths: 22+2×2 for a read of 2.
		{"short reads: near is their own length", [][2]int64{{0, 10}, {10, 20}, {20, 22}, {26, 28}, {33, 35}}, []int64{1, 2, 4, 4, 0}},
	}
	for _, tt := range tests {
		var ra readahead
		for i, rd := range tt.reads {
			if got := ra.advance(rd[0], rd[1], 4); got != tt.want[i] {
				t.Errorf("%s: read %d [%d,%d): window %d, want %d", tt.name, i, rd[0], rd[1], got, tt.want[i])
			}
		}
	}
}

// A lazy sequential reader has the next chunks on their way before it
// asks for them; a reader that seeks fetches only what it reads.
func TestLazyReadahead(t *testing.T) {
	b := blob(21, 12*cs)
	d := digest.Of(b)
	size := int64(len(b))
	tests := []struct {
		name    string
		offsets []int64 // reads of 4 KiB
		fetched []int64 // chunks that must be fetched soon after
		never   []int64 // chunks that must not be
		limit   int64   // ReadAtWithin's limit; 0: ReadAt
	}{
		{"sequential", []int64{0, 4096, 8192, 12288}, []int64{0, 1, 2, 3}, []int64{9, 10, 11}, 0},
		// Readahead starts after the chunk being read, not at it.
		{"first read", []int64{0}, []int64{0, 1}, []int64{2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 0},
		// A reader that says where its bytes end gets no chunk past it.
		{"within a limit", []int64{0, 4096, 8192, 12288, cs, cs + 4096}, []int64{0, 1}, []int64{2, 3, 4, 5, 6}, 2 * cs},
		{"random", []int64{5 * cs, 2 * cs, 8 * cs}, []int64{5, 2, 8}, []int64{0, 1, 3, 4, 6, 7, 9, 10, 11}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newFake(b)
			c := openCache(t, t.TempDir(), src, Options{Mode: Lazy, LazyVerifyMax: 4 * cs, Parallel: 4,
				BackgroundDelay: time.Hour}) // no background verification during the test
			r := c.Open(d, size)
			defer r.Close()
			p := make([]byte, 4096)
			for _, off := range tt.offsets {
				var err error
				if tt.limit > 0 {
					_, err = r.ReadAtWithin(context.Background(), p, off, tt.limit)
				} else {
					_, err = r.ReadAt(context.Background(), p, off)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			for _, i := range tt.fetched {
				waitFor(t, "chunk fetched", func() bool { return src.callsAt(d, i*cs) == 1 })
			}
			time.Sleep(50 * time.Millisecond) // any stray fetch would have started
			for _, i := range tt.never {
				if n := src.callsAt(d, i*cs); n != 0 {
					t.Errorf("chunk %d fetched %d times, want 0", i, n)
				}
			}
		})
	}
}
