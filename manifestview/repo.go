package manifestview

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Registry is what Repo needs from the network.
type Registry interface {
	// Manifest fetches a document by tag or "sha256:<hex>".
	Manifest(ctx context.Context, ref string) (Doc, error)
	// StatManifest resolves ref with HEAD: Digest, Size and MediaType.
	StatManifest(ctx context.Context, ref string) (Desc, error)
	// Tags lists the repository's tags.
	Tags(ctx context.Context) ([]string, error)
}

// DocStore is the on-disk cache of immutable documents.
type DocStore interface {
	PutDoc(d digest.Digest, mediaType string, body []byte) error
	GetDoc(d digest.Digest) (mediaType string, body []byte, ok bool)
}

// RepoOptions configures a Repo.
type RepoOptions struct {
	TagTTL time.Duration    // how long a tag answer is fresh; 0 means one minute
	Logger *slog.Logger     // nil discards
	Now    func() time.Time // nil means time.Now (tests)
	// ResolveTagsWithGet resolves tags with a manifest GET instead of a
	// HEAD: the same one round trip, and the document is then stored, so
	// browsing the tag's tree costs no further request. Leave it off for
	// registries that count GETs against a pull rate limit (Docker Hub).
	ResolveTagsWithGet bool
	// KnownTags is the last known answer from an earlier run, served while
	// the registry cannot be reached (it is stale from the start).
	KnownTags []Tag
	// OnTags, if set, is called with every fresh answer (under the tag
	// lock: it must not call back into the Repo), to persist it.
	OnTags func([]Tag)
	// KnownReferrers, if set, returns the last known referrers of subject
	// d from an earlier run (ok false if none), served while the registry
	// cannot be reached.
	KnownReferrers func(d digest.Digest) (descs []Desc, ok bool)
	// OnReferrers, if set, is called with every fresh referrers answer
	// that differs from the one before it in this run (no lock held), to
	// persist it. descs is empty when d has no referrers.
	OnReferrers func(d digest.Digest, descs []Desc)
}

const treeCacheSize = 256

// Repo is one repository as hashfs shows it: tags resolved with a TTL
// and a last-known fallback, documents verified and cached, trees
// built once, and every descriptor seen so far.
//
// Locks: tagMu and knownMu are never held together, nor across calls
// to Registry or DocStore.
type Repo struct {
	reg    Registry
	get    bool // ResolveTagsWithGet
	onTags func([]Tag)
	docs   DocStore
	ttl    time.Duration
	log    *slog.Logger
	now    func() time.Time

	trees  *lru.Cache[digest.Digest, *Node]
	flight singleflight.Group // keys: "doc:<digest>", "tag:<name>", "tags"

	knownMu   sync.Mutex
	known     map[digest.Digest]knownDesc
	platforms map[digest.Digest]Platform // of manifests, from the index entries seen

	refs        *lru.Cache[digest.Digest, referrersAnswer] // last answer per subject
	knownRefs   func(digest.Digest) ([]Desc, bool)         // RepoOptions.KnownReferrers
	onReferrers func(digest.Digest, []Desc)                // RepoOptions.OnReferrers

	tagMu   sync.Mutex
	tagList []string             // last listing that succeeded
	listAt  time.Time            // when tagList was last checked
	targets map[string]tagTarget // last known target per tag
}

type knownDesc struct {
	desc  Desc
	exact bool // size measured from the bytes, not taken from a descriptor
}

type tagTarget struct {
	desc Desc
	at   time.Time
}

