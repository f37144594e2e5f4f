package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/go-containerregistry/pkg/name"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

var _ BlobSource = (*Mirrored)(nil)

// mirroredEntries is how many digests a Mirrored remembers the serving
// endpoint of.
const mirroredEntries = 4096

// Mirrored reads one repository through a list of endpoints (mirrors, then
// the upstream registry), each a Client, with the methods of a Client. An
// endpoint that fails, not found or unavailable or otherwise, falls through
// to the next; only the caller's context ending stops the search. Tags and
// manifests by tag come only from endpoints with CapResolve, blobs and
// manifests by digest from those with CapPull. It is safe for concurrent
// use.
type Mirrored struct {
	clients []*Client
	log     *slog.Logger
	served  *lru.Cache[digest.Digest, int] // digest -> index of the client that last served it
}

// EndpointStats are one endpoint's running totals.
type EndpointStats struct {
	Name  string // the endpoint's API root URL
	Stats Stats
}

// NewMirrored tries clients in the order given; they should all be for the
// same repository. It logs through the first client's logger.
func NewMirrored(clients ...*Client) *Mirrored {
	served, err := lru.New[digest.Digest, int](mirroredEntries)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	m := &Mirrored{clients: clients, served: served, log: slog.New(slog.DiscardHandler)}
	if len(clients) > 0 {
		m.log = clients[0].log
	}
	return m
}

// NewMirroredAt returns a Mirrored with one Client (made with o) for repo
// at each of eps, in order; see LoadHosts.
func NewMirroredAt(repo string, eps []Endpoint, o Options) (*Mirrored, error) {
	if len(eps) == 0 {
		return nil, fmt.Errorf("repository %q: no endpoints: %w", clip(repo), hfserr.ErrInvalid)
	}
	clients := make([]*Client, 0, len(eps))
	for _, ep := range eps {
		o.Endpoint = ep
		c, err := New(repo, o)
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
	}
	return NewMirrored(clients...), nil
}

// NewFromHosts reads the hosts configuration in hostsDir (see LoadHosts)
// for repo's registry and returns a Mirrored for repo.
func NewFromHosts(repo, hostsDir string, o Options) (*Mirrored, error) {
	var nopts []name.Option
	if o.PlainHTTP {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.NewRepository(repo, nopts...)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %v: %w", clip(repo), err, hfserr.ErrInvalid)
	}
	eps, err := LoadHosts(hostsDir, r.RegistryStr())
	if err != nil {
		return nil, err
	}
	return NewMirroredAt(repo, eps, o)
}

// Name is the repository's name.
func (m *Mirrored) Name() string { return m.Repository() }

// Repository is the canonical name of the repository, as Client has it.
func (m *Mirrored) Repository() string {
	if len(m.clients) == 0 {
		return ""
	}
	return m.clients[0].Repository()
}

// Endpoints returns each endpoint's running totals, in order.
func (m *Mirrored) Endpoints() []EndpointStats {
	out := make([]EndpointStats, len(m.clients))
	for i, c := range m.clients {
		out[i] = EndpointStats{Name: c.Endpoint().String(), Stats: c.Stats()}
	}
	return out
}

// Stats returns the totals over all endpoints.
func (m *Mirrored) Stats() Stats {
	var s Stats
	for _, c := range m.clients {
		s.Add(c.Stats())
	}
	return s
}

// Ping succeeds if any endpoint answers Ping.
func (m *Mirrored) Ping(ctx context.Context) error {
	return try(m, ctx, "ping", 0, -1, func(c *Client) error { return c.Ping(ctx) })
}

// StatBlob returns the size of blob d from the first pull endpoint that has it.
func (m *Mirrored) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	var size int64
	err := m.blob(ctx, d, "stat "+d.String(), func(c *Client) (err error) {
		size, err = c.StatBlob(ctx, d)
		return err
	})
	return size, err
}

