package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/first"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// BlobSource is anything that serves blobs by digest: a registry Client, a
// Mirrored repository, a Layout on disk, a descriptor's URLs. Sources are
// compared with ==, so use pointer types.
type BlobSource interface {
	Name() string
	StatBlob(ctx context.Context, d digest.Digest) (int64, error)
	FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error)
}

var _ BlobSource = (*Client)(nil)

// SetEntries is how many digests a Set remembers the whereabouts of.
const SetEntries = 64 << 10

// Set resolves a digest anywhere: it asks all its sources, remembers which
// ones have which blob, reads from one of them and moves on to another when
// that one fails or (see Reject) served bytes that did not hash to the
// digest. It is safe for concurrent use.
type Set struct {
	log   *slog.Logger
	stats singleflight.Group // one search of all sources per digest at a time

	mu      sync.Mutex
	members []*member                               // listed sources, in the order added
	known   *lru.Cache[digest.Digest, *whereabouts] // guarded by mu as well, for compound updates
}

// member is a listed source and its counters.
type member struct {
	src                                      BlobSource
	found, missing, fetches, bytes, failures atomic.Int64
	rejected                                 atomic.Int64
}

// whereabouts is what a Set knows of one digest; guarded by Set.mu.
type whereabouts struct {
	has      []BlobSource // known to have it; the one that served it last first
	rejected []BlobSource // served other bytes: never asked again
	served   []BlobSource // served bytes of it since the last Reject
}

// SourceStats are the running totals of one listed source of a Set.
type SourceStats struct {
	Name     string
	Found    int64 // stats it answered with a size
	Missing  int64 // stats it answered with not found
	Fetches  int64 // ranges it served
	Bytes    int64 // bytes in those ranges
	Failures int64 // stats and fetches that failed otherwise
	Rejected int64 // digests it was excluded for after serving other bytes
}

// NewSet returns a Set of srcs; a nil logger discards.
func NewSet(logger *slog.Logger, srcs ...BlobSource) *Set {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	known, err := lru.New[digest.Digest, *whereabouts](SetEntries)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	s := &Set{log: logger, known: known}
	for _, src := range srcs {
		s.Add(src)
	}
	return s
}

// Add lists src, after the sources already listed. Adding a source twice,
// or nil, does nothing.
func (s *Set) Add(src BlobSource) {
	if src == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.member(src) == nil {
		s.members = append(s.members, &member{src: src})
	}
}

// Learn records that d is at src, which is then asked for d even if it is
// not listed (a blob found through one repository, a descriptor's URLs).
// A source rejected for d stays rejected.
func (s *Set) Learn(d digest.Digest, src BlobSource) {
	if src == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noteHas(s.entry(d), src)
}

// Where returns the names of the sources known to have d.
func (s *Set) Where(d digest.Digest) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.known.Peek(d)
	if !ok {
		return nil
	}
	names := make([]string, 0, len(w.has))
	for _, src := range w.has {
		names = append(names, src.Name())
	}
	return names
}

// Stats returns the running totals of the listed sources, in order.
func (s *Set) Stats() []SourceStats {
	s.mu.Lock()
	members := slices.Clone(s.members)
	s.mu.Unlock()
	out := make([]SourceStats, 0, len(members))
	for _, m := range members {
		out = append(out, SourceStats{
			Name: m.src.Name(), Found: m.found.Load(), Missing: m.missing.Load(),
			Fetches: m.fetches.Load(), Bytes: m.bytes.Load(), Failures: m.failures.Load(),
			Rejected: m.rejected.Load(),
		})
	}
	return out
}

// StatBlob returns the size of d. A source known to have d is asked first;
// otherwise, or if it fails, every other candidate is asked in parallel and
// the first to answer wins (the others are cancelled). All answering not
// found wraps hfserr.ErrNotFound; any other failure, with nobody having d,
// wraps hfserr.ErrUnavailable and the causes.
func (s *Set) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	what := "stat " + d.String()
	var failed []sourceErr
	if src := s.pick(d, nil); src != nil {
		size, err := s.statOne(ctx, d, src)
		if err == nil {
			return size, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		failed = append(failed, sourceErr{src, err})
	}
	size, _, errs := s.search(ctx, d, sources(failed))
	if errs == nil {
		return size, nil
	}
	return 0, s.verdict(ctx, d, what, append(failed, errs...))
}

