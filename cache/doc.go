package cache

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Documents (manifests, indexes) are immutable and addressed by digest.
// Each is one file <Dir>/docs/<hex>: the media type, a newline, the
// body. The body is checked against the digest on every read. Documents
// are small and are not counted against Options.MaxSize.

// PutDoc stores body under d. It rejects a body whose sha256 is not d.
func (c *Cache) PutDoc(d digest.Digest, mediaType string, body []byte) error {
	if got := digest.Of(body); got != d {
		return fmt.Errorf("document %s: body hashes to %s: %w", d, got, hfserr.ErrIntegrity)
	}
	if strings.ContainsAny(mediaType, "\n\x00") {
		return fmt.Errorf("document %s: media type %q: %w", d, mediaType, hfserr.ErrInvalid)
	}
	b := make([]byte, 0, len(mediaType)+1+len(body))
	b = append(append(append(b, mediaType...), '\n'), body...)
	if err := writeFileAtomic(c.tmpDir, c.docPath(d), b, false); err != nil {
		c.log.Debug("cannot store document", "digest", d.String(), "err", err)
		// The cause is kept as text: a disk errno must never reach a reader.
		return fmt.Errorf("document %s: %v: %w", d, err, hfserr.ErrNoSpace)
	}
	return nil
}

// GetDoc returns the document stored under d. A missing file is !ok; a
// file whose body does not hash to d is deleted and reported as !ok.
func (c *Cache) GetDoc(d digest.Digest) (mediaType string, body []byte, ok bool) {
	p := c.docPath(d)
	b, err := os.ReadFile(p)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("cannot read cached document", "digest", d.String(), "err", err)
		}
		return "", nil, false
	}
	mt, body, found := bytes.Cut(b, []byte{'\n'})
	if !found || digest.Of(body) != d {
		c.log.Warn("cached document is corrupt, removing it", "digest", d.String())
		os.Remove(p)
		return "", nil, false
	}
	return string(mt), body, true
}

func (c *Cache) docPath(d digest.Digest) string { return filepath.Join(c.docsDir, d.Hex()) }