// FetchRange reads bytes [off, off+n) of blob d from the first pull
// endpoint that serves them, starting with the one that served d last.
func (m *Mirrored) FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	if err := checkRange(off, n); err != nil {
		return nil, fmt.Errorf("fetch %s [%d, %d+%d): %w", d, off, off, n, err)
	}
	var out []byte
	err := m.blob(ctx, d, "fetch "+d.String(), func(c *Client) (err error) {
		out, err = c.FetchRange(ctx, d, off, n)
		return err
	})
	return out, err
}

// Manifest fetches the manifest named by ref: by digest from pull
// endpoints, by tag from resolve endpoints.
func (m *Mirrored) Manifest(ctx context.Context, ref string) (Doc, error) {
	var doc Doc
	err := try(m, ctx, "manifest "+clip(ref), refCapability(ref), -1, func(c *Client) (err error) {
		doc, err = c.Manifest(ctx, ref)
		return err
	})
	return doc, err
}

// StatManifest describes the manifest named by ref (see Manifest).
func (m *Mirrored) StatManifest(ctx context.Context, ref string) (Descriptor, error) {
	var desc Descriptor
	err := try(m, ctx, "stat manifest "+clip(ref), refCapability(ref), -1, func(c *Client) (err error) {
		desc, err = c.StatManifest(ctx, ref)
		return err
	})
	return desc, err
}

// Tags lists the repository's tags from the first resolve endpoint that
// answers.
func (m *Mirrored) Tags(ctx context.Context) ([]string, error) {
	var tags []string
	err := try(m, ctx, "list tags of "+m.Repository(), CapResolve, -1, func(c *Client) (err error) {
		tags, err = c.Tags(ctx)
		return err
	})
	return tags, err
}

// blob runs op on the pull endpoints, starting with the one that served d
// last, and remembers the one that succeeds.
func (m *Mirrored) blob(ctx context.Context, d digest.Digest, what string, op func(*Client) error) error {
	start, _ := m.served.Get(d)
	var winner int
	err := try(m, ctx, what, CapPull, start, func(c *Client) error {
		err := op(c)
		if err == nil {
			winner = m.index(c)
		}
		return err
	})
	if err == nil && winner != start {
		m.served.Add(d, winner)
	}
	return err
}

func (m *Mirrored) index(c *Client) int {
	for i, x := range m.clients {
		if x == c {
			return i
		}
	}
	return 0
}

// refCapability is what an endpoint needs to be asked for manifest ref.
func refCapability(ref string) Capability {
	if _, isDigest, _ := parseRef(ref); isDigest {
		return CapPull
	}
	return CapResolve
}

// try runs op on each client that can do need, from index start (-1: 0)
// round to the one before it, until one succeeds or ctx ends. When all
// fail, the last one's error is returned: the upstream registry, last in
// the list, has the final word. need 0 means any client.
func try(m *Mirrored, ctx context.Context, what string, need Capability, start int, op func(*Client) error) error {
	n := len(m.clients)
	start = max(start, 0)
	var errs []error
	for k := range n {
		c := m.clients[(start+k)%n]
		if need != 0 && !c.Endpoint().Can(need) {
			continue
		}
		err := op(c)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
		if k < n-1 {
			level := slog.LevelInfo
			if errors.Is(err, hfserr.ErrNotFound) {
				level = slog.LevelDebug
			}
			m.log.Log(ctx, level, "endpoint skipped", "op", what, "endpoint", c.Endpoint().String(), "err", err)
		}
	}
	switch len(errs) {
	case 0:
		return fmt.Errorf("%s: no endpoint of %s may %s: %w", what, m.Repository(), need, hfserr.ErrNotFound)
	case 1:
		return errs[0]
	}
	last := errs[len(errs)-1]
	return fmt.Errorf("%w (%d other endpoints failed too, first: %v)", last, len(errs)-1, errs[0])
}
