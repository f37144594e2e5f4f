package main

import (
	"context"
	"fmt"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/hashfs/hashfs/fetch"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
	"github.com/hashfs/hashfs/manifestview"
)

// descriptorURLs is the fetch.Set source for blobs whose descriptors list
// "urls" (foreign layers): the URLs come from any manifest seen so far, and
// the bytes are verified like any other source's.
type descriptorURLs struct {
	lookup func(d digest.Digest) (manifestview.Desc, bool)
	opts   fetch.Options

	mu   sync.Mutex
	srcs *lru.Cache[string, *fetch.URLSource] // by the joined URLs
}

func newDescriptorURLs(lookup func(digest.Digest) (manifestview.Desc, bool), o fetch.Options) *descriptorURLs {
	srcs, err := lru.New[string, *fetch.URLSource](1024)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &descriptorURLs{lookup: lookup, opts: o, srcs: srcs}
}

func (u *descriptorURLs) Name() string { return "descriptor urls" }

// source returns the URL source of d, or an error wrapping ErrNotFound
// when no manifest seen lists URLs for it.
func (u *descriptorURLs) source(d digest.Digest) (*fetch.URLSource, error) {
	desc, ok := u.lookup(d)
	if !ok || len(desc.URLs) == 0 {
		return nil, fmt.Errorf("%s: no descriptor lists urls for it: %w", d, hfserr.ErrNotFound)
	}
	key := strings.Join(desc.URLs, "\n")
	u.mu.Lock()
	defer u.mu.Unlock()
	if s, ok := u.srcs.Get(key); ok {
		return s, nil
	}
	s, err := fetch.NewURLSource(desc.URLs, u.opts)
	if err != nil {
		return nil, err
	}
	u.srcs.Add(key, s)
	return s, nil
}

func (u *descriptorURLs) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	s, err := u.source(d)
	if err != nil {
		return 0, err
	}
	return s.StatBlob(ctx, d)
}

func (u *descriptorURLs) FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	s, err := u.source(d)
	if err != nil {
		return nil, err
	}
	return s.FetchRange(ctx, d, off, n)
}