// FetchRange returns bytes [off, off+n) of d from a source known to have
// it, searching all sources first if none is known. When a source fails
// for any reason but the end of ctx, the next one that has d is tried.
// The bytes are not verified: if d does not hash right, call Reject.
func (s *Set) FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	what := fmt.Sprintf("fetch %s [%d, %d+%d)", d, off, off, n)
	if err := checkRange(off, n); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var failed []sourceErr
	for {
		tried := sources(failed)
		src := s.pick(d, tried)
		if src == nil {
			var errs []sourceErr
			_, src, errs = s.search(ctx, d, tried)
			if src == nil {
				return nil, s.verdict(ctx, d, what, append(failed, errs...))
			}
		}
		b, err := src.FetchRange(ctx, d, off, n)
		m := s.lookup(src)
		if err == nil {
			if m != nil {
				m.fetches.Add(1)
				m.bytes.Add(int64(len(b)))
			}
			s.noteServed(d, src)
			return b, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if m != nil {
			m.failures.Add(1)
		}
		if errors.Is(err, hfserr.ErrNotFound) {
			s.forget(d, src)
		}
		s.log.Info("blob source skipped: fetch failed", "digest", d.String(), "source", src.Name(), "err", err)
		failed = append(failed, sourceErr{src, err})
	}
}

// Reject excludes for d the sources that served bytes of d through this Set
// since the last Reject: the cache found that those bytes do not hash to d.
// It reports whether another source may still have d, so that the caller
// may try again.
func (s *Set) Reject(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.entry(d)
	for _, src := range w.served {
		if !slices.Contains(w.rejected, src) {
			w.rejected = append(w.rejected, src)
		}
		w.has = slices.DeleteFunc(w.has, func(x BlobSource) bool { return x == src })
		if m := s.member(src); m != nil {
			m.rejected.Add(1)
		}
		s.log.Info("blob source skipped: served bytes that do not match the digest", "digest", d.String(), "source", src.Name())
	}
	w.served = nil
	if len(w.has) > 0 {
		return true
	}
	for _, m := range s.members {
		if !slices.Contains(w.rejected, m.src) {
			return true
		}
	}
	return false
}

// sourceErr is one source's failure.
type sourceErr struct {
	src BlobSource
	err error
}

func sources(errs []sourceErr) []BlobSource {
	out := make([]BlobSource, len(errs))
	for i, e := range errs {
		out[i] = e.src
	}
	return out
}

// statOne asks src for d's size and records the answer.
func (s *Set) statOne(ctx context.Context, d digest.Digest, src BlobSource) (int64, error) {
	size, err := src.StatBlob(ctx, d)
	m := s.lookup(src)
	switch {
	case err == nil:
		if m != nil {
			m.found.Add(1)
		}
		s.mu.Lock()
		s.noteHas(s.entry(d), src)
		s.mu.Unlock()
	case ctx.Err() != nil:
	case errors.Is(err, hfserr.ErrNotFound):
		if m != nil {
			m.missing.Add(1)
		}
		s.forget(d, src)
	default:
		if m != nil {
			m.failures.Add(1)
		}
	}
	return size, err
}

// search asks every candidate for d but those in skip, in parallel, and
// returns the first to answer with a size, or every failure (errs is nil on
// success). Searches for the same digest with nothing to skip are shared;
// they run until the first answer even if the caller that started them
// gives up.
func (s *Set) search(ctx context.Context, d digest.Digest, skip []BlobSource) (int64, BlobSource, []sourceErr) {
	type result struct {
		size int64
		src  BlobSource
		errs []sourceErr
	}
	run := func(ctx context.Context) result {
		cands := s.candidates(d, skip)
		if len(cands) == 0 {
			return result{errs: []sourceErr{}}
		}
		// The slower sources are cancelled once one has answered.
		failed := make([]error, len(cands))
		i, size, _ := first.Success(ctx, len(cands), func(ctx context.Context, i int) (int64, error) {
			size, err := s.statOne(ctx, d, cands[i])
			failed[i] = err
			return size, err
		})
		if i >= 0 {
			return result{size: size, src: cands[i]}
		}
		errs := make([]sourceErr, len(cands))
		for i, src := range cands {
			errs[i] = sourceErr{src, failed[i]}
		}
		return result{errs: errs}
	}
	if len(skip) > 0 {
		r := run(ctx)
		return r.size, r.src, r.errs
	}
	ch := s.stats.DoChan(d.String(), func() (any, error) {
		return run(context.WithoutCancel(ctx)), nil
	})
	select {
	case <-ctx.Done():
		return 0, nil, []sourceErr{{nil, ctx.Err()}}
	case r := <-ch:
		res := r.Val.(result)
		return res.size, res.src, res.errs
	}
}

