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

// stater answers size and media type of any digest: from a manifest that
// named it, else a HEAD on the blob, else a HEAD on the manifest.
type stater struct {
	src  registrySource
	repo *manifestview.Repo
}

func (s stater) Stat(ctx context.Context, d digest.Digest) (manifestview.Desc, error) {
	if desc, ok := s.repo.Lookup(d); ok {
		return desc, nil
	}
	size, err := s.src.c.StatBlob(ctx, d)
	if err == nil {
		return manifestview.Desc{Digest: d, Size: size, MediaType: "application/octet-stream"}, nil
	}
	if !errors.Is(err, hfserr.ErrNotFound) {
		return manifestview.Desc{}, err
	}
	desc, merr := s.src.StatManifest(ctx, d.String())
	if merr != nil {
		return manifestview.Desc{}, errors.Join(err, merr)
	}
	return desc, nil
}
