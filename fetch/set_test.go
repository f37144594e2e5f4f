package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// fakeSource serves blobs from memory. statErr and fetchErr, when set,
// replace every answer; block makes calls wait for their context.
type fakeSource struct {
	name     string
	blobs    map[digest.Digest][]byte
	statErr  error
	fetchErr error
	block    bool

	stats, fetches atomic.Int64
	cancelled      atomic.Int64
}

func newFake(name string, blobs ...[]byte) *fakeSource {
	f := &fakeSource{name: name, blobs: map[digest.Digest][]byte{}}
	for _, b := range blobs {
		f.blobs[digest.Of(b)] = b
	}
	return f
}

func (f *fakeSource) Name() string { return f.name }

func (f *fakeSource) wait(ctx context.Context) error {
	if !f.block {
		return nil
	}
	<-ctx.Done()
	f.cancelled.Add(1)
	return ctx.Err()
}

func (f *fakeSource) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	f.stats.Add(1)
	if err := f.wait(ctx); err != nil {
		return 0, err
	}
	if f.statErr != nil {
		return 0, f.statErr
	}
	b, ok := f.blobs[d]
	if !ok {
		return 0, fmt.Errorf("%s: %w", f.name, hfserr.ErrNotFound)
	}
	return int64(len(b)), nil
}

func (f *fakeSource) FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	f.fetches.Add(1)
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	if f.fetchErr != nil {
		return nil, f.fetchErr
	}
	b, ok := f.blobs[d]
	if !ok {
		return nil, fmt.Errorf("%s: %w", f.name, hfserr.ErrNotFound)
	}
	if off+n > int64(len(b)) {
		return nil, fmt.Errorf("%s: past the end: %w", f.name, hfserr.ErrInvalid)
	}
	return slices.Clone(b[off : off+n]), nil
}

var (
	blobA   = []byte("the quick brown fox jumps over the lazy dog")
	digA    = digest.Of(blobA)
	errDown = fmt.Errorf("connection refused: %w", hfserr.ErrUnavailable)
)

func TestSetStatBlob(t *testing.T) {
	for _, tc := range []struct {
		name    string
		srcs    func() []*fakeSource
		want    error // nil: size of blobA
		notWant error // must not match
		where   []string
	}{
		{name: "one of three has it", srcs: func() []*fakeSource {
			return []*fakeSource{newFake("a"), newFake("b", blobA), newFake("c")}
		}, where: []string{"b"}},
		{name: "all have it", srcs: func() []*fakeSource {
			return []*fakeSource{newFake("a", blobA), newFake("b", blobA)}
		}},
		{name: "nobody has it", srcs: func() []*fakeSource {
			return []*fakeSource{newFake("a"), newFake("b")}
		}, want: hfserr.ErrNotFound},
		{name: "no sources", srcs: func() []*fakeSource { return nil }, want: hfserr.ErrNotFound},
		{name: "one down, the rest without it", srcs: func() []*fakeSource {
			down := newFake("down", blobA)
			down.statErr = errDown
			return []*fakeSource{newFake("a"), down}
		}, want: hfserr.ErrUnavailable, notWant: hfserr.ErrNotFound},
		{name: "one down, another has it", srcs: func() []*fakeSource {
			down := newFake("down")
			down.statErr = errDown
			return []*fakeSource{down, newFake("b", blobA)}
		}, where: []string{"b"}},
		{name: "invalid answers stay out of errors.Is", srcs: func() []*fakeSource {
			odd := newFake("odd")
			odd.statErr = fmt.Errorf("HTTP 400: %w", hfserr.ErrInvalid)
			return []*fakeSource{newFake("a"), odd}
		}, want: hfserr.ErrUnavailable, notWant: hfserr.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srcs := tc.srcs()
			s := NewSet(nil)
			for _, f := range srcs {
				s.Add(f)
			}
			size, err := s.StatBlob(context.Background(), digA)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if tc.notWant != nil && errors.Is(err, tc.notWant) {
					t.Fatalf("err = %v, must not be %v", err, tc.notWant)
				}
				return
			}
			if err != nil || size != int64(len(blobA)) {
				t.Fatalf("StatBlob = %d, %v", size, err)
			}
			if tc.where != nil && !slices.Equal(s.Where(digA), tc.where) {
				t.Errorf("Where = %v, want %v", s.Where(digA), tc.where)
			}
		})
	}
}

// The first answer wins and the slower sources are cancelled; the next
// stat asks only the source known to have the blob.
func TestSetStatBlobParallel(t *testing.T) {
	slow := newFake("slow", blobA)
	slow.block = true
	fast := newFake("fast", blobA)
	none := newFake("none")
	s := NewSet(nil, slow, none, fast)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.StatBlob(ctx, digA); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("StatBlob waited for the slow source")
	}
	waitFor(t, func() bool { return slow.cancelled.Load() == 1 })
	if got := s.Where(digA); !slices.Equal(got, []string{"fast"}) {
		t.Errorf("Where = %v, want [fast]", got)
	}
	before := none.stats.Load() + slow.stats.Load()
	if _, err := s.StatBlob(ctx, digA); err != nil {
		t.Fatal(err)
	}
	if after := none.stats.Load() + slow.stats.Load(); after != before || fast.stats.Load() != 2 {
		t.Errorf("second stat asked others: %d -> %d, fast %d", before, after, fast.stats.Load())
	}
}

