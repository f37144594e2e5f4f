package layerindex

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/hashfs/hashfs/internal/hfserr"
	"github.com/hashfs/hashfs/internal/layerindex/inflate"
)

// gzip member header flags (RFC 1952 section 2.3.1).
const (
	gzipFlagHCRC    = 1 << 1
	gzipFlagExtra   = 1 << 2
	gzipFlagName    = 1 << 3
	gzipFlagComment = 1 << 4
	gzipFlagsKnown  = 1<<5 - 1
)

// gzReader decompresses a gzip stream of one or more members, starting
// at a member header or, resumed, at a DEFLATE block boundary inside a
// member. Members read from their header on are checked against their
// CRC-32 and length; the member a resumed reader starts in cannot be.
type gzReader struct {
	src      *seqReader
	fl       *inflate.Reader // nil between members
	check    bool            // the current member was read from its header
	crc      uint32
	n        uint32 // bytes of the current member, mod 2^32
	memberAt int64  // uncompressed offset where fl's output starts
	out      int64  // uncompressed offset of the next byte Read returns
	err      error

	// First pass only.
	onMember func(in, out int64)                 // at each member header: its byte offset
	onBlock  func(fl *inflate.Reader, out int64) // at each block boundary inside a member
}

// resumeGzip continues a gzip stream at checkpoint cp of a layer read
// through src (positioned at cp's byte), with window as history.
func resumeGzip(src *seqReader, cp Checkpoint, window []byte) (*gzReader, error) {
	z := &gzReader{src: src, out: cp.Out, memberAt: cp.Out}
	if cp.Kind == MemberStart {
		return z, nil
	}
	var pending uint32
	var npending uint
	if skip := uint(cp.In % 8); skip != 0 {
		c, err := src.ReadByte()
		if err != nil {
			return nil, truncated(err)
		}
		pending, npending = uint32(c)>>skip, 8-skip
	}
	z.fl = inflate.Resume(src, pending, npending, window)
	return z, nil
}

func (z *gzReader) Read(p []byte) (int, error) {
	for z.err == nil {
		if z.fl == nil {
			if z.err = z.startMember(); z.err != nil {
				break
			}
		}
		n, err := z.fl.Read(p)
		if z.check {
			z.crc = crc32.Update(z.crc, crc32.IEEETable, p[:n])
			z.n += uint32(n)
		}
		z.out += int64(n)
		switch {
		case err == io.EOF:
			z.err = z.endMember()
		case err != nil:
			z.err = fmt.Errorf("gzip data at offset %d: %w", z.src.pos, wrapCorrupt(err))
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, z.err
}

// startMember reads a member header, or reports io.EOF at the end.
func (z *gzReader) startMember() error {
	if z.onMember != nil {
		if b, err := z.src.peek(1); err != nil {
			return err
		} else if len(b) == 0 {
			return io.EOF
		}
		z.onMember(z.src.pos, z.out)
	}
	if err := readGzipHeader(z.src); err != nil {
		return err
	}
	z.fl = inflate.NewReader(z.src)
	z.memberAt, z.check, z.crc, z.n = z.out, true, 0, 0
	if z.onBlock != nil {
		fl := z.fl
		fl.OnBlock(func() { z.onBlock(fl, z.memberAt+fl.Out()) })
	}
	return nil
}

// endMember reads the trailer of the member that just ended.
func (z *gzReader) endMember() error {
	var t [8]byte
	if _, err := io.ReadFull(z.src, t[:]); err != nil {
		return fmt.Errorf("gzip trailer: %w", truncated(err))
	}
	if z.check && (binary.LittleEndian.Uint32(t[:4]) != z.crc || binary.LittleEndian.Uint32(t[4:]) != z.n) {
		return fmt.Errorf("gzip member ending at %d: checksum or length mismatch: %w", z.src.pos, hfserr.ErrIntegrity)
	}
	z.fl = nil
	return nil
}

// readGzipHeader reads one member header (RFC 1952), or returns io.EOF
// if the stream ends cleanly before it.
func readGzipHeader(r *seqReader) error {
	var h [10]byte
	n, err := io.ReadFull(r, h[:])
	switch {
	case n == 0 && err == io.EOF:
		return io.EOF
	case err != nil:
		return fmt.Errorf("gzip header: %w", truncated(err))
	case h[0] != 0x1f || h[1] != 0x8b || h[2] != 8 || h[3]&^gzipFlagsKnown != 0:
		return fmt.Errorf("gzip header at offset %d: not a gzip member: %w", r.pos-10, hfserr.ErrInvalid)
	}
	flags := h[3]
	if flags&gzipFlagExtra != 0 {
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return fmt.Errorf("gzip header: %w", truncated(err))
		}
		if _, err := io.CopyN(io.Discard, r, int64(binary.LittleEndian.Uint16(l[:]))); err != nil {
			return fmt.Errorf("gzip header: %w", truncated(err))
		}
	}
	for _, f := range []byte{gzipFlagName, gzipFlagComment} {
		if flags&f == 0 {
			continue
		}
		for {
			c, err := r.ReadByte()
			if err != nil {
				return fmt.Errorf("gzip header: %w", truncated(err))
			}
			if c == 0 {
				break
			}
		}
	}
	if flags&gzipFlagHCRC != 0 {
		if _, err := io.CopyN(io.Discard, r, 2); err != nil {
			return fmt.Errorf("gzip header: %w", truncated(err))
		}
	}
	return nil
}

// truncated reports a stream that ended early as invalid input; other
// errors (reading the blob) keep their kind.
func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("truncated: %w", hfserr.ErrInvalid)
	}
	return err
}

// wrapCorrupt marks decoder errors about the data (as opposed to errors
// reading it, which keep their hfserr kind) as invalid input.
func wrapCorrupt(err error) error {
	switch err.(type) {
	case inflate.CorruptInputError, inflate.InternalError:
		return fmt.Errorf("%v: %w", err, hfserr.ErrInvalid)
	}
	return truncated(err)
}
