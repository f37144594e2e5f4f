package fetch

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// TestSetSourceDown: in a Set of a registry that answers and one that
// refuses connections, looking up a digest nobody has costs the down
// source's retry budget once, not once per lookup.
func TestSetSourceDown(t *testing.T) {
	up := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downRepo := ln.Addr().String() + "/test/down"
	ln.Close() // refuses from now on
	retryBase := func(o *Options) { o.RetryBase = 5 * time.Millisecond }
	good := up.client(t, retryBase)
	down, err := New(downRepo, Options{RetryBase: 5 * time.Millisecond, Keychain: staticKeychain{}})
	if err != nil {
		t.Fatal(err)
	}
	s := NewSet(nil, good, down)
	ctx := context.Background()
	absent := digest.Of([]byte("nobody has this"))

	var requests []int64
	for range 5 {
		before := down.Stats().Requests
		if _, err := s.StatBlob(ctx, absent); !errors.Is(err, hfserr.ErrUnavailable) {
			t.Fatalf("StatBlob of an absent digest with a source down = %v, want ErrUnavailable", err)
		}
		requests = append(requests, down.Stats().Requests-before)
	}
	if requests[0] != defaultRetries+1 {
		t.Errorf("first lookup: %d requests to the down source, want its budget of %d", requests[0], defaultRetries+1)
	}
	for i, n := range requests[1:] {
		if n != 0 {
			t.Errorf("lookup %d: %d requests to the down source, want none (it was just found down)", i+2, n)
		}
	}
	if n := up.count("HEAD blob"); n != 5 {
		t.Errorf("the source that is up was asked %d times, want 5", n)
	}
	// A blob the good source has is still found while the other is down.
	if size, err := s.StatBlob(ctx, up.blobDigest); err != nil || size != int64(len(up.blob)) {
		t.Errorf("StatBlob of a blob the up source has = %d, %v", size, err)
	}
}
