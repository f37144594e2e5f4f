package manifestview

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/hashfs/hashfs/internal/digest"
)

// ReferrerLister is the optional Registry method behind referrers/. A
// Registry without it shows every referrers/ empty.
type ReferrerLister interface {
	// Referrers lists the manifests whose subject is d (OCI 1.1): digest,
	// size, media type, artifactType and annotations of each. No
	// referrers is an empty list, not an error.
	Referrers(ctx context.Context, d digest.Digest) ([]Desc, error)
}

// Referrer is one entry of a manifest's referrers/.
type Referrer struct {
	Name string // see ReferrerName
	Desc Desc
}

const (
	referrersCacheSize = 1024 // subjects whose last answer is kept
	referrersParallel  = 8    // referrer manifests fetched at once for their artifact type
)

// referrersAnswer is one subject's last answer and when it was fetched.
type referrersAnswer struct {
	list []Referrer
	at   time.Time
}

// Referrers returns the manifests whose subject is d, named for
// referrers/ (see ReferrerName) and sorted by name. An answer is fresh for
// TagTTL, as tags are. When the registry fails, the last known answer is
// returned (a warning is logged, and the registry is asked again after
// TagTTL), or else the one KnownReferrers kept from an earlier run; the
// error only when there is neither. Fresh answers go to OnReferrers. A referrer the registry
// lists without an artifact type (or with the empty descriptor's type)
// is read once, verified and stored like any manifest, for the type its
// document gives. Every referrer is recorded as known.
func (r *Repo) Referrers(ctx context.Context, d digest.Digest) ([]Referrer, error) {
	if a, ok := r.refs.Get(d); ok && r.now().Sub(a.at) < r.ttl {
		return a.list, nil
	}
	v, err := r.shared(ctx, "referrers:"+d.String(), func(ctx context.Context) (any, error) {
		return r.loadReferrers(ctx, d)
	})
	if err == nil {
		return v.([]Referrer), nil
	}
	if ctx.Err() != nil {
		return nil, err
	}
	if a, ok := r.refs.Get(d); ok {
		r.log.Warn("cannot list referrers; showing the last known answer", "digest", d, "err", err)
		r.refs.Add(d, referrersAnswer{list: a.list, at: r.now()})
		return a.list, nil
	}
	if list, ok := r.savedReferrers(d); ok {
		r.log.Warn("cannot list referrers; showing the answer saved by an earlier run", "digest", d, "err", err)
		r.refs.Add(d, referrersAnswer{list: list, at: r.now()})
		return list, nil
	}
	return nil, err
}

// savedReferrers is the answer for d that KnownReferrers kept from an
// earlier run, named, sorted and recorded as known.
func (r *Repo) savedReferrers(d digest.Digest) ([]Referrer, bool) {
	if r.knownRefs == nil {
		return nil, false
	}
	descs, ok := r.knownRefs(d)
	if !ok {
		return nil, false
	}
	return r.referrerList(descs), true
}

// referrerList names descs for referrers/, one per digest, sorted by
// name, and records each as known.
func (r *Repo) referrerList(descs []Desc) []Referrer {
	list := make([]Referrer, 0, len(descs))
	seen := make(map[digest.Digest]bool, len(descs))
	for _, desc := range descs {
		if desc.Digest.IsZero() || seen[desc.Digest] {
			continue
		}
		seen[desc.Digest] = true
		r.record(desc, false)
		list = append(list, Referrer{Name: ReferrerName(desc), Desc: desc})
	}
	slices.SortFunc(list, func(a, b Referrer) int { return strings.Compare(a.Name, b.Name) })
	return list
}

// saveReferrers hands a fresh answer for d to OnReferrers unless it is
// the one this run already had.
func (r *Repo) saveReferrers(d digest.Digest, prev, list []Referrer, hadPrev bool) {
	if r.onReferrers == nil {
		return
	}
	same := hadPrev && slices.EqualFunc(prev, list, func(a, b Referrer) bool {
		return a.Name == b.Name && a.Desc.Size == b.Desc.Size && a.Desc.MediaType == b.Desc.MediaType &&
			maps.Equal(a.Desc.Annotations, b.Desc.Annotations)
	})
	if same {
		return
	}
	descs := make([]Desc, len(list))
	for i, ref := range list {
		descs[i] = ref.Desc
	}
	r.onReferrers(d, descs)
}

