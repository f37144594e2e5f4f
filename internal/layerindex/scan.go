package layerindex

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
	"github.com/hashfs/hashfs/internal/layerindex/inflate"
)

const (
	// DefaultSpan is the uncompressed distance between gzip block
	// checkpoints (SOCI uses 4 MiB, zran 1 MiB).
	DefaultSpan = 2 << 20
	// memberSpan is the least distance between checkpoints at gzip
	// member or zstd frame starts, which cost no window.
	memberSpan = 64 << 10
	// scanBuffer is how much of the compressed layer one read asks for
	// during the first pass.
	scanBuffer = 1 << 20
	windowSize = 32 << 10
)

// windowSink keeps the windows of block checkpoints as the first pass
// finds them; put returns the window's number.
type windowSink interface {
	put(w []byte) (int, error)
}

// scan is the first pass: it decodes the whole layer once, through
// blob, and returns its Index. Checkpoints of gzip blocks are taken
// every span bytes of output, their windows given to sink.
func scan(ctx context.Context, blob Blob, d digest.Digest, size, span int64, sink windowSink) (*Index, error) {
	ix := &Index{Version: indexVersion, Digest: d, Size: size}
	src := newSeqReader(ctx, blob, size, 0, scanBuffer)
	head, err := src.peek(4)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", d, err)
	}
	ix.Format = sniff(head)
	last := func() *Checkpoint { return &ix.Checkpoints[len(ix.Checkpoints)-1] }
	atMember := func(in, out int64) {
		if len(ix.Checkpoints) == 0 || out-last().Out >= memberSpan {
			ix.Checkpoints = append(ix.Checkpoints, Checkpoint{Out: out, In: in * 8, Kind: MemberStart, Window: -1})
		}
	}
	var sinkErr error
	var stream io.Reader
	switch ix.Format {
	case Tar:
		stream = src
		ix.Checkpoints = []Checkpoint{{Window: -1}}
	case Gzip:
		var win []byte
		stream = &gzReader{src: src, onMember: atMember, onBlock: func(fl *inflate.Reader, out int64) {
			if out-last().Out < span || sinkErr != nil {
				return
			}
			if _, nb := fl.Pending(); nb > 7 {
				return // never at a block boundary; be safe anyway
			}
			win = fl.Window(win[:0])
			w, err := sink.put(win)
			if err != nil {
				sinkErr = err
				return
			}
			_, nb := fl.Pending()
			ix.Checkpoints = append(ix.Checkpoints, Checkpoint{Out: out, In: src.pos*8 - int64(nb), Kind: BlockStart, Window: w})
		}}
	case Zstd:
		z, err := newZstdReader(src, 0)
		if err != nil {
			return nil, err
		}
		defer z.Close()
		z.onFrame = atMember
		stream = z
	}
	h := sha256.New()
	cr := &countReader{r: io.TeeReader(stream, h)}
	if err := scanTar(cr, ix); err != nil {
		return nil, fmt.Errorf("layer %s (%s): %w", d, ix.Format, err)
	}
	// Whatever follows the end-of-archive blocks is part of the diff_id.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return nil, fmt.Errorf("layer %s (%s): %w", d, ix.Format, err)
	}
	if sinkErr != nil {
		return nil, sinkErr
	}
	if len(ix.Checkpoints) == 0 {
		ix.Checkpoints = []Checkpoint{{Window: -1}} // an empty stream
	}
	ix.TarSize = cr.n
	ix.DiffID = digest.Digest(h.Sum(nil))
	return ix, nil
}

// scanTar reads every tar header, recording where each entry's data
// starts. archive/tar reads exactly the blocks it needs from cr and does
// not buffer, so cr's count after Next is the data offset.
func scanTar(cr *countReader, ix *Index) error {
	tr := tar.NewReader(cr)
	next := int64(0) // where the next entry's header blocks start, -1 if unknown
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return tarErr(err, fmt.Sprintf("tar entry %d at offset %d", len(ix.Entries), cr.n))
		}
		e := Entry{
			Name: hdr.Name, Linkname: hdr.Linkname, Type: hdr.Typeflag,
			Mode: hdr.Mode, UID: hdr.Uid, GID: hdr.Gid, Size: hdr.Size,
			ModTime: hdr.ModTime.Unix(), ModNsec: int64(hdr.ModTime.Nanosecond()),
			Devmajor: hdr.Devmajor, Devminor: hdr.Devminor,
			Offset: cr.n, HeaderOffset: next,
			Sparse: hdr.Typeflag == tar.TypeGNUSparse || isPAXSparse(hdr),
		}
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[name] = v
			}
		}
		switch hdr.Typeflag {
		case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
			next = cr.n // header-only types have no data, whatever Size says
		case tar.TypeXGlobalHeader:
			next = roundBlock(cr.n) // its records were read, its padding not
		default:
			next = roundBlock(cr.n + hdr.Size)
		}
		if e.Sparse {
			// Its data on the wire is shorter than Size and archive/tar
			// does not say how long: read it through (holes cost no I/O) to
			// find where the next entry starts, unless it is huge.
			next = -1
			if hdr.Size <= maxSparseDrain {
				if _, err := io.Copy(io.Discard, tr); err != nil {
					return tarErr(err, fmt.Sprintf("sparse tar entry %q", hdr.Name))
				}
				next = roundBlock(cr.n)
			}
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		ix.Entries = append(ix.Entries, e)
	}
}

// maxSparseDrain is the largest sparse file read through in the first
// pass; an entry after a larger one has no known HeaderOffset.
const maxSparseDrain = 64 << 20

// tarErr marks archive/tar's complaints about the stream as invalid
// input; errors reading the layer keep their kind.
func tarErr(err error, what string) error {
	if errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) || strings.HasPrefix(err.Error(), "archive/tar:") {
		return fmt.Errorf("%s: %v: %w", what, err, hfserr.ErrInvalid)
	}
	return err
}

func roundBlock(n int64) int64 { return (n + 511) &^ 511 }

func isPAXSparse(h *tar.Header) bool {
	_, ok := h.PAXRecords["GNU.sparse.major"]
	_, ok2 := h.PAXRecords["GNU.sparse.map"]
	_, ok3 := h.PAXRecords["GNU.sparse.numblocks"]
	return ok || ok2 || ok3
}
