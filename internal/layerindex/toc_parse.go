package layerindex

import (
	"archive/tar"
	"encoding/base64"
	"encoding/json"
	"slices"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
)

// Chunk locates part of a regular file in a layer with a TOC: its bytes
// are decoded from the gzip members (eStargz) or zstd frames
// (zstd:chunked) in [In, End) of the compressed layer, after skipping
// Inner decoded bytes.
type Chunk struct {
	Off, Size int64 // in the file
	In, End   int64 // compressed byte range
	Inner     int64
	// Digest is the sha256 of the chunk's Size bytes (the TOC's
	// chunkDigest, or the file's digest for a file of one chunk).
	Digest digest.Digest
	Zeros  bool // zstd:chunked: a chunk of zeros stored as nothing
}

// maxTOCChunk bounds a chunk: it is decoded whole in memory and checked
// against its digest before any of it is served.
const maxTOCChunk = 64 << 20

// tocEntry is one entry of an eStargz or a zstd:chunked TOC: both are
// the stargz JSON, containers/storage adding endOffset and chunkType.
// Xattr values are base64 in both ([]byte in estargz, base64 strings in
// containers/storage).
type tocEntry struct {
	Name        string            `json:"name"`
	Type        string            `json:"type"`
	Size        int64             `json:"size"`
	ModTime     string            `json:"modtime"`
	LinkName    string            `json:"linkName"`
	Mode        int64             `json:"mode"`
	UID         int               `json:"uid"`
	GID         int               `json:"gid"`
	DevMajor    int64             `json:"devMajor"`
	DevMinor    int64             `json:"devMinor"`
	Xattrs      map[string]string `json:"xattrs"`
	Digest      string            `json:"digest"`
	Offset      int64             `json:"offset"`
	EndOffset   int64             `json:"endOffset"`
	InnerOffset int64             `json:"innerOffset"`
	ChunkOffset int64             `json:"chunkOffset"`
	ChunkSize   int64             `json:"chunkSize"`
	ChunkDigest string            `json:"chunkDigest"`
	ChunkType   string            `json:"chunkType"`
}

var tocTypes = map[string]byte{
	"dir": tar.TypeDir, "reg": tar.TypeReg, "symlink": tar.TypeSymlink, "hardlink": tar.TypeLink,
	"char": tar.TypeChar, "block": tar.TypeBlock, "fifo": tar.TypeFifo,
}