func TestSetFetchRange(t *testing.T) {
	for _, tc := range []struct {
		name     string
		srcs     func() []*fakeSource
		off, n   int64
		want     error // nil: the bytes of blobA
		servedBy string
		logs     string // substring expected in the log
		first    string // a source learnt to have the blob before the read
	}{
		{name: "searches then fetches", srcs: func() []*fakeSource {
			return []*fakeSource{newFake("a"), newFake("b", blobA)}
		}, off: 4, n: 5, servedBy: "b"},
		{name: "fails over to the next source", srcs: func() []*fakeSource {
			down := newFake("down", blobA)
			down.fetchErr = errDown
			return []*fakeSource{down, newFake("b", blobA)}
		}, off: 0, n: 10, servedBy: "b", logs: "blob source skipped", first: "down"},
		{name: "lost blob fails over", srcs: func() []*fakeSource {
			lost := newFake("lost", blobA)
			lost.fetchErr = fmt.Errorf("gone: %w", hfserr.ErrNotFound)
			return []*fakeSource{lost, newFake("b", blobA)}
		}, off: 0, n: 10, servedBy: "b", first: "lost"},
		{name: "one source: its error passes through", srcs: func() []*fakeSource {
			return []*fakeSource{newFake("a", blobA)}
		}, off: 40, n: 10, want: hfserr.ErrInvalid},
		{name: "bad range", srcs: func() []*fakeSource {
			return []*fakeSource{newFake("a", blobA)}
		}, off: -1, n: 10, want: hfserr.ErrInvalid},
		{name: "nobody has it", srcs: func() []*fakeSource {
			return []*fakeSource{newFake("a"), newFake("b")}
		}, off: 0, n: 1, want: hfserr.ErrNotFound},
		{name: "all who have it are down", srcs: func() []*fakeSource {
			d1, d2 := newFake("d1", blobA), newFake("d2", blobA)
			d1.fetchErr, d2.fetchErr = errDown, errDown
			return []*fakeSource{d1, newFake("none"), d2}
		}, off: 0, n: 1, want: hfserr.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			s := NewSet(slog.New(slog.NewTextHandler(&logs, nil)))
			srcs := tc.srcs()
			for _, f := range srcs {
				s.Add(f)
				if f.name == tc.first {
					s.Learn(digA, f)
				}
			}
			got, err := s.FetchRange(context.Background(), digA, tc.off, tc.n)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil || !bytes.Equal(got, blobA[tc.off:tc.off+tc.n]) {
				t.Fatalf("FetchRange = %q, %v", got, err)
			}
			if w := s.Where(digA); len(w) == 0 || w[0] != tc.servedBy {
				t.Errorf("Where = %v, want %s first", w, tc.servedBy)
			}
			if !strings.Contains(logs.String(), tc.logs) {
				t.Errorf("log lacks %q:\n%s", tc.logs, logs.String())
			}
		})
	}
}

func TestSetFetchRangeCancelled(t *testing.T) {
	slow := newFake("slow", blobA)
	other := newFake("other", blobA)
	s := NewSet(nil, slow)
	if _, err := s.StatBlob(context.Background(), digA); err != nil {
		t.Fatal(err)
	}
	s.Add(other)
	slow.block = true
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.FetchRange(ctx, digA, 0, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if other.stats.Load()+other.fetches.Load() != 0 {
		t.Error("a cancelled fetch moved on to another source")
	}
}

// Cold concurrent reads of one blob share one search of the sources.
func TestSetSharedSearch(t *testing.T) {
	a, b := newFake("a"), newFake("b", blobA)
	s := NewSet(nil, a, b)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			off := int64(i)
			got, err := s.FetchRange(context.Background(), digA, off, 1)
			if err != nil || got[0] != blobA[off] {
				t.Errorf("FetchRange(%d) = %q, %v", off, got, err)
			}
		})
	}
	wg.Wait()
	if a.stats.Load() > 2 || b.stats.Load() > 2 {
		t.Errorf("stats a=%d b=%d, want a shared search", a.stats.Load(), b.stats.Load())
	}
	if b.fetches.Load() != 8 {
		t.Errorf("fetches = %d, want 8", b.fetches.Load())
	}
}

