package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// twoCopies serves from a corrupt copy until Reject moves it to a good
// one, as fetch.Set does with two sources.
type twoCopies struct {
	*fakeSource
	mu       sync.Mutex
	rejects  int
	canMove  bool // whether a second source exists
	lacks    bool // with canMove: it exists but does not have the blob
	switched bool
}

func (s *twoCopies) Reject(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejects++
	if !s.canMove || s.switched {
		return false
	}
	s.switched = true
	if s.lacks {
		s.fakeSource.setHook(func(context.Context, digest.Digest, int64) error {
			return fmt.Errorf("second source: %w", hfserr.ErrNotFound)
		})
		return true
	}
	s.fakeSource.setFlip(d, -1)
	return true
}

func TestStrictRejectTriesAnotherSource(t *testing.T) {
	tests := []struct {
		name    string
		canMove bool
		lacks   bool
		wantOK  bool
	}{
		{"second source verifies", true, false, true},
		{"no other source", false, false, false},
		// The mismatch is the verdict, and the bad source is not asked again.
		{"the other source lacks it", true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := blob(3, 5*cs+17)
			d := digest.Of(b)
			src := &twoCopies{fakeSource: newFake(b), canMove: tt.canMove, lacks: tt.lacks}
			src.setFlip(d, 2*cs+5)
			c := openCache(t, t.TempDir(), src, Options{Mode: Strict})
			if tt.wantOK {
				readAll(t, c, b, 4096)
			} else {
				r := c.Open(d, int64(len(b)))
				defer r.Close()
				n, err := r.ReadAt(context.Background(), make([]byte, 10), 0)
				if n != 0 || !isIntegrity(err) {
					t.Fatalf("ReadAt = %d, %v; want 0 bytes and ErrIntegrity", n, err)
				}
				var ie *IntegrityError
				if !errors.As(err, &ie) {
					t.Fatalf("want an IntegrityError, got %T", err)
				}
			}
			if src.rejects != 1 {
				t.Errorf("Reject called %d times, want 1", src.rejects)
			}
		})
	}
}