// parseTOC turns a TOC's JSON (already checked against its digest) into
// entries. payloadEnd is where the file payloads end (the TOC's start),
// size the layer's size. Anything hashfs cannot read safely is
// errTOCUnusable.
func parseTOC(js []byte, kind TOCKind, payloadEnd, size int64) ([]Entry, error) {
	var toc struct {
		Entries []tocEntry `json:"entries"`
	}
	if err := json.Unmarshal(js, &toc); err != nil {
		return nil, unusable("%s TOC: %v", kind, err)
	}
	// A chunk's compressed bytes end at the next larger offset (eStargz
	// gives no end); containers/storage gives endOffset.
	var offs []int64
	for _, te := range toc.Entries {
		if te.Offset > 0 {
			offs = append(offs, te.Offset)
		}
	}
	offs = append(offs, payloadEnd)
	slices.Sort(offs)
	nextOff := func(in int64) int64 {
		i, _ := slices.BinarySearch(offs, in+1)
		return offs[min(i, len(offs)-1)]
	}
	var entries []Entry
	var file *Entry // the regular file chunk entries continue
	var fileSum digest.Digest
	finish := func() error {
		if file == nil {
			return nil
		}
		err := checkChunks(file, fileSum)
		file = nil
		return err
	}
	for i, te := range toc.Entries {
		if te.Type == "chunk" {
			if file == nil || CleanName(te.Name) != CleanName(file.Name) {
				return nil, unusable("entry %d: a chunk of %q outside its file", i, te.Name)
			}
			c, err := tocChunk(te, nextOff, payloadEnd, size)
			if err != nil {
				return nil, err
			}
			file.Chunks = append(file.Chunks, c)
			continue
		}
		if err := finish(); err != nil {
			return nil, err
		}
		typ, ok := tocTypes[te.Type]
		if !ok {
			return nil, unusable("entry %d (%q): type %q", i, te.Name, te.Type)
		}
		e := Entry{Name: te.Name, Linkname: te.LinkName, Type: typ, Mode: te.Mode, UID: te.UID, GID: te.GID,
			Devmajor: te.DevMajor, Devminor: te.DevMinor, HeaderOffset: -1}
		if typ == tar.TypeReg {
			e.Size = te.Size
		}
		if te.ModTime != "" {
			if t, err := time.Parse(time.RFC3339Nano, te.ModTime); err == nil {
				e.ModTime, e.ModNsec = t.Unix(), int64(t.Nanosecond())
			}
		}
		for k, v := range te.Xattrs {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return nil, unusable("entry %d (%q): xattr %q is not base64", i, te.Name, k)
			}
			if e.Xattrs == nil {
				e.Xattrs = map[string]string{}
			}
			e.Xattrs[k] = string(b)
		}
		entries = append(entries, e)
		if typ == tar.TypeReg && e.Size > 0 {
			file = &entries[len(entries)-1]
			fileSum = digest.Digest{}
			if te.Digest != "" {
				d, err := digest.Parse(te.Digest)
				if err != nil {
					return nil, unusable("entry %d (%q): digest %q", i, te.Name, te.Digest)
				}
				fileSum = d
			}
			c, err := tocChunk(te, nextOff, payloadEnd, size)
			if err != nil {
				return nil, err
			}
			file.Chunks = append(file.Chunks, c)
		}
	}
	if err := finish(); err != nil {
		return nil, err
	}
	// file pointed into entries while it grew; the slice is final now.
	return entries, nil
}

// tocChunk reads the chunk a reg or chunk entry describes.
func tocChunk(te tocEntry, nextOff func(int64) int64, payloadEnd, size int64) (Chunk, error) {
	c := Chunk{Off: te.ChunkOffset, Size: te.ChunkSize, In: te.Offset, Inner: te.InnerOffset, Zeros: te.ChunkType == "zeros"}
	if te.ChunkDigest != "" {
		d, err := digest.Parse(te.ChunkDigest)
		if err != nil {
			return c, unusable("%q: chunk digest %q", te.Name, te.ChunkDigest)
		}
		c.Digest = d
	}
	if c.Zeros {
		c.In, c.End, c.Inner = 0, 0, 0
		return c, nil
	}
	c.End = te.EndOffset
	if c.End == 0 {
		c.End = nextOff(c.In)
	}
	if c.In <= 0 || c.End <= c.In || c.End > payloadEnd || c.End > size || c.Inner < 0 {
		return c, unusable("%q: chunk at %d, compressed bytes %d-%d of a payload of %d", te.Name, c.Off, c.In, c.End, payloadEnd)
	}
	return c, nil
}

// checkChunks completes and checks the chunks of file e: sizes left out
// run to the next chunk, the chunks cover the file in order, and every
// one has a digest (a file of one chunk may use the file's).
func checkChunks(e *Entry, fileSum digest.Digest) error {
	cs := e.Chunks
	for i := range cs {
		if cs[i].Size == 0 {
			end := e.Size
			if i+1 < len(cs) {
				end = cs[i+1].Off
			}
			cs[i].Size = end - cs[i].Off
		}
	}
	var at int64
	for i := range cs {
		c := &cs[i]
		if c.Off != at || c.Size <= 0 || c.Size > maxTOCChunk {
			return unusable("%q: chunk %d at %d+%d, want it at %d (chunks up to %d bytes)", e.Name, i, c.Off, c.Size, at, maxTOCChunk)
		}
		if c.Digest.IsZero() && len(cs) == 1 {
			c.Digest = fileSum
		}
		if c.Digest.IsZero() {
			return unusable("%q: chunk %d has no digest", e.Name, i)
		}
		at += c.Size
	}
	if at != e.Size {
		return unusable("%q: chunks cover %d of %d bytes", e.Name, at, e.Size)
	}
	return nil
}