func TestSetReject(t *testing.T) {
	liar := newFake("liar")
	liar.blobs[digA] = bytes.ToUpper(blobA)
	honest := newFake("honest", blobA)
	var logs syncBuffer
	s := NewSet(slog.New(slog.NewTextHandler(&logs, nil)), liar, honest)
	s.Learn(digA, liar) // the liar is asked first
	ctx := context.Background()

	got, err := s.FetchRange(ctx, digA, 0, int64(len(blobA)))
	if err != nil || digest.Of(got) == digA {
		t.Fatalf("first fetch = %q, %v; want the liar's bytes", got, err)
	}
	if !s.Reject(digA) {
		t.Fatal("Reject = false with an honest source left")
	}
	if !strings.Contains(logs.String(), "source=liar") {
		t.Errorf("rejection not logged:\n%s", logs.String())
	}
	got, err = s.FetchRange(ctx, digA, 0, int64(len(blobA)))
	if err != nil || digest.Of(got) != digA {
		t.Fatalf("second fetch = %q, %v; want the honest bytes", got, err)
	}
	if w := s.Where(digA); !slices.Equal(w, []string{"honest"}) {
		t.Errorf("Where = %v, want [honest]", w)
	}
	s.Learn(digA, liar) // a rejected source stays rejected
	if w := s.Where(digA); !slices.Equal(w, []string{"honest"}) {
		t.Errorf("Where after Learn = %v, want [honest]", w)
	}
	if s.Reject(digA) {
		t.Error("Reject = true with every source rejected")
	}
	if _, err := s.StatBlob(ctx, digA); !errors.Is(err, hfserr.ErrIntegrity) {
		t.Errorf("StatBlob after rejecting all = %v, want ErrIntegrity", err)
	}
	// Other digests are unaffected.
	other := []byte("other")
	liar.blobs[digest.Of(other)] = other
	if _, err := s.FetchRange(ctx, digest.Of(other), 0, 5); err != nil {
		t.Errorf("other digest: %v", err)
	}
	st := s.Stats()
	if len(st) != 2 || st[0].Rejected != 1 || st[1].Rejected != 1 || st[0].Fetches != 2 || st[1].Fetches != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

// A learnt source that is not listed is used for its digest only; a
// source added later is asked.
func TestSetLearnAndAdd(t *testing.T) {
	listed := newFake("listed")
	hidden := newFake("hidden", blobA)
	s := NewSet(nil, listed)
	ctx := context.Background()
	if _, err := s.StatBlob(ctx, digA); !errors.Is(err, hfserr.ErrNotFound) {
		t.Fatalf("before Learn: %v", err)
	}
	s.Learn(digA, hidden)
	if got, err := s.FetchRange(ctx, digA, 0, 3); err != nil || string(got) != "the" {
		t.Fatalf("after Learn: %q, %v", got, err)
	}
	blobB := []byte("bbb")
	hidden.blobs[digest.Of(blobB)] = blobB
	if _, err := s.StatBlob(ctx, digest.Of(blobB)); !errors.Is(err, hfserr.ErrNotFound) {
		t.Errorf("learnt source asked for another digest: %v", err)
	}
	late := newFake("late", blobB)
	s.Add(late)
	s.Add(late)
	if size, err := s.StatBlob(ctx, digest.Of(blobB)); err != nil || size != 3 {
		t.Errorf("added source: %d, %v", size, err)
	}
	if n := len(s.Stats()); n != 2 {
		t.Errorf("%d listed sources, want 2", n)
	}
}

// Clients over real registries work as Set members.
func TestSetOfClients(t *testing.T) {
	f := newFixture(t)
	empty := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(empty.Close)
	other, err := New(strings.TrimPrefix(empty.URL, "http://")+"/test/repo", Options{Keychain: f.client(t).keychain, RetryBase: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := f.client(t)
	s := NewSet(nil, other, c)
	got, err := s.FetchRange(context.Background(), f.blobDigest, 100, 1000)
	if err != nil || !bytes.Equal(got, f.blob[100:1100]) {
		t.Fatalf("FetchRange: %d bytes, %v", len(got), err)
	}
	if w := s.Where(f.blobDigest); !slices.Equal(w, []string{c.Name()}) {
		t.Errorf("Where = %v, want [%s]", w, c.Name())
	}
	if st := s.Stats(); st[0].Found != 0 || st[0].Fetches != 0 || st[1].Found != 1 || st[1].Bytes != 1000 {
		t.Errorf("Stats = %+v", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// Once every source was rejected for a digest, the answer that says so ends
// the rejections: a source whose fault has cleared serves it again.
func TestSetRejectionsEnd(t *testing.T) {
	only := newFake("only")
	only.blobs[digA] = bytes.ToUpper(blobA)
	s := NewSet(nil, only)
	ctx := context.Background()
	if _, err := s.FetchRange(ctx, digA, 0, int64(len(blobA))); err != nil {
		t.Fatal(err)
	}
	if s.Reject(digA) {
		t.Fatal("Reject = true with the only source rejected")
	}
	if _, err := s.FetchRange(ctx, digA, 0, int64(len(blobA))); !errors.Is(err, hfserr.ErrIntegrity) {
		t.Fatalf("fetch with every source rejected = %v, want ErrIntegrity", err)
	}
	only.blobs[digA] = blobA // the fault cleared
	got, err := s.FetchRange(ctx, digA, 0, int64(len(blobA)))
	if err != nil || !bytes.Equal(got, blobA) {
		t.Fatalf("fetch after the fault cleared = %q, %v; want the blob", got, err)
	}
}
