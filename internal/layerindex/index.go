// Package layerindex lists and reads the files inside OCI image layers
// (tar, tar+gzip, tar+zstd) without extracting them and, once a layer
// has been indexed, without reading the whole layer again.
//
// The first pass over a layer decodes it once from start to end and
// records an Index: every tar entry with the offset of its data in the
// uncompressed tar stream, the sha256 and size of that stream (the
// layer's diff_id), and checkpoints from which decoding can start again.
// For gzip those are zran-style: at a DEFLATE block boundary every Span
// bytes of output, the compressed bit offset and the 32 KiB of output
// before it (the window); plus every gzip member start (eStargz layers
// are one member per file). For zstd, every frame start. Reading a file
// later decodes from the nearest checkpoint before it, so it fetches the
// compressed bytes of about one span.
//
// All compressed bytes are read through a Blob (cache.Reader), so they
// are verified exactly like reads of the blob itself. Indexes are kept
// in a directory of the cache (see Store), checked by their own sha256.
package layerindex

import (
	"archive/tar"

	"github.com/hashfs/hashfs/internal/digest"
)

// Format is how a layer's tar stream is compressed. It is sniffed from
// the first bytes, not taken from the media type.
type Format uint8

const (
	Tar Format = iota
	Gzip
	Zstd
)

func (f Format) String() string {
	switch f {
	case Tar:
		return "tar"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return "format?"
}

// sniff tells the format from a layer's first bytes.
func sniff(b []byte) Format {
	switch {
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		return Gzip
	case len(b) >= 4 && (b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd ||
		b[0]&0xf0 == 0x50 && b[1] == 0x2a && b[2] == 0x4d && b[3] == 0x18):
		return Zstd
	}
	return Tar
}

// CheckpointKind says how decoding restarts at a checkpoint.
type CheckpointKind uint8

const (
	// MemberStart is a gzip member header or a zstd frame: In is its byte
	// offset times 8, and no window is needed.
	MemberStart CheckpointKind = iota
	// BlockStart is a DEFLATE block boundary inside a gzip member: In is
	// its bit offset, and decoding needs the window saved with it.
	BlockStart
)

// Checkpoint is a place where decoding can start again.
type Checkpoint struct {
	Out    int64 // offset in the uncompressed stream
	In     int64 // bit offset in the compressed layer
	Kind   CheckpointKind
	Window int // index of its window (BlockStart), else -1
}

// Entry is one tar header, as read; names are not cleaned here (see
// Tree).
type Entry struct {
	Name     string
	Linkname string
	Type     byte // tar typeflag
	Mode     int64
	UID, GID int
	Size     int64
	ModTime  int64 // Unix seconds
	ModNsec  int64
	Devmajor int64
	Devminor int64
	// Offset is where the entry's data starts in the uncompressed tar
	// stream; HeaderOffset where its header blocks start (-1 when not
	// known, only after a sparse entry).
	Offset       int64
	HeaderOffset int64
	// Sparse files are read by decoding the entry again with archive/tar
	// from HeaderOffset.
	Sparse bool
	Xattrs map[string]string // PAX SCHILY.xattr.* records
	// Chunks locate a regular file's bytes in the compressed layer, in
	// file order, when the index was built from a table of contents
	// (Index.TOC); Offset is then unused.
	Chunks []Chunk
}

// Index is what the first pass learns about one layer.
type Index struct {
	Version     int
	Digest      digest.Digest // the compressed blob
	Size        int64         // its size
	Format      Format
	TarSize     int64         // bytes of the uncompressed tar stream
	DiffID      digest.Digest // sha256 of the uncompressed tar stream
	Entries     []Entry
	Checkpoints []Checkpoint // sorted by Out; the first is at 0
	Windows     []WindowRef  // where the store keeps each window
	// TOC, when its Kind is not NoTOC, says the entries come from the
	// layer's table of contents (eStargz, zstd:chunked) that the manifest
	// announced, not from a pass over the layer: there are no
	// checkpoints, TarSize and DiffID are zero, and regular files are
	// read by their Chunks.
	TOC TOCRef
}

// WindowRef locates a window in a stored index file and checks it.
type WindowRef struct {
	Off int64 // from the start of the windows area
	Len int
	Sum [32]byte // sha256 of the window
}

// indexVersion changes whenever Index or the store format does. 2 added
// Index.TOC and Entry.Chunks (indexes built from a TOC).
const indexVersion = 2

// IsDir and friends classify an entry.
func (e *Entry) IsDir() bool     { return e.Type == tar.TypeDir }
func (e *Entry) IsSymlink() bool { return e.Type == tar.TypeSymlink }
func (e *Entry) IsRegular() bool { return e.Type == tar.TypeReg || e.Type == tar.TypeGNUSparse }

// checkpointFor returns the index of the last checkpoint at or before off.
func (ix *Index) checkpointFor(off int64) int {
	lo, hi := 0, len(ix.Checkpoints)
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if ix.Checkpoints[mid].Out <= off {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// spanEnd is where the span starting at checkpoint i ends.
func (ix *Index) spanEnd(i int) int64 {
	if i+1 < len(ix.Checkpoints) {
		return ix.Checkpoints[i+1].Out
	}
	return ix.TarSize
}