// NewRepo returns a Repo reading from reg and caching documents in docs.
func NewRepo(reg Registry, docs DocStore, o RepoOptions) *Repo {
	r := &Repo{
		reg:         reg,
		get:         o.ResolveTagsWithGet,
		onTags:      o.OnTags,
		knownRefs:   o.KnownReferrers,
		onReferrers: o.OnReferrers,
		docs:        docs,
		ttl:         o.TagTTL,
		log:         o.Logger,
		now:         o.Now,
		known:       map[digest.Digest]knownDesc{},
		targets:     map[string]tagTarget{},
	}
	if r.ttl <= 0 {
		r.ttl = time.Minute
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	trees, err := lru.New[digest.Digest, *Node](treeCacheSize)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	r.trees = trees
	r.platforms = map[digest.Digest]Platform{}
	if r.refs, err = lru.New[digest.Digest, referrersAnswer](referrersCacheSize); err != nil {
		panic(err) // only for a non-positive size
	}
	if len(o.KnownTags) > 0 {
		// Known, but checked long ago: the first use asks the registry.
		r.listAt = time.Unix(1, 0)
		for _, t := range o.KnownTags {
			if tagRE.MatchString(t.Name) {
				r.tagList = append(r.tagList, t.Name)
				r.targets[t.Name] = tagTarget{desc: t.Target, at: time.Unix(1, 0)}
				r.record(t.Target, false)
			}
		}
		r.tagList = validTags(r.tagList)
	}
	return r
}

// Manifest returns the document d: from the DocStore when it holds
// bytes that hash to d, else from the registry, verified (a mismatch
// wraps hfserr.ErrIntegrity) and stored. Doc.Body is shared: callers
// must not modify it.
// Concurrent callers share one fetch, which runs without the callers'
// cancellation so that one interrupted reader does not fail the others.
func (r *Repo) Manifest(ctx context.Context, d digest.Digest) (Doc, error) {
	v, err := r.shared(ctx, "doc:"+d.String(), func(ctx context.Context) (any, error) {
		return r.loadDoc(ctx, d)
	})
	if err != nil {
		return Doc{}, err
	}
	return v.(Doc), nil
}

func (r *Repo) loadDoc(ctx context.Context, d digest.Digest) (Doc, error) {
	if mt, body, ok := r.docs.GetDoc(d); ok {
		if digest.Of(body) == d {
			r.record(Desc{Digest: d, Size: int64(len(body)), MediaType: mt}, true)
			return Doc{Digest: d, MediaType: mt, Body: body}, nil
		}
		r.log.Warn("cached document does not match its digest; fetching again", "digest", d)
	}
	doc, err := r.reg.Manifest(ctx, d.String())
	if err != nil {
		return Doc{}, fmt.Errorf("manifest %s: %w", d, err)
	}
	if got := digest.Of(doc.Body); got != d {
		return Doc{}, fmt.Errorf("manifest %s: body hashes to %s: %w", d, got, hfserr.ErrIntegrity)
	}
	doc.Digest = d
	if err := r.docs.PutDoc(d, doc.MediaType, doc.Body); err != nil {
		r.log.Warn("cannot store document", "digest", d, "err", err)
	}
	r.record(Desc{Digest: d, Size: int64(len(doc.Body)), MediaType: doc.MediaType}, true)
	return doc, nil
}

// Tree returns the tree of document d (see Build), and records every
// descriptor in it as known.
func (r *Repo) Tree(ctx context.Context, d digest.Digest) (*Node, error) {
	if n, ok := r.trees.Get(d); ok {
		return n, nil
	}
	doc, err := r.Manifest(ctx, d)
	if err != nil {
		return nil, err
	}
	b, err := build(doc)
	if err != nil {
		return nil, err
	}
	if b.skipped > 0 {
		r.log.Warn("manifest has invalid descriptors; not shown", "digest", d, "skipped", b.skipped)
	}
	if len(b.dropped) > 0 {
		r.log.Info("manifest metadata not shown as extended attributes", "digest", d, "dropped", b.dropped)
	}
	r.record(b.seen[0], true)
	for _, s := range b.seen[1:] {
		r.record(s, false)
		r.notePlatform(s)
	}
	r.trees.Add(d, b.root)
	return b.root, nil
}

// record remembers desc. An exact entry (size from the bytes) beats one
// taken from a descriptor; otherwise the first one seen stays, so a
// file's size does not change under the kernel. The first descriptor
// URLs seen for a digest are kept whichever entry wins.
func (r *Repo) record(desc Desc, exact bool) {
	desc = Desc{Digest: desc.Digest, Size: desc.Size, MediaType: desc.MediaType, URLs: desc.URLs}
	r.knownMu.Lock()
	defer r.knownMu.Unlock()
	old, ok := r.known[desc.Digest]
	switch {
	case !ok, exact && !old.exact:
	case exact && old.exact && desc.MediaType != "":
	default:
		if len(old.desc.URLs) == 0 && len(desc.URLs) > 0 {
			old.desc.URLs = desc.URLs
			r.known[desc.Digest] = old
		}
		return
	}
	if desc.MediaType == "" {
		desc.MediaType = old.desc.MediaType
	}
	if len(desc.URLs) == 0 {
		desc.URLs = old.desc.URLs
	}
	r.known[desc.Digest] = knownDesc{desc: desc, exact: exact || old.exact}
}

// Known returns every blob and manifest descriptor seen so far, sorted
// by digest, one per digest, without annotations or platform (URLs kept).
func (r *Repo) Known() []Desc {
	r.knownMu.Lock()
	out := make([]Desc, 0, len(r.known))
	for _, k := range r.known {
		out = append(out, k.desc)
	}
	r.knownMu.Unlock()
	slices.SortFunc(out, func(a, b Desc) int { return bytes.Compare(a.Digest[:], b.Digest[:]) })
	return out
}

// Lookup returns the descriptor seen for d (media type, size, URLs).
func (r *Repo) Lookup(d digest.Digest) (Desc, bool) {
	r.knownMu.Lock()
	defer r.knownMu.Unlock()
	k, ok := r.known[d]
	return k.desc, ok
}

// shared runs fn once for all concurrent callers of key. fn runs
// without the caller's cancellation; each caller stops waiting when its
// own ctx ends.
func (r *Repo) shared(ctx context.Context, key string, fn func(context.Context) (any, error)) (any, error) {
	base := context.WithoutCancel(ctx)
	ch := r.flight.DoChan(key, func() (any, error) { return fn(base) })
	select {
	case res := <-ch:
		return res.Val, res.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
