package cache

import (
	"testing"
	"time"
)

func TestSourceSpeed(t *testing.T) {
	const mib = 1 << 20
	ms := time.Millisecond
	tests := []struct {
		name string
		run  func(s *sourceSpeed)
		want int32
	}{
		{"no request yet", func(*sourceSpeed) {}, speedUnknown},
		{"lone fast request", func(s *sourceSpeed) {
			a, q := s.begin()
			s.end(a, q, 4*mib, 20*ms) // 210 MB/s
		}, speedFast},
		{"lone slow request", func(s *sourceSpeed) {
			a, q := s.begin()
			s.end(a, q, mib, 80*ms) // 13 MB/s
		}, speedSlow},
		{"lone request under a megabyte", func(s *sourceSpeed) {
			a, q := s.begin()
			s.end(a, q, 512<<10, ms)
		}, speedUnknown},
		{"started while another was in flight", func(s *sourceSpeed) {
			a1, q1 := s.begin()
			a2, q2 := s.begin()
			s.end(a1, q1, 4*mib, 20*ms)
			s.end(a2, q2, 4*mib, 20*ms)
		}, speedUnknown},
		{"another started during it", func(s *sourceSpeed) {
			a1, q1 := s.begin()
			a2, q2 := s.begin()
			s.end(a2, q2, 4*mib, 20*ms)
			s.end(a1, q1, 4*mib, 20*ms)
		}, speedUnknown},
		{"the latest lone request decides", func(s *sourceSpeed) {
			a, q := s.begin()
			s.end(a, q, 4*mib, 20*ms)
			a, q = s.begin()
			s.end(a, q, mib, 80*ms)
		}, speedSlow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sourceSpeed{rate: probeRate}
			tt.run(s)
			if got := s.verdict.Load(); got != tt.want {
				t.Errorf("verdict %d, want %d", got, tt.want)
			}
		})
	}
}
