package main

import (
	"context"
	"errors"

	"github.com/hashfs/hashfs/fetch"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
	"github.com/hashfs/hashfs/manifestview"
)

type digestT = digest.Digest

// registrySource adapts fetch.Client to manifestview.Registry.
type registrySource struct{ c *fetch.Client }

func (s registrySource) Manifest(ctx context.Context, ref string) (manifestview.Doc, error) {
	d, err := s.c.Manifest(ctx, ref)
	return manifestview.Doc{Digest: d.Digest, MediaType: d.MediaType, Body: d.Body}, err
}

func (s registrySource) StatManifest(ctx context.Context, ref string) (manifestview.Desc, error) {
	d, err := s.c.StatManifest(ctx, ref)
	return manifestview.Desc{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}, err
}

func (s registrySource) Tags(ctx context.Context) ([]string, error) { return s.c.Tags(ctx) }

func (s registrySource) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	return s.c.StatBlob(ctx, d)
}

// source is what the daemon asks of the network: the registry, or
// nothing at all with --offline.
type source interface {
	manifestview.Registry
	StatBlob(ctx context.Context, d digest.Digest) (int64, error)
	FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error)
}

func (s registrySource) FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	return s.c.FetchRange(ctx, d, off, n)
}

// stater answers size and media type of any digest for sha256/<hex>.
// The registry's HEAD is asked first, so that a manifest lying about a
// blob's size cannot change what the honest path shows; a descriptor
// seen in a manifest is the answer only while the registry is unreachable.
type stater struct {
	src  source
	repo *manifestview.Repo
}

func (s stater) Stat(ctx context.Context, d digest.Digest) (manifestview.Desc, error) {
	known, ok := s.repo.Lookup(d)
	size, err := s.src.StatBlob(ctx, d)
	switch {
	case err == nil && ok && known.Size == size:
		return known, nil
	case err == nil:
		return manifestview.Desc{Digest: d, Size: size, MediaType: "application/octet-stream"}, nil
	case errors.Is(err, hfserr.ErrUnavailable) && ok:
		return known, nil
	case !errors.Is(err, hfserr.ErrNotFound):
		return manifestview.Desc{}, err
	}
	desc, merr := s.src.StatManifest(ctx, d.String())
	if merr != nil {
		return manifestview.Desc{}, errors.Join(err, merr)
	}
	return desc, nil
}
