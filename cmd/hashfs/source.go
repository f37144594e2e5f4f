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

// fetchRepo is one repository as fetch reads it: a registry repository
// (*fetch.Client), the same behind hosts.toml mirrors (*fetch.Mirrored),
// or a local OCI layout (*fetch.Layout).
type fetchRepo interface {
	Name() string
	Ping(ctx context.Context) error
	Manifest(ctx context.Context, ref string) (fetch.Doc, error)
	StatManifest(ctx context.Context, ref string) (fetch.Descriptor, error)
	Tags(ctx context.Context) ([]string, error)
	StatBlob(ctx context.Context, d digest.Digest) (int64, error)
	FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error)
	Referrers(ctx context.Context, d digest.Digest) ([]fetch.Referrer, error)
}

// source is what the daemon asks of one repository: its documents for
// manifestview, and its blobs as one source of the fetch.Set.
type source interface {
	manifestview.Registry
	fetch.BlobSource
}

// registrySource adapts a fetchRepo to source.
type registrySource struct{ r fetchRepo }

func (s registrySource) Name() string { return s.r.Name() }

func (s registrySource) Manifest(ctx context.Context, ref string) (manifestview.Doc, error) {
	d, err := s.r.Manifest(ctx, ref)
	return manifestview.Doc{Digest: d.Digest, MediaType: d.MediaType, Body: d.Body}, err
}

func (s registrySource) StatManifest(ctx context.Context, ref string) (manifestview.Desc, error) {
	d, err := s.r.StatManifest(ctx, ref)
	return manifestview.Desc{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}, err
}

func (s registrySource) Tags(ctx context.Context) ([]string, error) { return s.r.Tags(ctx) }

var _ manifestview.ReferrerLister = registrySource{}

// ReferrersByTagOnly passes through whether the registry lacks the
// referrers API (see fetch.Client.ReferrersByTagOnly).
func (s registrySource) ReferrersByTagOnly() bool {
	t, ok := s.r.(interface{ ReferrersByTagOnly() bool })
	return ok && t.ReferrersByTagOnly()
}

func (s registrySource) Referrers(ctx context.Context, d digest.Digest) ([]manifestview.Desc, error) {
	refs, err := s.r.Referrers(ctx, d)
	return referrerDescs(refs), err
}

// twoStepReferrers is a fetchRepo that can ask the referrers API and the
// tag schema apart (fetch.Client).
type twoStepReferrers interface {
	ReferrersAPI(ctx context.Context, d digest.Digest) ([]fetch.Referrer, bool, error)
	ReferrersByTag(ctx context.Context, d digest.Digest) ([]fetch.Referrer, error)
}

// ReferrersAPI asks the API alone where the source can (ok false: it has
// none); other sources answer the whole question here.
func (s registrySource) ReferrersAPI(ctx context.Context, d digest.Digest) ([]manifestview.Desc, bool, error) {
	t, ok := s.r.(twoStepReferrers)
	if !ok {
		descs, err := s.Referrers(ctx, d)
		return descs, err == nil, err
	}
	refs, ok, err := t.ReferrersAPI(ctx, d)
	return referrerDescs(refs), ok, err
}

// ReferrersByTag reads the tag schema alone (only asked after ReferrersAPI
// said there is no API, which only a twoStepReferrers source says).
func (s registrySource) ReferrersByTag(ctx context.Context, d digest.Digest) ([]manifestview.Desc, error) {
	t, ok := s.r.(twoStepReferrers)
	if !ok {
		return s.Referrers(ctx, d)
	}
	refs, err := t.ReferrersByTag(ctx, d)
	return referrerDescs(refs), err
}

func referrerDescs(refs []fetch.Referrer) []manifestview.Desc {
	if refs == nil {
		return nil
	}
	out := make([]manifestview.Desc, len(refs))
	for i, r := range refs {
		out[i] = manifestview.Desc{Digest: r.Digest, Size: r.Size, MediaType: r.MediaType,
			ArtifactType: r.ArtifactType, Annotations: r.Annotations}
	}
	return out
}

func (s registrySource) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	return s.r.StatBlob(ctx, d)
}

func (s registrySource) FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	return s.r.FetchRange(ctx, d, off, n)
}

// stater answers size and media type of any digest of one repository for
// its sha256/<hex>. The registry's HEAD is asked first, so that a manifest
// lying about a blob's size cannot change what the honest path shows; a
// descriptor seen in a manifest is the answer while the registry is
// unreachable, or when the registry lacks the blob but the descriptor
// lists URLs for it (they are sources too). Where it found a blob is told
// to the fetch.Set, so reads go there first.
type stater struct {
	src  source
	repo *manifestview.Repo
	set  *fetch.Set
}

func (s stater) Stat(ctx context.Context, d digest.Digest) (manifestview.Desc, error) {
	known, ok := s.repo.Lookup(d)
	size, err := s.src.StatBlob(ctx, d)
	if err == nil {
		s.set.Learn(d, s.src)
	}
	switch {
	case err == nil && ok && known.Size == size:
		return known, nil
	case err == nil:
		return manifestview.Desc{Digest: d, Size: size, MediaType: "application/octet-stream"}, nil
	case errors.Is(err, hfserr.ErrUnavailable) && ok:
		return known, nil
	case errors.Is(err, hfserr.ErrNotFound) && ok && len(known.URLs) > 0:
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
