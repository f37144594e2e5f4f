package fs

import (
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// blockingRelease is a raw file system whose Release waits for unblock.
type blockingRelease struct {
	fuse.RawFileSystem
	entered, unblock chan struct{}
}

func (b blockingRelease) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	close(b.entered)
	<-b.unblock
}

// TestReleasesDone: a first passthrough open waits for every RELEASE
// already under way, go-fuse's bookkeeping (the inner Release) included,
// and for no other.
func TestReleasesDone(t *testing.T) {
	tests := []struct {
		name      string
		inFlight  bool // a RELEASE is running when the barrier is asked for
		wantBlock bool
	}{
		{"no release running", false, false},
		{"a release running", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Root{}
			inner := blockingRelease{entered: make(chan struct{}), unblock: make(chan struct{})}
			raw := releaseOrder{inner, &r.releasing}
			released := make(chan struct{})
			if tt.inFlight {
				go func() {
					raw.Release(nil, &fuse.ReleaseIn{})
					close(released)
				}()
				<-inner.entered
			}
			done := make(chan struct{})
			go func() {
				r.releasesDone()
				close(done)
			}()
			if tt.wantBlock {
				select {
				case <-done:
					t.Fatal("the barrier passed while a RELEASE was still in go-fuse")
				case <-time.After(100 * time.Millisecond):
				}
			} else {
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("the barrier waited with no RELEASE running")
				}
			}
			close(inner.unblock)
			if tt.inFlight {
				<-released
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the barrier did not pass once the RELEASE finished")
			}
		})
	}
}
