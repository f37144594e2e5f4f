package layerindex

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"

	"github.com/klauspost/compress/zstd"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Peeker reads a layer's bytes without waiting for the layer to verify,
// for bytes the caller checks against another digest before use
// (cache.Cache.Peek). A Source that is also a Peeker lets a TOC be read
// without the whole layer (strict mode); otherwise the TOC is read
// through the Source's Blob.
type Peeker interface {
	Peek(ctx context.Context, d digest.Digest, size, off, n int64) ([]byte, error)
}

const (
	// stargzFooterSize is an eStargz footer: an empty gzip member whose
	// header's Extra field holds "SG", the length 22 and
	// "%016x<toc offset>STARGZ".
	stargzFooterSize = 51
	stargzTOCName    = "stargz.index.json"
	// maxTOC bounds a TOC, compressed and as JSON.
	maxTOC = 64 << 20
)

// tocBytes reads a layer's TOC and returns its JSON, checked against
// ref's digest, and where the layer's file payloads end (the TOC's
// start). Bytes that do not hash to the announced digest, or that cannot
// be the announced TOC at all, wrap hfserr.ErrIntegrity.
func tocBytes(ctx context.Context, peek func(ctx context.Context, off, n int64) ([]byte, error), size int64, ref TOCRef) ([]byte, int64, error) {
	switch ref.Kind {
	case EStargz:
		return stargzTOC(ctx, peek, size, ref)
	case ZstdChunked:
		return zstdChunkedTOC(ctx, peek, size, ref)
	}
	return nil, 0, fmt.Errorf("TOC kind %d: %w", ref.Kind, hfserr.ErrInvalid)
}

func tocMismatch(ref TOCRef, why string, args ...any) error {
	return fmt.Errorf("%s TOC (%s): %s: %w", ref.Kind, ref.Digest, fmt.Sprintf(why, args...), hfserr.ErrIntegrity)
}

func stargzTOC(ctx context.Context, peek func(ctx context.Context, off, n int64) ([]byte, error), size int64, ref TOCRef) ([]byte, int64, error) {
	if size < stargzFooterSize {
		return nil, 0, tocMismatch(ref, "layer of %d bytes has no footer", size)
	}
	foot, err := peek(ctx, size-stargzFooterSize, stargzFooterSize)
	if err != nil {
		return nil, 0, err
	}
	tocOff, err := parseStargzFooter(foot)
	if err != nil {
		return nil, 0, tocMismatch(ref, "footer: %v", err)
	}
	n := size - stargzFooterSize - tocOff
	if tocOff < 0 || n <= 0 || n > maxTOC {
		return nil, 0, tocMismatch(ref, "footer puts the TOC at %d of %d bytes", tocOff, size)
	}
	z, err := peek(ctx, tocOff, n)
	if err != nil {
		return nil, 0, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, 0, tocMismatch(ref, "%v", err)
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil {
		return nil, 0, tocMismatch(ref, "%v", err)
	}
	if h.Name != stargzTOCName || h.Size > maxTOC {
		return nil, 0, tocMismatch(ref, "entry %q of %d bytes", h.Name, h.Size)
	}
	js, err := io.ReadAll(io.LimitReader(tr, maxTOC))
	if err != nil {
		return nil, 0, tocMismatch(ref, "%v", err)
	}
	if digest.Of(js) != ref.Digest {
		return nil, 0, tocMismatch(ref, "the TOC read hashes to %s", digest.Of(js))
	}
	return js, tocOff, nil
}

// parseStargzFooter returns the TOC offset an eStargz footer holds.
func parseStargzFooter(b []byte) (int64, error) {
	const subLen = 16 + len("STARGZ")
	if len(b) != stargzFooterSize || b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 || b[3]&gzipFlagExtra == 0 {
		return 0, fmt.Errorf("not a gzip header with an extra field")
	}
	xlen := int(binary.LittleEndian.Uint16(b[10:12]))
	if xlen != 4+subLen || 12+xlen > len(b) {
		return 0, fmt.Errorf("extra field of %d bytes", xlen)
	}
	x := b[12 : 12+xlen]
	if x[0] != 'S' || x[1] != 'G' || int(binary.LittleEndian.Uint16(x[2:4])) != subLen || string(x[4+16:]) != "STARGZ" {
		return 0, fmt.Errorf("no STARGZ subfield")
	}
	off, err := strconv.ParseInt(string(x[4:4+16]), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("TOC offset: %v", err)
	}
	return off, nil
}

func zstdChunkedTOC(ctx context.Context, peek func(ctx context.Context, off, n int64) ([]byte, error), size int64, ref TOCRef) ([]byte, int64, error) {
	if ref.Length <= 0 || ref.Length > maxTOC || ref.RawLength > maxTOC || ref.Offset < 8 || ref.Offset+ref.Length > size {
		return nil, 0, tocMismatch(ref, "position %d+%d (%d as JSON) in a layer of %d bytes", ref.Offset, ref.Length, ref.RawLength, size)
	}
	z, err := peek(ctx, ref.Offset, ref.Length)
	if err != nil {
		return nil, 0, err
	}
	// containers/storage's manifest-checksum covers the compressed TOC
	// (the zstd frame, without the skippable frame's 8-byte header).
	if digest.Of(z) != ref.Digest {
		return nil, 0, tocMismatch(ref, "the compressed TOC read hashes to %s", digest.Of(z))
	}
	dec, err := zstd.NewReader(bytes.NewReader(z), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxTOC))
	if err != nil {
		return nil, 0, fmt.Errorf("zstd decoder: %w", err)
	}
	defer dec.Close()
	js, err := io.ReadAll(io.LimitReader(dec, maxTOC+1))
	if err != nil || int64(len(js)) > maxTOC {
		return nil, 0, unusable("zstd:chunked TOC does not decompress: %v", err)
	}
	// The payloads end where the skippable frame holding the TOC starts.
	return js, ref.Offset - 8, nil
}
