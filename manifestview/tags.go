package manifestview

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Tag is a tag and the manifest it points at.
type Tag struct {
	Name   string
	Target Desc
}

// tagRE is the OCI distribution spec's tag grammar. It also keeps tag
// names safe as file names ("." and ".." cannot match).
var tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

const statParallel = 8

// Tags lists and resolves every tag, sorted by name. The answer is
// fresh for TagTTL. When the registry fails, the last known answer is
// returned (and a warning logged): for the listing as a whole, and per
// tag, where a tag whose HEAD fails keeps its last known target. A tag
// the registry says is gone (ErrNotFound) is dropped. The error is
// returned only when nothing is known.
func (r *Repo) Tags(ctx context.Context) ([]Tag, error) {
	r.tagMu.Lock()
	fresh := !r.listAt.IsZero() && r.now().Sub(r.listAt) < r.ttl
	r.tagMu.Unlock()
	if !fresh {
		if _, err := r.shared(ctx, "tags", func(ctx context.Context) (any, error) {
			return nil, r.refreshTags(ctx)
		}); err != nil {
			return nil, err
		}
	}
	r.tagMu.Lock()
	defer r.tagMu.Unlock()
	out := make([]Tag, 0, len(r.tagList))
	for _, name := range r.tagList {
		if t, ok := r.targets[name]; ok {
			out = append(out, Tag{Name: name, Target: t.desc})
		}
	}
	return out, nil
}

func (r *Repo) refreshTags(ctx context.Context) error {
	names, err := r.reg.Tags(ctx)
	if err != nil {
		r.tagMu.Lock()
		defer r.tagMu.Unlock()
		if r.listAt.IsZero() {
			return fmt.Errorf("list tags: %w", err)
		}
		r.log.Warn("cannot list tags; showing the last known list", "err", err)
		r.listAt = r.now() // try again after the TTL, not on every call
		return nil
	}
	names = validTags(names)

	r.tagMu.Lock()
	now := r.now()
	need := make([]string, 0, len(names))
	for _, n := range names {
		if t, ok := r.targets[n]; !ok || now.Sub(t.at) >= r.ttl {
			need = append(need, n)
		}
	}
	r.tagMu.Unlock()

	errs := make([]error, len(need))
	descs := make([]Desc, len(need))
	var g errgroup.Group
	g.SetLimit(statParallel)
	for i, n := range need {
		g.Go(func() error {
			descs[i], errs[i] = r.stat(ctx, n)
			return nil
		})
	}
	_ = g.Wait()

	r.tagMu.Lock()
	defer r.tagMu.Unlock()
	now = r.now()
	var firstErr error
	for i, n := range need {
		err := errs[i]
		switch {
		case err == nil:
			r.targets[n] = tagTarget{desc: descs[i], at: now}
		case errors.Is(err, hfserr.ErrNotFound):
			delete(r.targets, n)
		default:
			if firstErr == nil {
				firstErr = err
			}
			if _, ok := r.targets[n]; ok {
				r.log.Warn("cannot resolve tag; keeping its last known target", "tag", n, "err", err)
			} else {
				r.log.Warn("cannot resolve tag", "tag", n, "err", err)
			}
		}
	}
	keep := make(map[string]bool, len(names))
	resolved := 0
	for _, n := range names {
		keep[n] = true
		if _, ok := r.targets[n]; ok {
			resolved++
		}
	}
	if resolved == 0 && firstErr != nil {
		if r.listAt.IsZero() {
			return fmt.Errorf("resolve tags: %w", firstErr)
		}
		r.log.Warn("cannot resolve any tag; showing the last known list", "err", firstErr)
		r.listAt = now
		return nil
	}
	for n, t := range r.targets {
		if !keep[n] && now.Sub(t.at) >= r.ttl {
			delete(r.targets, n)
		}
	}
	r.tagList = names
	r.listAt = now
	if r.onTags != nil {
		out := make([]Tag, 0, len(names))
		for _, n := range names {
			if t, ok := r.targets[n]; ok {
				out = append(out, Tag{Name: n, Target: t.desc})
			}
		}
		r.onTags(out)
	}
	return nil
}

// Tag resolves one tag, with the same TTL and last-known fallback as
// Tags. An unknown or malformed tag wraps hfserr.ErrNotFound.
func (r *Repo) Tag(ctx context.Context, name string) (Desc, error) {
	if !tagRE.MatchString(name) {
		return Desc{}, fmt.Errorf("tag %q: malformed: %w", name, hfserr.ErrNotFound)
	}
	r.tagMu.Lock()
	t, ok := r.targets[name]
	r.tagMu.Unlock()
	if ok && r.now().Sub(t.at) < r.ttl {
		return t.desc, nil
	}
	v, err := r.shared(ctx, "tag:"+name, func(ctx context.Context) (any, error) {
		return r.stat(ctx, name)
	})
	r.tagMu.Lock()
	defer r.tagMu.Unlock()
	switch {
	case err == nil:
		d := v.(Desc)
		r.targets[name] = tagTarget{desc: d, at: r.now()}
		return d, nil
	case errors.Is(err, hfserr.ErrNotFound):
		delete(r.targets, name)
		return Desc{}, err
	}
	if t, ok := r.targets[name]; ok && ctx.Err() == nil {
		r.log.Warn("cannot resolve tag; using its last known target", "tag", name, "err", err)
		return t.desc, nil
	}
	return Desc{}, err
}

// stat resolves a tag with HEAD (or GET, see ResolveTagsWithGet) and
// records the manifest it names.
func (r *Repo) stat(ctx context.Context, name string) (Desc, error) {
	if r.get {
		return r.fetchTag(ctx, name)
	}
	d, err := r.reg.StatManifest(ctx, name)
	if err != nil {
		return Desc{}, fmt.Errorf("tag %q: %w", name, err)
	}
	if d.Digest.IsZero() || d.Size < 0 {
		return Desc{}, fmt.Errorf("tag %q: registry gave no digest: %w", name, hfserr.ErrUnavailable)
	}
	d = Desc{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}
	r.record(d, false)
	return d, nil
}

// validTags keeps well-formed tag names, sorted and unique.
func validTags(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if tagRE.MatchString(n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// fetchTag resolves a tag with GET and stores the document, so that its
// tree needs no further request.
func (r *Repo) fetchTag(ctx context.Context, name string) (Desc, error) {
	doc, err := r.reg.Manifest(ctx, name)
	if err != nil {
		return Desc{}, fmt.Errorf("tag %q: %w", name, err)
	}
	d := digest.Of(doc.Body)
	if err := r.docs.PutDoc(d, doc.MediaType, doc.Body); err != nil {
		r.log.Warn("cannot store document", "digest", d, "err", err)
	}
	desc := Desc{Digest: d, Size: int64(len(doc.Body)), MediaType: doc.MediaType}
	r.record(desc, true)
	return desc, nil
}
