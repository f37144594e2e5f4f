package layerindex

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Source opens layers and tells what the cache knows of them.
type Source interface {
	// Open returns a Blob of d (size bytes); Close releases it.
	Open(d digest.Digest, size int64) BlobCloser
	// State reports whether d verified whole, or failed verification and
	// is quarantined (lazy mode).
	State(d digest.Digest, size int64) (verified, quarantined bool)
}

// BlobCloser is a Blob to close after use (cache.Reader).
type BlobCloser interface {
	Blob
	Close() error
}

// Options configures an Indexer. Zero values take the documented defaults.
type Options struct {
	// Store keeps indexes across restarts; nil keeps them in memory only.
	Store *Store
	// Span is the uncompressed distance between gzip block checkpoints;
	// 0 => DefaultSpan (2 MiB). At least 64 KiB.
	Span   int64
	Spans  int // decoded spans kept in memory; 0 => 8
	Layers int // indexed layers kept in memory; 0 => 32
	Logger *slog.Logger
}

// Indexer indexes layers once and hands out their Layer.
type Indexer struct {
	src    Source
	o      Options
	log    *slog.Logger
	spans  *spanCache
	chunks *chunkCache
	layers *lru.Cache[layerKey, *Layer]
	flight singleflight.Group

	mu      sync.Mutex
	pending map[digest.Digest]*storeWriter // built from bytes not yet verified (lazy)
}

// layerKey names an indexed layer in memory: a layer with a TOC may be
// indexed both ways (its TOC for layers/<n>/, a full pass for rootfs/
// and its diff_id).
type layerKey struct {
	d   digest.Digest
	toc bool
}

