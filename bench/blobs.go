package main

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
)

// blob is one random blob pushed to the registry.
type blob struct {
	Name  string `json:"name"`
	Size  int64  `json:"size"`
	Hex   string `json:"sha256"`
	Local string `json:"local,omitempty"` // a local copy, when one was kept
}

// randomReader yields n pseudo-random bytes from a fresh ChaCha8 stream.
// A new random seed per blob makes every run's digests new, so nothing
// can be served from an earlier run's cache.
func randomReader(n int64) io.Reader {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return io.LimitReader(rand.NewChaCha8(seed), n)
}

// makeBlob pushes a random blob of size bytes to repo. With keepAt set
// the same bytes are also written to that file (for local-file peers).
func makeBlob(ctx context.Context, base, repo, name string, size int64, keepAt string) (blob, error) {
	src := randomReader(size)
	var f *os.File
	if keepAt != "" {
		var err error
		if f, err = os.Create(keepAt); err != nil {
			return blob{}, err
		}
		defer f.Close()
		src = io.TeeReader(src, f)
	}
	hexd, err := pushBlob(ctx, base, repo, src, size)
	if err != nil {
		return blob{}, fmt.Errorf("push %s: %w", name, err)
	}
	if f != nil {
		if err := f.Close(); err != nil {
			return blob{}, err
		}
	}
	return blob{Name: name, Size: size, Hex: hexd, Local: keepAt}, nil
}
