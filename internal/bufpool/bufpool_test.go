package bufpool

import "testing"

func TestGetLengthAndCapacity(t *testing.T) {
	tests := []struct {
		n       int
		wantCap int
	}{
		{0, 0},
		{100, 100}, // small: allocated exactly
		{1<<minClass - 1, 1<<minClass - 1},
		{1 << minClass, 1 << minClass},
		{1<<minClass + 1, 1 << (minClass + 1)},
		{3 << 20, 4 << 20},
		{16 << 20, 16 << 20},
		{1<<maxClass + 1, 1<<maxClass + 1}, // too large to pool: exact
	}
	var p Pool
	for _, tt := range tests {
		b := p.Get(tt.n)
		if len(b) != tt.n || cap(b) != tt.wantCap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tt.n, len(b), cap(b), tt.n, tt.wantCap)
		}
	}
}

func TestPutThenGetReuses(t *testing.T) {
	// sync.Pool may drop anything at any time, so reuse is asked for
	// many times and must happen at least once.
	var p Pool
	reused := false
	for range 100 {
		b := p.Get(3 << 20)
		b[0] = 1
		p.Put(b)
		c := p.Get(4 << 20)
		if &c[0] == &b[0] {
			reused = true
		}
		p.Put(c)
	}
	if !reused {
		t.Fatal("a buffer given back was never handed out again")
	}
}

func TestPutIgnoresOddSizes(t *testing.T) {
	var p Pool
	for _, n := range []int{0, 1 << 10, 3 << 20, 1 << (maxClass + 1)} {
		p.Put(make([]byte, n)) // must not panic or be handed out
	}
	for range 10 {
		if b := p.Get(3 << 20); cap(b) != 4<<20 {
			t.Fatalf("Get(3 MiB) has capacity %d: an odd-sized buffer was kept", cap(b))
		}
	}
}

func TestNilPoolAllocates(t *testing.T) {
	var p *Pool
	b := p.Get(4 << 20)
	if len(b) != 4<<20 {
		t.Fatalf("nil Pool Get: len %d", len(b))
	}
	p.Put(b) // must not panic
}
