package digest

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// ParseID accepts the ways people write a sha256 content identifier:
// hash://sha256/<hex> (contentid, preston), sha256:<hex> (OCI), a bare
// <hex>, and SRI sha256-<base64> (HTML integrity attributes, npm).
func ParseID(s string) (Digest, error) {
	switch {
	case strings.HasPrefix(s, "hash://sha256/"):
		return ParseHex(strings.TrimPrefix(s, "hash://sha256/"))
	case strings.HasPrefix(s, "sha256:"):
		return Parse(s)
	case strings.HasPrefix(s, "sha256-"):
		var d Digest
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "sha256-"))
		if err != nil || len(b) != len(d) {
			return d, fmt.Errorf("SRI id %q: want sha256- and the base64 of 32 bytes: %w", clip(s), hfserr.ErrInvalid)
		}
		copy(d[:], b)
		return d, nil
	case len(s) == 64:
		return ParseHex(s)
	}
	return Digest{}, fmt.Errorf("id %q: want hash://sha256/<hex>, sha256:<hex>, <hex> or sha256-<base64>: %w", clip(s), hfserr.ErrInvalid)
}
