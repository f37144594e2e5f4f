package layerindex

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// Zstandard frames (RFC 8878) are independent of each other, so every
// frame start is a checkpoint that needs no window. A layer of one
// frame (what `zstd` and most image builders write) is decoded from its
// start; zstd:chunked layers, one frame per file or chunk, get random
// access for free.

const (
	zstdMagic         = 0xFD2FB528
	zstdSkippableMask = 0xFFFFFFF0
	zstdSkippable     = 0x184D2A50
	// zstdMaxWindow bounds the decoder's memory (zstd --long=27).
	zstdMaxWindow = 128 << 20
)

// zstdReader decodes the frames of a zstd stream one at a time, each
// fed to the decoder by a frameReader that stops at the frame's end.
type zstdReader struct {
	src   *seqReader
	dec   *zstd.Decoder
	frame *frameReader // nil between frames
	out   int64
	err   error

	onFrame func(in, out int64) // first pass: at each frame start
}

func newZstdReader(src *seqReader, out int64) (*zstdReader, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &zstdReader{src: src, dec: dec, out: out}, nil
}

// Close releases the decoder.
func (z *zstdReader) Close() { z.dec.Close() }

func (z *zstdReader) Read(p []byte) (int, error) {
	for z.err == nil {
		if z.frame == nil {
			if z.err = z.startFrame(); z.err != nil {
				break
			}
		}
		n, err := z.dec.Read(p)
		z.out += int64(n)
		switch {
		case err == io.EOF:
			if z.frame.err != nil {
				z.err = z.frame.err
			}
			z.frame = nil
		case err != nil:
			if z.frame.err != nil {
				err = z.frame.err // the input's own error keeps its kind
			}
			z.err = fmt.Errorf("zstd data near offset %d: %w", z.src.pos, wrapZstd(err))
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, z.err
}

// startFrame skips skippable frames and starts decoding the next frame,
// or reports io.EOF at the end of the stream.
func (z *zstdReader) startFrame() error {
	for {
		b, err := z.src.peek(8)
		if err != nil {
			return err
		}
		if len(b) == 0 {
			return io.EOF
		}
		if len(b) < 8 {
			return fmt.Errorf("zstd: %d stray bytes at offset %d: %w", len(b), z.src.pos, hfserr.ErrInvalid)
		}
		magic := binary.LittleEndian.Uint32(b)
		switch {
		case magic&zstdSkippableMask == zstdSkippable:
			skip := int64(binary.LittleEndian.Uint32(b[4:]))
			if _, err := io.CopyN(io.Discard, z.src, 8+skip); err != nil {
				return fmt.Errorf("zstd skippable frame: %w", truncated(err))
			}
			continue
		case magic != zstdMagic:
			return fmt.Errorf("zstd: no frame at offset %d: %w", z.src.pos, hfserr.ErrInvalid)
		}
		if z.onFrame != nil {
			z.onFrame(z.src.pos, z.out)
		}
		z.frame = &frameReader{src: z.src}
		if err := z.dec.Reset(z.frame); err != nil {
			return fmt.Errorf("zstd frame at offset %d: %w", z.src.pos, wrapZstd(err))
		}
		return nil
	}
}

func wrapZstd(err error) error {
	if err == io.ErrUnexpectedEOF {
		return fmt.Errorf("truncated: %w", hfserr.ErrInvalid)
	}
	return fmt.Errorf("%v: %w", err, hfserr.ErrInvalid)
}

// frameReader passes exactly one zstd frame through from src, reading
// its structure (header, block headers, checksum) as the bytes go by,
// and then reports io.EOF.
type frameReader struct {
	src   *seqReader
	state int
	left  int64  // bytes of the current piece still to pass
	hdr   []byte // header bytes parsed but not yet passed
	last  bool   // the current block is the frame's last
	sum   bool   // the frame ends with a 4-byte checksum
	err   error  // a read error from src, kept with its kind
}

const (
	frameHeader = iota
	frameBlockHeader
	frameBlock
	frameChecksum
	frameDone
)

func (f *frameReader) Read(p []byte) (int, error) {
	for {
		if len(f.hdr) > 0 {
			n := copy(p, f.hdr)
			f.hdr = f.hdr[n:]
			return n, nil
		}
		if f.left > 0 {
			n, err := f.src.Read(p[:min(int64(len(p)), f.left)])
			f.left -= int64(n)
			if err != nil {
				f.err = truncated(err)
				return n, f.err
			}
			return n, nil
		}
		if err := f.next(); err != nil {
			return 0, err
		}
	}
}

// next parses the next structural piece of the frame.
func (f *frameReader) next() error {
	switch f.state {
	case frameHeader:
		b, err := f.src.peek(18) // the longest frame header: 4+1+1+4+8
		if err != nil {
			f.err = err
			return err
		}
		if len(b) < 5 {
			return f.corrupt("short frame header")
		}
		fhd := b[4]
		fcs := [4]int{0, 2, 4, 8}[fhd>>6]
		single := fhd&0x20 != 0
		if single && fcs == 0 {
			fcs = 1
		}
		n := 5 + fcs + [4]int{0, 1, 2, 4}[fhd&3]
		if !single {
			n++ // window descriptor
		}
		if len(b) < n {
			return f.corrupt("short frame header")
		}
		f.sum = fhd&4 != 0
		f.hdr = append([]byte(nil), b[:n]...)
		f.src.r += n
		f.src.pos += int64(n)
		f.state = frameBlockHeader
	case frameBlockHeader:
		var h [3]byte
		if _, err := io.ReadFull(f.src, h[:]); err != nil {
			f.err = truncated(err)
			return f.err
		}
		v := uint32(h[0]) | uint32(h[1])<<8 | uint32(h[2])<<16
		f.last = v&1 != 0
		size := int64(v >> 3)
		switch (v >> 1) & 3 {
		case 1: // RLE: one byte on the wire
			size = 1
		case 3:
			return f.corrupt("reserved block type")
		}
		f.hdr = h[:]
		f.left = size
		f.state = frameBlock
	case frameBlock:
		f.state = frameBlockHeader
		if f.last {
			f.state = frameDone
			if f.sum {
				f.left = 4
				f.state = frameChecksum
			}
		}
	case frameChecksum:
		f.state = frameDone
	case frameDone:
		return io.EOF
	}
	return nil
}

func (f *frameReader) corrupt(what string) error {
	f.err = fmt.Errorf("zstd frame near offset %d: %s: %w", f.src.pos, what, hfserr.ErrInvalid)
	return f.err
}
