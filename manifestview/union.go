package manifestview

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/first"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Stater tells the size and media type of any digest of one repository
// (a HEAD on its registry, or what its manifests said).
type Stater interface {
	Stat(ctx context.Context, d digest.Digest) (Desc, error)
}

// Member is one repository of a Union.
type Member struct {
	Name   string // for errors and logs
	Repo   *Repo
	Stater Stater
}

// unionMemory is how many digests a Union remembers the member of.
const unionMemory = 1 << 16

// Union is the repositories of a many-source mount seen as one: a digest
// is looked for in all of them at once, the first that has it answers,
// and the member is remembered for opening its documents.
type Union struct {
	mu      sync.Mutex
	members []Member
	where   *lru.Cache[digest.Digest, int] // digest -> index into members
}

// NewUnion returns a Union of members (more may be added).
func NewUnion(members ...Member) *Union {
	where, err := lru.New[digest.Digest, int](unionMemory)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &Union{members: slices.Clone(members), where: where}
}

// Add makes m one more member.
func (u *Union) Add(m Member) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.members = append(u.members, m)
}

func (u *Union) snapshot() []Member {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.members)
}

// Stat asks every member at once and returns the first answer. A digest
// no member has is hfserr.ErrNotFound; when some members failed
// otherwise, the error joins theirs (hfserr.ErrUnavailable when every
// failure was).
func (u *Union) Stat(ctx context.Context, d digest.Digest) (Desc, error) {
	ms := u.snapshot()
	if len(ms) == 0 {
		return Desc{}, fmt.Errorf("%s: no sources: %w", d, hfserr.ErrNotFound)
	}
	if i, ok := u.where.Get(d); ok && i < len(ms) {
		if desc, err := ms[i].Stater.Stat(ctx, d); err == nil {
			return desc, nil
		}
	}
	i, desc, failed := first.Success(ctx, len(ms), func(ctx context.Context, i int) (Desc, error) {
		desc, err := ms[i].Stater.Stat(ctx, d)
		if err != nil {
			err = fmt.Errorf("%s: %w", ms[i].Name, err)
		}
		return desc, err
	})
	if i >= 0 {
		u.where.Add(d, i)
		return desc, nil
	}
	var errs []error
	for _, err := range failed {
		if !errors.Is(err, hfserr.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return Desc{}, fmt.Errorf("%s: in none of %d sources: %w", d, len(ms), hfserr.ErrNotFound)
	}
	return Desc{}, errors.Join(errs...)
}

// Known is every descriptor any member has seen, one per digest.
func (u *Union) Known() []Desc {
	seen := map[digest.Digest]bool{}
	var out []Desc
	for _, m := range u.snapshot() {
		for _, desc := range m.Repo.Known() {
			if !seen[desc.Digest] {
				seen[desc.Digest] = true
				out = append(out, desc)
			}
		}
	}
	slices.SortFunc(out, func(a, b Desc) int { return bytes.Compare(a.Digest[:], b.Digest[:]) })
	return out
}

// Lookup returns the descriptor a member has seen for d.
func (u *Union) Lookup(d digest.Digest) (Desc, bool) {
	for _, m := range u.snapshot() {
		if desc, ok := m.Repo.Lookup(d); ok {
			return desc, true
		}
	}
	return Desc{}, false
}

// Manifest opens document d from the member it was found in, else from
// the first member that has it.
func (u *Union) Manifest(ctx context.Context, d digest.Digest) (Doc, error) {
	ms := u.snapshot()
	if i, ok := u.where.Get(d); ok && i < len(ms) {
		if doc, err := ms[i].Repo.Manifest(ctx, d); err == nil {
			return doc, nil
		}
	}
	var errs []error
	for i, m := range ms {
		doc, err := m.Repo.Manifest(ctx, d)
		if err == nil {
			u.where.Add(d, i)
			return doc, nil
		}
		if ctx.Err() != nil {
			return Doc{}, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
	}
	if len(errs) == 0 {
		return Doc{}, fmt.Errorf("%s: no sources: %w", d, hfserr.ErrNotFound)
	}
	return Doc{}, errors.Join(errs...)
}
