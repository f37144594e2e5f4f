package main

import (
	"strings"
	"testing"
)

func TestSweepVerdict(t *testing.T) {
	cell := func(chunk int64, par int, mbps, cpu float64) sweepPoint {
		return sweepPoint{Opts: hfOpts{Chunk: chunk, Parallel: par, Verify: "strict"}, MBps: mbps,
			Runs: []measurement{{Seconds: 1, MBps: mbps, CPU: map[string]float64{"hashfs": cpu}}}}
	}
	for _, tc := range []struct {
		name  string
		sweep []sweepPoint
		want  []string
	}{
		{"defaults best", []sweepPoint{cell(1<<20, 8, 107, 4.5), cell(1<<20, 16, 150, 4.2), cell(4<<20, 8, 146, 3.8), cell(4<<20, 16, 129, 9.4)},
			[]string{"100% of the best cell", "these settings stand"}},
		{"within 10%", []sweepPoint{cell(1<<20, 8, 107, 4.5), cell(1<<20, 16, 134, 4.2), cell(4<<20, 8, 146, 3.8), cell(4<<20, 16, 129, 9.4)},
			[]string{"92% of the best cell (`--verify strict --chunk-size 4MiB --parallel 8`, 146 MB/s)", "these settings stand"}},
		{"only larger chunks faster", []sweepPoint{cell(1<<20, 8, 115, 3.9), cell(1<<20, 16, 140, 3.75), cell(4<<20, 8, 158, 3.5), cell(4<<20, 16, 159, 7.3)},
			[]string{"88% of the best cell", "used 3.8 CPU-s for it against 7.3", "from 164 ms to 416 ms", "fetches 4× the bytes",
				"`--verify strict --chunk-size 4MiB --parallel 8` wins back", "keeps up to 64 MiB of the blob in flight against 32 MiB"}},
		{"same chunk faster", []sweepPoint{cell(1<<20, 8, 200, 3.9), cell(1<<20, 16, 140, 3.75), cell(4<<20, 8, 148, 3.5)},
			[]string{"should be revisited (`--verify strict --chunk-size 1MiB --parallel 8`)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &bench{chosen: defaultOpts(), sweep: tc.sweep}
			best := tc.sweep[0]
			for _, p := range tc.sweep {
				if p.MBps > best.MBps {
					best = p
				}
			}
			got := b.sweepVerdict(best)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("verdict lacks %q:\n%s", w, got)
				}
			}
		})
	}
}
