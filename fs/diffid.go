package fs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
	"github.com/hashfs/hashfs/internal/layerindex"
	"github.com/hashfs/hashfs/manifestview"
)

// sha256/<diff_id>: the uncompressed tar of a layer, as `docker save`
// writes it (layer.tar), found by the diff_id its image config lists. It
// is served only after the whole uncompressed stream hashed to the
// diff_id (the layer's first pass computes that hash), in both modes.

// diffIDSet knows the diff_ids of the image configs read so far.
type diffIDSet struct {
	mu      sync.Mutex
	layers  map[digest.Digest]manifestview.Desc // diff_id -> the layer listed with it
	scanned map[digest.Digest]bool              // manifests whose config was read
}

func newDiffIDSet() *diffIDSet {
	return &diffIDSet{layers: map[digest.Digest]manifestview.Desc{}, scanned: map[digest.Digest]bool{}}
}

// maxConfig bounds the image configs read for their diff_ids.
const maxConfig = 16 << 20

// diffIDs reads the config of image manifest m (through the cache,
// verified like any blob) and returns its diff_ids, one per layer.
func (r *Root) diffIDs(ctx context.Context, m digest.Digest, im manifestview.Image) ([]digest.Digest, error) {
	c := im.Config
	if c == nil || c.Size > maxConfig {
		return nil, fmt.Errorf("manifest %s: no usable image config: %w", m, hfserr.ErrInvalid)
	}
	blob := r.cfg.Cache.Open(c.Digest, c.Size)
	defer blob.Close()
	body := make([]byte, c.Size)
	if n, err := blob.ReadAt(ctx, body, 0); n < len(body) {
		return nil, fmt.Errorf("config %s: %w", c.Digest, err)
	}
	ids, err := manifestview.DiffIDs(body)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", c.Digest, err)
	}
	if len(ids) != len(im.Layers) {
		return nil, fmt.Errorf("config %s lists %d diff_ids for %d layers: %w", c.Digest, len(ids), len(im.Layers), hfserr.ErrIntegrity)
	}
	s := r.diffs
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scanned[m] = true
	for i, id := range ids {
		if _, ok := s.layers[id]; !ok {
			s.layers[id] = im.Layers[i]
		}
	}
	return ids, nil
}

// diffLayer returns the layer whose diff_id is d, reading the configs of
// the image manifests index knows that were not read yet.
func (r *Root) diffLayer(ctx context.Context, index Index, d digest.Digest) (manifestview.Desc, bool) {
	s := r.diffs
	s.mu.Lock()
	desc, ok := s.layers[d]
	s.mu.Unlock()
	if ok {
		return desc, true
	}
	for _, m := range index.Known() {
		if !manifestview.IsManifestType(m.MediaType) {
			continue
		}
		s.mu.Lock()
		done := s.scanned[m.Digest]
		s.mu.Unlock()
		if done {
			continue
		}
		doc, err := index.Manifest(ctx, m.Digest)
		if err != nil {
			continue // tried again on the next miss
		}
		im, err := manifestview.ImageOf(doc)
		if err != nil || !im.IsImage {
			s.mu.Lock()
			s.scanned[m.Digest] = true
			s.mu.Unlock()
			continue
		}
		if _, err := r.diffIDs(ctx, m.Digest, im); err != nil {
			r.cfg.Logger.Debug("cannot read diff_ids", "manifest", m.Digest.String(), "err", err)
		}
		s.mu.Lock()
		desc, ok = s.layers[d]
		s.mu.Unlock()
		if ok {
			return desc, true
		}
	}
	return manifestview.Desc{}, false
}

// lookupDiffID answers sha256/<d> for a diff_id: handled is false when d
// is not the diff_id of any image seen.
func (r *Root) lookupDiffID(ctx context.Context, parent *gofs.Inode, index Index, d digest.Digest, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno, bool) {
	desc, ok := r.diffLayer(ctx, index, d)
	if !ok {
		return nil, 0, false
	}
	l, err := r.layers.Layer(ctx, desc.Digest, desc.Size)
	if err == nil && l.DiffID != d {
		err = fmt.Errorf("layer %s decompresses to %s, not the diff_id %s: %w", desc.Digest, l.DiffID, d, hfserr.ErrIntegrity)
	}
	if err != nil {
		if errors.Is(err, hfserr.ErrNotFound) {
			err = fmt.Errorf("%v: %w", err, hfserr.ErrUnavailable) // the diff_id is known: not ENOENT
		}
		return nil, r.fail("lookup diff_id", manifestview.Desc{Digest: d}, err), true
	}
	n := &diffTar{root: r, id: d, layer: l}
	n.fill(&out.Attr)
	return parent.NewInode(ctx, n, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: d.Ino(l.TarSize)}), 0, true
}

// diffTar is sha256/<diff_id>.
type diffTar struct {
	gofs.Inode
	readOnly
	root  *Root
	id    digest.Digest
	layer *layerindex.Layer
}

var (
	_ = (gofs.NodeGetattrer)((*diffTar)(nil))
	_ = (gofs.NodeOpener)((*diffTar)(nil))
	_ = (gofs.NodeReader)((*diffTar)(nil))
)

func (f *diffTar) fill(a *fuse.Attr) { f.root.contentAttr(a, f.id, f.layer.TarSize) }

func (f *diffTar) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.fill(&out.Attr)
	return 0
}

func (f *diffTar) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if isWriteOpen(flags) {
		return nil, 0, syscall.EROFS
	}
	l, errno := f.root.live(ctx, f.layer)
	if errno != 0 {
		return nil, 0, errno
	}
	return f.root.openStream(l, func(s *layerindex.Stream) streamReader { return s })
}

func (f *diffTar) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if r, ok := fh.(gofs.FileReader); ok {
		return r.Read(ctx, dest, off)
	}
	return nil, syscall.EBADF
}
