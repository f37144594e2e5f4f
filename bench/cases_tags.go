package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"
)

const tagRepo = "bench/tags"

// pushTags pushes n small distinct OCI manifests tagged t0000… that
// share one config and one titled layer.
func (b *bench) pushTags(ctx context.Context, n int) error {
	cfg := []byte("{}")
	layer := []byte("hashfs bench layer\n")
	cfgHex, err := pushSmallBlob(ctx, b.reg.base, tagRepo, cfg)
	if err != nil {
		return err
	}
	layerHex, err := pushSmallBlob(ctx, b.reg.base, tagRepo, layer)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := 0; i < n; i++ {
		g.Go(func() error {
			m := ociManifest{
				SchemaVersion: 2, MediaType: manifestType,
				Config: descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: "sha256:" + cfgHex, Size: int64(len(cfg))},
				Layers: []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: "sha256:" + layerHex,
					Size: int64(len(layer)), Annotations: map[string]string{"org.opencontainers.image.title": "data.txt"}}},
				Annotations: map[string]string{"org.hashfs.bench.index": fmt.Sprint(i)},
			}
			_, err := pushManifest(gctx, b.reg.base, tagRepo, fmt.Sprintf("t%04d", i), m)
			return err
		})
	}
	return g.Wait()
}

// caseTags mounts a repository of 1,000 tags (loopback) and times
// `ls -l tags/` then `ls -lR manifests/`, counting registry requests.
func (b *bench) caseTags(ctx context.Context) {
	const n = 1000
	name := fmt.Sprintf("ls -l tags/ + ls -lR manifests/, %d tags, loopback", n)
	b.logf("%s", name)
	r := row{Case: name + ": registry requests", Target: "≤ tag pages + one per manifest (+ one referrers-API probe)"}
	defer func() { b.rows = append(b.rows, r) }()
	if err := b.pushTags(ctx, n); err != nil {
		r.Pass, r.Notes = "FAIL", "could not push the tags: "+err.Error()
		return
	}
	b.loop.reset()
	d, mnt, err := b.hashfsMount(ctx, b.loop, tagRepo, b.chosen, "")
	if err != nil {
		r.Pass, r.Notes = "FAIL", err.Error()
		return
	}
	defer func() { d.stop(); removeDir(filepath.Dir(d.dir)) }()
	atMount := b.loop.snapshot()
	lt := measurement{Case: name, Contender: "hashfs", Profile: "loopback", Flags: "ls -l tags/"}
	b.timed(ctx, &lt, b.loop, d, [][]string{{"ls", "-l", filepath.Join(mnt, "tags") + "/"}})
	lt.extra("requests_during_mount", atMount)
	b.record(lt)
	lm := measurement{Case: name, Contender: "hashfs", Profile: "loopback", Flags: "ls -lR manifests/"}
	b.timed(ctx, &lm, b.loop, d, [][]string{{"ls", "-lR", filepath.Join(mnt, "manifests") + "/"}})
	tags, _ := os.ReadDir(filepath.Join(mnt, "tags"))
	mans, _ := os.ReadDir(filepath.Join(mnt, "manifests"))
	lm.extra("tags_listed", len(tags))
	lm.extra("manifest_dirs_listed", len(mans))
	b.record(lm)
	if !lt.ok() || !lm.ok() {
		r.Pass, r.Notes = "FAIL", "not measured: "+lt.Error+lm.Error
		return
	}
	pageSize := lt.Registry.TagPageSize
	pages := int64(1)
	if pageSize > 0 {
		pages = (n + pageSize - 1) / pageSize
	}
	total := lt.Registry.Requests + lm.Registry.Requests
	// Every manifest directory has referrers/ (issue 6), which ls -R lists.
	// The first listing asks the referrers API once; distribution 2.8 has
	// none, and from then on a subject without a sha256-<hex> tag in the
	// fresh tag list has no referrers, asked of nobody.
	bound := pages + n + 1
	r.Hashfs = fmt.Sprintf("%d requests", total)
	r.Peer = fmt.Sprintf("bound %d (%d pages + %d + 1 referrers probe)", bound, pages, n)
	r.Ratio = fmt.Sprintf("%.2f", float64(total)/float64(bound))
	r.Pass = passFail(total <= bound)
	r.Notes = fmt.Sprintf("ls -l tags/ %.2f s (%d tag-list, %d manifest HEAD, %d manifest GET, %d other); "+
		"ls -lR manifests/ %.2f s (%d tag-list, %d HEAD, %d GET, %d other); %d tags and %d manifest dirs listed; page size n=%d",
		lt.Seconds, lt.Registry.TagLists, lt.Registry.ManifestHeads, lt.Registry.ManifestGets, lt.Registry.Other+lt.Registry.BlobGets+lt.Registry.BlobHeads,
		lm.Seconds, lm.Registry.TagLists, lm.Registry.ManifestHeads, lm.Registry.ManifestGets, lm.Registry.Other+lm.Registry.BlobGets+lm.Registry.BlobHeads,
		len(tags), len(mans), pageSize)
	if lt.Registry.ManifestHeads >= n && lm.Registry.ManifestGets >= n {
		r.why = "Every tag was resolved with a manifest HEAD during `ls -l tags/`, and every manifest was then fetched again " +
			"with a GET during `ls -lR manifests/`: two requests per manifest. Resolving a tag with a GET whose verified " +
			"document goes straight into the manifest store would make it one."
	}
	if len(tags) != n {
		r.Pass = "FAIL"
		r.Notes += fmt.Sprintf("; expected %d tags", n)
	}
}
