package cache

import (
	"testing"

	"github.com/hashfs/hashfs/internal/bufpool"
)

func TestRunBufCounts(t *testing.T) {
	tests := []struct {
		name      string
		steps     string // a: acquire, r: release
		wantAcq   []bool // result of each acquire, in order
		wantRefs  int32
		wantFreed bool // the buffer went back (refs reached 0)
	}{
		{"owner lets go", "r", nil, 0, true},
		{"a reader keeps it", "ar", []bool{true}, 1, false},
		{"reader then owner", "arr", []bool{true}, 0, true},
		{"no count once given back", "ra", []bool{false}, 0, true},
		{"two readers", "aarrr", []bool{true, true}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRunBuf(make([]byte, 1<<20), new(bufpool.Pool))
			var acq []bool
			freed := false
			for _, s := range tt.steps {
				switch s {
				case 'a':
					acq = append(acq, r.acquire())
				case 'r':
					if r.refs.Load() > 0 {
						r.release()
						freed = freed || r.refs.Load() == 0
					}
				}
			}
			if len(acq) != len(tt.wantAcq) {
				t.Fatalf("acquires %v, want %v", acq, tt.wantAcq)
			}
			for i := range acq {
				if acq[i] != tt.wantAcq[i] {
					t.Errorf("acquire %d: %v, want %v", i, acq[i], tt.wantAcq[i])
				}
			}
			if got := r.refs.Load(); got != tt.wantRefs || freed != tt.wantFreed {
				t.Errorf("refs %d, freed %v; want %d, %v", got, freed, tt.wantRefs, tt.wantFreed)
			}
		})
	}
	var none *runBuf
	if !none.acquire() {
		t.Error("a nil runBuf (garbage-collected bytes) must always be readable")
	}
	none.release()
}
