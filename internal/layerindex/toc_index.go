package layerindex

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashfs/hashfs/internal/digest"
)

// LayerFor returns layer d of size bytes indexed from the TOC its
// descriptor's annotations announce (see LayerTOC), or by a full pass
// (Layer) when they announce none or the TOC, though it matched its
// digest, is not one hashfs can use. A TOC that does not match its
// digest is an integrity error: the layer is not listed.
func (x *Indexer) LayerFor(ctx context.Context, d digest.Digest, size int64, annotations map[string]string) (*Layer, error) {
	ref, ok := TOCOf(annotations)
	if !ok {
		return x.Layer(ctx, d, size)
	}
	l, err := x.LayerTOC(ctx, d, size, ref)
	if errors.Is(err, errTOCUnusable) {
		x.log.Warn("layer's table of contents not used; indexing the whole layer", "layer", d.String(), "toc", ref.Kind.String(), "err", err)
		return x.Layer(ctx, d, size)
	}
	return l, err
}

// Again returns l indexed again the way it was (after l was dropped).
func (x *Indexer) Again(ctx context.Context, l *Layer) (*Layer, error) {
	if l.TOC.Kind != NoTOC {
		return x.LayerTOC(ctx, l.Digest, l.Size, l.TOC)
	}
	return x.Layer(ctx, l.Digest, l.Size)
}

// LayerTOC returns layer d of size bytes indexed from its TOC: from
// memory, from the store, or by reading the TOC (the footer and the TOC
// itself, not the layer: through the Source's Peek when it has one) and
// checking it against ref's digest. Such a layer lists its files and
// reads each from its own chunks, each checked against its digest from
// the TOC; it has no tar stream (no diff_id). Errors: hfserr.ErrIntegrity
// for a TOC that does not match ref, errTOCUnusable (wrapping
// hfserr.ErrInvalid) for one that matches but cannot be used.
func (x *Indexer) LayerTOC(ctx context.Context, d digest.Digest, size int64, ref TOCRef) (*Layer, error) {
	k := layerKey{d, true}
	if l, ok := x.layers.Get(k); ok && l.Size == size && l.TOC == ref && !l.dead.Load() {
		return l, nil
	}
	base := context.WithoutCancel(ctx)
	ch := x.flight.DoChan("toc:"+d.Hex()+":"+ref.Digest.Hex(), func() (any, error) {
		if l, ok := x.layers.Get(k); ok && l.Size == size && l.TOC == ref && !l.dead.Load() {
			return l, nil
		}
		if st := x.o.Store; st != nil {
			ix, _, err := st.load(d, size, &ref)
			if err != nil {
				x.log.Warn("stored layer index unusable; reading the TOC again", "layer", d.String(), "err", err)
			}
			if ix != nil {
				l := x.newLayer(ix, nil)
				x.layers.Add(k, l)
				return l, nil
			}
		}
		return x.buildTOC(base, d, size, ref)
	})
	return awaitLayer(ctx, ch)
}

// buildTOC reads, checks and parses d's TOC, and stores the index at
// once: its bytes were checked against the manifest, in both modes.
func (x *Indexer) buildTOC(ctx context.Context, d digest.Digest, size int64, ref TOCRef) (*Layer, error) {
	peek := func(ctx context.Context, off, n int64) ([]byte, error) {
		if p, ok := x.src.(Peeker); ok {
			return p.Peek(ctx, d, size, off, n)
		}
		blob := x.src.Open(d, size)
		defer blob.Close()
		b := make([]byte, n)
		if m, err := blob.ReadAt(ctx, b, off); int64(m) < n {
			return nil, fmt.Errorf("layer %s bytes %d+%d: %w", d, off, n, err)
		}
		return b, nil
	}
	js, payloadEnd, err := tocBytes(ctx, peek, size, ref)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", d, err)
	}
	entries, err := parseTOC(js, ref.Kind, payloadEnd, size)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", d, err)
	}
	ix := &Index{Version: indexVersion, Digest: d, Size: size, Format: Gzip, Entries: entries, TOC: ref}
	if ref.Kind == ZstdChunked {
		ix.Format = Zstd
	}
	l := x.newLayer(ix, nil)
	x.log.Info("layer indexed from its table of contents", "layer", d.String(), "toc", ref.Kind.String(),
		"toc_bytes", len(js), "entries", len(entries))
	if st := x.o.Store; st != nil {
		w, err := st.create()
		if err == nil {
			err = w.commit(ix)
			if err != nil {
				w.abort()
			}
		}
		if err != nil {
			x.log.Warn("layer index kept in memory only", "layer", d.String(), "err", err)
		}
	}
	x.layers.Add(layerKey{d, true}, l)
	return l, nil
}