func (r *Repo) loadReferrers(ctx context.Context, d digest.Digest) ([]Referrer, error) {
	var descs []Desc
	var err error
	switch rl := r.reg.(type) {
	case twoStepReferrers:
		// The API first; without one, the tag schema, unless the fresh
		// tag list already says the tag is not there.
		var ok bool
		if descs, ok, err = rl.ReferrersAPI(ctx, d); err == nil && !ok && !r.noReferrersTag(d) {
			descs, err = rl.ReferrersByTag(ctx, d)
		}
	case ReferrerLister:
		if !r.noReferrersTag(d) {
			descs, err = rl.Referrers(ctx, d)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", d, err)
	}
	descs = slices.Clone(descs)
	r.completeTypes(ctx, descs)
	list := r.referrerList(descs)
	prev, hadPrev := r.refs.Peek(d)
	r.refs.Add(d, referrersAnswer{list: list, at: r.now()})
	r.saveReferrers(d, prev.list, list, hadPrev)
	return list, nil
}

// completeTypes fills in the artifact type (and annotations, if none
// came) of the referrers listed without one, from their documents. A
// document that cannot be had leaves the entry as it was.
func (r *Repo) completeTypes(ctx context.Context, descs []Desc) {
	var g errgroup.Group
	g.SetLimit(referrersParallel)
	for i := range descs {
		if descs[i].ArtifactType != "" && descs[i].ArtifactType != MediaTypeEmpty {
			continue
		}
		g.Go(func() error {
			doc, err := r.Manifest(ctx, descs[i].Digest)
			var p *parsed
			if err == nil {
				p, err = parse(doc)
			}
			if err != nil {
				r.log.Debug("referrer without an artifact type, and its document cannot be read", "digest", descs[i].Digest, "err", err)
				return nil
			}
			descs[i].ArtifactType = p.artifactType
			if descs[i].Annotations == nil {
				descs[i].Annotations = p.annotations
			}
			if descs[i].MediaType == "" {
				descs[i].MediaType = p.mediaType
			}
			return nil
		})
	}
	_ = g.Wait()
}

// ReferrerName is the name of referrer d in referrers/:
// "<artifact type>-sha256:<hex>", or "sha256:<hex>" without an artifact
// type (the empty descriptor's type counts as none). In the artifact type,
// "/", control bytes and invalid UTF-8 become "_", as does a leading "."
// (no hidden names), and it is cut at a character boundary to keep the
// name within 255 bytes. The digest at the end makes names unique.
func ReferrerName(d Desc) string {
	name := d.Digest.String()
	if d.ArtifactType == "" || d.ArtifactType == MediaTypeEmpty {
		return name
	}
	t := strings.ToValidUTF8(d.ArtifactType, "_")
	t = strings.Map(func(c rune) rune {
		if c == '/' || c < 0x20 || c == 0x7f {
			return '_'
		}
		return c
	}, t)
	if strings.HasPrefix(t, ".") {
		t = "_" + t[1:]
	}
	if room := maxNameLen - len(name) - 1; len(t) > room {
		t = t[:room]
		for !utf8.ValidString(t) {
			t = t[:len(t)-1]
		}
	}
	return t + "-" + name
}

// tagSchemaOnly is a ReferrerLister that can tell when its registry keeps
// referrers only in the tag schema (no referrers API).
type tagSchemaOnly interface {
	ReferrersByTagOnly() bool
}

// noReferrersTag reports, without a request, that d has no referrers: the
// registry keeps them only under the tag sha256-<hex>, and the tag list,
// still fresh, does not have it.
func (r *Repo) noReferrersTag(d digest.Digest) bool {
	ts, ok := r.reg.(tagSchemaOnly)
	if !ok || !ts.ReferrersByTagOnly() {
		return false
	}
	r.tagMu.Lock()
	defer r.tagMu.Unlock()
	fresh := !r.listAt.IsZero() && r.now().Sub(r.listAt) < r.ttl
	return fresh && !slices.Contains(r.tagList, "sha256-"+d.Hex())
}

// twoStepReferrers is a registry whose referrers API and tag schema can be
// asked apart, so that a registry without the API costs no request for a
// subject the tag list shows has no referrers tag. ok is false when the
// registry has no referrers API.
type twoStepReferrers interface {
	ReferrersAPI(ctx context.Context, d digest.Digest) (descs []Desc, ok bool, err error)
	ReferrersByTag(ctx context.Context, d digest.Digest) ([]Desc, error)
}
