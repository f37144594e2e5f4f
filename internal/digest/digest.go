// Package digest is the sha256 content address used everywhere in hashfs:
// a comparable [32]byte value, converted to text only at the edges.
package digest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// Digest is a sha256 digest.
type Digest [32]byte

// Of returns the digest of b.
func Of(b []byte) Digest { return sha256.Sum256(b) }

// ParseHex parses 64 lowercase hex characters.
func ParseHex(s string) (Digest, error) {
	var d Digest
	if len(s) != 64 {
		return d, fmt.Errorf("digest %q: want 64 hex characters: %w", clip(s), hfserr.ErrInvalid)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return d, fmt.Errorf("digest %q: not lowercase hex: %w", clip(s), hfserr.ErrInvalid)
		}
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("digest %q: %v: %w", clip(s), err, hfserr.ErrInvalid)
	}
	return d, nil
}

// Parse parses "sha256:<hex>".
func Parse(s string) (Digest, error) {
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return Digest{}, fmt.Errorf("digest %q: want sha256:<hex>: %w", clip(s), hfserr.ErrInvalid)
	}
	return ParseHex(hexPart)
}

// Hex is the 64-character lowercase hex form.
func (d Digest) Hex() string { return hex.EncodeToString(d[:]) }

// String is the "sha256:<hex>" form used by OCI.
func (d Digest) String() string { return "sha256:" + d.Hex() }

// IsZero reports whether d is the zero value.
func (d Digest) IsZero() bool { return d == Digest{} }

// Ino derives a stable FUSE inode number from the digest and the size
// the file is shown with. The top bit is set so that it never collides
// with the small numbers go-fuse hands out to directories.
func (d Digest) Ino(size int64) uint64 {
	v := binary.LittleEndian.Uint64(d[:8]) ^ (uint64(size) * 0x9E3779B97F4A7C15)
	return v | 1<<63
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