// New returns an Indexer reading layers from src.
func New(src Source, o Options) *Indexer {
	if o.Span <= 0 {
		o.Span = DefaultSpan
	}
	o.Span = max(o.Span, memberSpan)
	if o.Layers <= 0 {
		o.Layers = 32
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// An evicted layer keeps working for whoever holds it; its idle
	// cursors (decoders) are let go.
	layers, err := lru.NewWithEvict[layerKey, *Layer](o.Layers, func(_ layerKey, l *Layer) { l.cursors.closeAll() })
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &Indexer{src: src, o: o, log: o.Logger.With("component", "layerindex"),
		spans: newSpanCache(o.Spans), chunks: newChunkCache(defaultChunkBytes), layers: layers,
		pending: map[digest.Digest]*storeWriter{}}
}

// Layer returns the indexed layer d of size bytes: from memory, from the
// store, or by a first pass over the whole layer (shared by concurrent
// callers and run without their cancellation; each caller stops waiting
// when its ctx ends). A layer that is not a tar stream in a format
// hashfs reads wraps hfserr.ErrInvalid.
func (x *Indexer) Layer(ctx context.Context, d digest.Digest, size int64) (*Layer, error) {
	if l, ok := x.layers.Get(layerKey{d: d}); ok && l.Size == size {
		if err := x.settle(l); err == nil {
			return l, nil
		}
	}
	base := context.WithoutCancel(ctx)
	ch := x.flight.DoChan(d.Hex(), func() (any, error) { return x.load(base, d, size) })
	return awaitLayer(ctx, ch)
}

// awaitLayer waits for a shared indexing call; ctx ends only this wait.
func awaitLayer(ctx context.Context, ch <-chan singleflight.Result) (*Layer, error) {
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Layer), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// settle persists an index built from bytes that have verified since,
// and drops one whose layer failed verification.
func (x *Indexer) settle(l *Layer) error {
	if l.TOC.Kind != NoTOC {
		return nil // stored when built: its bytes were checked against the manifest
	}
	x.mu.Lock()
	w := x.pending[l.Digest]
	x.mu.Unlock()
	if w == nil {
		return nil
	}
	verified, quarantined := x.src.State(l.Digest, l.Size)
	switch {
	case quarantined:
		x.forget(l.Digest)
		return fmt.Errorf("layer %s failed verification: %w", l.Digest, hfserr.ErrIntegrity)
	case verified:
		x.mu.Lock()
		if x.pending[l.Digest] != w {
			x.mu.Unlock()
			return nil // another caller settled it
		}
		delete(x.pending, l.Digest)
		x.mu.Unlock()
		if err := w.commit(l.Index); err != nil {
			x.log.Warn("cannot store layer index", "layer", l.Digest.String(), "err", err)
		}
	}
	return nil
}

// forget drops d from memory, with its decoded spans and any index of it
// waiting to be stored. A Layer of d already handed out fails every read
// from then on.
func (x *Indexer) forget(d digest.Digest) {
	for _, k := range []layerKey{{d, false}, {d, true}} {
		if l, ok := x.layers.Peek(k); ok {
			l.dead.Store(true)
		}
		x.layers.Remove(k)
	}
	x.spans.drop(d)
	x.chunks.drop(d)
	x.mu.Lock()
	w := x.pending[d]
	delete(x.pending, d)
	x.mu.Unlock()
	if w != nil {
		w.abort()
	}
}

func (x *Indexer) load(ctx context.Context, d digest.Digest, size int64) (*Layer, error) {
	if l, ok := x.layers.Get(layerKey{d: d}); ok && l.Size == size {
		if err := x.settle(l); err == nil {
			return l, nil
		}
	}
	if st := x.o.Store; st != nil {
		ix, wins, err := st.load(d, size, nil)
		if err != nil {
			x.log.Warn("stored layer index unusable; indexing again", "layer", d.String(), "err", err)
		}
		if ix != nil {
			l := x.newLayer(ix, wins)
			x.layers.Add(layerKey{d: d}, l)
			return l, nil
		}
	}
	return x.build(ctx, d, size)
}

// build runs the first pass over d.
func (x *Indexer) build(ctx context.Context, d digest.Digest, size int64) (*Layer, error) {
	blob := x.src.Open(d, size)
	defer blob.Close()
	var sink windowSink
	var wins windows
	var w *storeWriter
	if x.o.Store != nil {
		var err error
		if w, err = x.o.Store.create(); err != nil {
			x.log.Warn("layer index kept in memory only", "layer", d.String(), "err", err)
		} else {
			sink, wins = w, w.wins
		}
	}
	if w == nil {
		m := &memWindows{}
		sink, wins = m, m
	}
	x.log.Info("indexing layer", "layer", d.String(), "size", size)
	ix, err := scan(ctx, blob, d, size, x.o.Span, sink)
	if err != nil {
		if w != nil {
			w.abort()
		}
		if errors.Is(err, hfserr.ErrInvalid) {
			x.log.Warn("layer is not a readable tar stream", "layer", d.String(), "err", err)
		}
		return nil, err
	}
	l := x.newLayer(ix, wins)
	windows := 0
	for _, cp := range ix.Checkpoints {
		if cp.Kind == BlockStart {
			windows++
		}
	}
	x.log.Info("layer indexed", "layer", d.String(), "format", ix.Format.String(), "entries", len(ix.Entries),
		"tar_size", ix.TarSize, "checkpoints", len(ix.Checkpoints), "windows", windows)
	if w != nil {
		// An index is stored only once its bytes are known good: always
		// in strict mode, after the background verification in lazy mode.
		x.mu.Lock()
		x.pending[d] = w
		x.mu.Unlock()
		if err := x.settle(l); err != nil {
			return nil, err
		}
	}
	x.layers.Add(layerKey{d: d}, l)
	return l, nil
}

func (x *Indexer) newLayer(ix *Index, wins windows) *Layer {
	l := &Layer{Index: ix, wins: wins, spans: x.spans, chunks: x.chunks}
	l.open = func() BlobCloser { return x.src.Open(ix.Digest, ix.Size) }
	l.broken = func() {
		x.log.Warn("stored layer index is corrupt; dropping it", "layer", ix.Digest.String())
		x.forget(ix.Digest)
		if x.o.Store != nil {
			x.o.Store.remove(ix.Digest)
		}
	}
	// Every read checks the layer until it is known verified (at once in
	// strict mode): a lazy index is stored by the first read after the
	// layer verified, and one of a layer that failed is dropped.
	l.usable = func() error {
		if !l.dead.Load() && !l.good.Load() {
			switch verified, quarantined := x.src.State(ix.Digest, ix.Size); {
			case quarantined:
				x.forget(ix.Digest)
				l.dead.Store(true)
			case verified:
				l.good.Store(true)
				x.settle(l)
			}
		}
		if l.dead.Load() {
			return fmt.Errorf("layer %s: index dropped (the layer failed verification or its stored index was damaged): %w",
				ix.Digest, hfserr.ErrIntegrity)
		}
		return nil
	}
	l.Root = buildTree(l, ix.Entries, x.log)
	return l
}
