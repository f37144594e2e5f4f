package cache

import (
	"fmt"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// Mode is the verification policy.
type Mode int

const (
	// Strict serves only bytes of a blob that was verified whole, or of
	// a chunk that matches the blob's trusted chunk table.
	Strict Mode = iota
	// Lazy serves chunks of large blobs as they arrive and finishes
	// verification in the background, quarantining blobs that fail.
	Lazy
)

// ParseMode parses "strict" or "lazy".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "strict":
		return Strict, nil
	case "lazy":
		return Lazy, nil
	}
	return Strict, fmt.Errorf("verification mode %q: want strict or lazy: %w", s, hfserr.ErrInvalid)
}

// String returns "strict" or "lazy".
func (m Mode) String() string {
	switch m {
	case Strict:
		return "strict"
	case Lazy:
		return "lazy"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}
