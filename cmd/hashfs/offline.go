package main

import (
	"context"
	"fmt"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
	"github.com/hashfs/hashfs/manifestview"
)

// offlineSource is the network with --offline: nothing is fetched, so
// the mount serves what the cache holds (verified blobs, manifests by
// digest) and the last known tags and referrers.
type offlineSource struct{ cache *cache.Cache }

var errOffline = fmt.Errorf("--offline: not in the cache: %w", hfserr.ErrUnavailable)

func (*offlineSource) Manifest(context.Context, string) (manifestview.Doc, error) {
	return manifestview.Doc{}, errOffline
}

func (*offlineSource) StatManifest(context.Context, string) (manifestview.Desc, error) {
	return manifestview.Desc{}, errOffline
}

func (*offlineSource) Tags(context.Context) ([]string, error) { return nil, errOffline }

var _ manifestview.ReferrerLister = (*offlineSource)(nil)

// Referrers fails, so that manifestview.Repo serves the saved answer.
func (*offlineSource) Referrers(context.Context, digest.Digest) ([]manifestview.Desc, error) {
	return nil, errOffline
}

func (*offlineSource) FetchRange(context.Context, digest.Digest, int64, int64) ([]byte, error) {
	return nil, errOffline
}

// StatBlob knows the size of every verified blob from its chunk table;
// any other digest is not there.
func (s *offlineSource) StatBlob(_ context.Context, d digest.Digest) (int64, error) {
	if size, ok := s.cache.VerifiedSize(d); ok {
		return size, nil
	}
	return 0, fmt.Errorf("--offline: %s is not in the cache: %w", d, hfserr.ErrNotFound)
}

func (*offlineSource) Name() string { return "offline cache" }