// verdict sums up the failures of every source asked for d.
func (s *Set) verdict(ctx context.Context, d digest.Digest, what string, errs []sourceErr) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	// Every source but the rejected ones is exhausted: this answer ends the
	// rejections, so the next attempt (after the caller's own failure
	// memory) asks the rejected sources again, whose fault may have cleared.
	s.mu.Lock()
	w, ok := s.known.Peek(d)
	rejected := ok && len(w.rejected) > 0
	if rejected {
		w.rejected = nil
	}
	s.mu.Unlock()
	onlyMissing := true
	for _, e := range errs {
		onlyMissing = onlyMissing && errors.Is(e.err, hfserr.ErrNotFound)
	}
	if rejected && onlyMissing {
		return fmt.Errorf("%s: every source that had it served other bytes: %w", what, hfserr.ErrIntegrity)
	}
	if len(errs) == 0 {
		return fmt.Errorf("%s: no source to ask: %w", what, hfserr.ErrNotFound)
	}
	if len(errs) == 1 {
		return fmt.Errorf("%s: %s: %w", what, errs[0].src.Name(), errs[0].err)
	}
	missing := 0
	var other []error
	for _, e := range errs {
		switch {
		case errors.Is(e.err, hfserr.ErrNotFound):
			missing++
		case errors.Is(e.err, hfserr.ErrInvalid):
			// Not the caller's mistake here: keep it out of errors.Is.
			other = append(other, fmt.Errorf("%s: %v", e.src.Name(), e.err))
		default:
			other = append(other, fmt.Errorf("%s: %w", e.src.Name(), e.err))
		}
	}
	if len(other) == 0 {
		return fmt.Errorf("%s: not at any of %d sources: %w", what, missing, hfserr.ErrNotFound)
	}
	return fmt.Errorf("%s: %w (%d of %d sources failed, the others do not have it): %w",
		what, hfserr.ErrUnavailable, len(other), len(errs), errors.Join(other...))
}

// pick returns the first source known to have d that is not in skip.
func (s *Set) pick(d digest.Digest, skip []BlobSource) BlobSource {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.known.Get(d)
	if !ok {
		return nil
	}
	for _, src := range w.has {
		if !slices.Contains(skip, src) {
			return src
		}
	}
	return nil
}

// candidates lists the sources to ask for d: those known to have it, then
// the listed ones, less the rejected and those in skip.
func (s *Set) candidates(d digest.Digest, skip []BlobSource) []BlobSource {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out, rejected []BlobSource
	if w, ok := s.known.Peek(d); ok {
		out = append(out, w.has...)
		rejected = w.rejected
	}
	for _, m := range s.members {
		if !slices.Contains(out, m.src) {
			out = append(out, m.src)
		}
	}
	return slices.DeleteFunc(out, func(src BlobSource) bool {
		return slices.Contains(skip, src) || slices.Contains(rejected, src)
	})
}

// entry returns d's whereabouts, creating them; s.mu is held.
func (s *Set) entry(d digest.Digest) *whereabouts {
	w, ok := s.known.Get(d)
	if !ok {
		w = &whereabouts{}
		s.known.Add(d, w)
	}
	return w
}

// noteHas records that src has the blob of w; s.mu is held.
func (s *Set) noteHas(w *whereabouts, src BlobSource) {
	if !slices.Contains(w.has, src) && !slices.Contains(w.rejected, src) {
		w.has = append(w.has, src)
	}
}

// noteServed records that src served bytes of d and puts it first.
func (s *Set) noteServed(d digest.Digest, src BlobSource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.entry(d)
	if !slices.Contains(w.served, src) {
		w.served = append(w.served, src)
	}
	if slices.Contains(w.rejected, src) {
		return // rejected while this fetch ran
	}
	if i := slices.Index(w.has, src); i != 0 {
		if i > 0 {
			w.has = slices.Delete(w.has, i, i+1)
		}
		w.has = slices.Insert(w.has, 0, src)
	}
}

// forget drops src from the sources known to have d.
func (s *Set) forget(d digest.Digest, src BlobSource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.known.Peek(d); ok {
		w.has = slices.DeleteFunc(w.has, func(x BlobSource) bool { return x == src })
	}
}

// lookup returns src's member record, or nil if it is not listed.
func (s *Set) lookup(src BlobSource) *member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.member(src)
}

// member is lookup with s.mu held.
func (s *Set) member(src BlobSource) *member {
	for _, m := range s.members {
		if m.src == src {
			return m
		}
	}
	return nil
}
