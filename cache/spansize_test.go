package cache

import (
	"testing"
	"time"
)

func TestSpanSizer(t *testing.T) {
	const (
		mib = 1 << 20
		cs  = mib
		w   = 32 // 2 × --parallel 16
	)
	type span struct {
		chunks  int64
		n       int
		took    time.Duration
		fetched bool
	}
	ms := time.Millisecond
	fastProbe := span{4, 4 * mib, 40 * ms, true}    // 105 MB/s
	slowProbe := span{4, 4 * mib, 200 * ms, true}   // 21 MB/s
	fastBig := span{16, 16 * mib, 50 * ms, true}    // 335 MB/s
	cappedBig := span{16, 16 * mib, 190 * ms, true} // 88 MB/s
	tests := []struct {
		name  string
		spans []span
		want  int64 // chunks per span afterwards
	}{
		{"fast lone first span", []span{fastProbe}, 16},
		{"slow lone first span (far, or capped per connection)", []span{slowProbe}, 4},
		{"fast first span read back from the cache", []span{{4, 4 * mib, 40 * ms, false}}, 4},
		{"first span under a megabyte", []span{{1, 512 << 10, ms, true}}, 4},
		{"big spans keep the rate", []span{fastProbe, fastBig, fastBig, cappedBig}, 16},
		{"big spans capped per connection", []span{fastProbe, cappedBig}, 4},
		{"once small, stays small", []span{fastProbe, cappedBig, fastBig, fastBig}, 4},
		{"a short tail span is not judged", []span{fastProbe, {3, 3 * mib, time.Second, true}}, 16},
		{"slow first span, then fast ones", []span{slowProbe, fastBig, fastProbe}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z := newSpanSizer(cs, w, probeRate, bigSpanRate)
			for _, s := range tt.spans {
				z.observe(s.chunks, s.n, s.took, s.fetched)
			}
			if got, ok := z.next(100); got != tt.want || !ok {
				t.Errorf("next span %d chunks (may start: %v), want %d", got, ok, tt.want)
			}
		})
	}
}

// While the first span is out, no other starts: it must be alone to say
// what the link does.
func TestSpanSizerProbesAlone(t *testing.T) {
	z := newSpanSizer(1<<20, 32, probeRate, bigSpanRate)
	if n, ok := z.next(0); n != 4 || !ok {
		t.Fatalf("first span: %d chunks, may start %v; want 4, true", n, ok)
	}
	if _, ok := z.next(4); ok {
		t.Fatal("a second span may start before the first came back")
	}
	z.observe(4, 4<<20, 200*time.Millisecond, true)
	if n, ok := z.next(4); n != 4 || !ok {
		t.Fatalf("after a slow probe: %d chunks, may start %v; want 4, true", n, ok)
	}
}

// A lone first span still out after probeWait cannot be fast: the
// verification gives up probing and asks for small spans at once.
func TestSpanSizerGivesUp(t *testing.T) {
	z := newSpanSizer(1<<20, 32, probeRate, bigSpanRate)
	if got, want := z.probeWait(), time.Duration(float64(4<<20)/probeRate*float64(time.Second)); got != want {
		t.Errorf("probeWait %v, want %v (4 MiB at 50 MB/s)", got, want)
	}
	z.giveUp()
	if n, ok := z.next(4); n != 4 || !ok {
		t.Fatalf("after giving up: %d chunks, may start %v; want 4, true", n, ok)
	}
	z.observe(4, 4<<20, 10*time.Millisecond, true) // the probe comes back fast, too late
	if n, _ := z.next(8); n != 4 {
		t.Errorf("a probe back after giving up changed the span to %d chunks", n)
	}
}
