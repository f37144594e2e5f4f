package layerindex

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// A table of contents (TOC) lists a layer's files with where each file's
// compressed bytes start, so a layer can be listed from the TOC alone and
// a file read from its own gzip members (eStargz) or zstd frames
// (zstd:chunked). The manifest, which hashfs verified by its digest,
// announces the TOC and its sha256 in the layer descriptor's
// annotations; the TOC's bytes are checked against that digest before
// use, and every chunk of a file against the digest the TOC gives it
// before it is served.

// TOCKind is the kind of table of contents a layer carries.
type TOCKind uint8

const (
	NoTOC TOCKind = iota
	EStargz
	ZstdChunked
)

func (k TOCKind) String() string {
	switch k {
	case EStargz:
		return "estargz"
	case ZstdChunked:
		return "zstd:chunked"
	}
	return "none"
}

// The annotations that announce a TOC.
const (
	// AnnotationStargzTOC is the sha256 of an eStargz layer's
	// uncompressed TOC JSON.
	AnnotationStargzTOC = "containerd.io/snapshot/stargz/toc.digest"
	// The sha256 of a zstd:chunked layer's compressed TOC (the zstd frame
	// inside its skippable frame), and its position
	// "offset:length:uncompressed length:type". containers/storage wrote
	// them under io.containers.*, newer releases under
	// io.github.containers.*.
	AnnotationZstdChecksum    = "io.containers.zstd-chunked.manifest-checksum"
	AnnotationZstdPosition    = "io.containers.zstd-chunked.manifest-position"
	annotationZstdChecksumGit = "io.github.containers.zstd-chunked.manifest-checksum"
	annotationZstdPositionGit = "io.github.containers.zstd-chunked.manifest-position"
)

// zstdManifestCRFS is the zstd:chunked manifest type hashfs reads (the
// only one containers/storage writes).
const zstdManifestCRFS = 1

// TOCRef is what a layer's annotations say of its TOC.
type TOCRef struct {
	Kind   TOCKind
	Digest digest.Digest // eStargz: of the JSON; zstd:chunked: of the compressed TOC
	// zstd:chunked only: where the compressed TOC is in the layer, and
	// how long its JSON is.
	Offset, Length, RawLength int64
}

// TOCOf reads the TOC annotations of a layer descriptor. When both kinds
// are announced (stargz-snapshotter's zstd:chunked converter writes
// both), the zstd:chunked position wins: it needs no footer.
func TOCOf(annotations map[string]string) (TOCRef, bool) {
	for _, keys := range [][2]string{{AnnotationZstdChecksum, AnnotationZstdPosition},
		{annotationZstdChecksumGit, annotationZstdPositionGit}} {
		sum, pos := annotations[keys[0]], annotations[keys[1]]
		if sum == "" || pos == "" {
			continue
		}
		d, err := digest.Parse(sum)
		if err != nil {
			continue
		}
		var v [4]int64
		parts := strings.Split(pos, ":")
		if len(parts) != 4 {
			continue
		}
		ok := true
		for i, s := range parts {
			if v[i], err = strconv.ParseInt(s, 10, 64); err != nil || v[i] < 0 {
				ok = false
			}
		}
		if ok && v[3] == zstdManifestCRFS {
			return TOCRef{Kind: ZstdChunked, Digest: d, Offset: v[0], Length: v[1], RawLength: v[2]}, true
		}
	}
	if s := annotations[AnnotationStargzTOC]; s != "" {
		if d, err := digest.Parse(s); err == nil {
			return TOCRef{Kind: EStargz, Digest: d}, true
		}
	}
	return TOCRef{}, false
}

// errTOCUnusable marks a TOC that matched its digest but that hashfs
// cannot use (a kind of entry it does not know, a chunk without a
// digest, a chunk too large to check in memory): the layer is indexed by
// a full pass instead, which needs no trust in the TOC.
var errTOCUnusable = errors.New("table of contents not usable")

func unusable(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %w", errTOCUnusable, fmt.Sprintf(format, args...), hfserr.ErrInvalid)
}

// checkTOC makes sure an index built from a TOC, read back from the
// store, is usable: every chunk inside the layer and every file covered.
func (ix *Index) checkTOC() error {
	if len(ix.Checkpoints) != 0 || ix.TarSize != 0 || ix.Format != Gzip && ix.Format != Zstd {
		return errors.New("a TOC index with a tar stream")
	}
	for i := range ix.Entries {
		e := &ix.Entries[i]
		var at int64
		for _, c := range e.Chunks {
			if c.Off != at || c.Size <= 0 || c.Size > maxTOCChunk || !c.Zeros && (c.In <= 0 || c.End <= c.In || c.End > ix.Size || c.Inner < 0) {
				return fmt.Errorf("entry %d: chunk out of range", i)
			}
			at += c.Size
		}
		if e.IsRegular() && at != e.Size {
			return fmt.Errorf("entry %d: chunks cover %d of %d bytes", i, at, e.Size)
		}
	}
	return nil
}
