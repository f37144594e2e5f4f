package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// Referrer is a manifest whose subject is another manifest, as a list of
// referrers describes it.
type Referrer struct {
	Descriptor
	// ArtifactType is the referrer's artifactType, or its config's
	// mediaType when it has none (as the referrers API reports it).
	ArtifactType string
	Annotations  map[string]string
}

// mediaTypeIndex is the OCI image index, the shape of every referrers list.
const mediaTypeIndex = "application/vnd.oci.image.index.v1+json"

// maxReferrerPages bounds the pages of one referrers answer.
const maxReferrerPages = 1000

// errNoReferrersAPI: the registry does not serve the referrers API.
var errNoReferrersAPI = errors.New("the registry does not serve the referrers API")

// ReferrersTag is the tag under which the referrers tag schema keeps the
// index of d's referrers: "sha256-<hex>".
func ReferrersTag(d digest.Digest) string { return "sha256-" + d.Hex() }

// Referrers lists the manifests whose subject is d, in the registry's
// order, one per digest. It asks the OCI 1.1 referrers API
// (GET /v2/<name>/referrers/<digest>, following Link pagination); a
// registry that does not serve it (a 4xx or 501, or an answer that is not
// an image index) is read through the tag schema instead: the index
// tagged ReferrersTag(d). No referrers is an empty list, not an error.
// Entries whose digest is not sha256 or whose size is negative are left out.
// Once the registry has said it has no referrers API, it is not asked
// again: the tag schema is read straight away.
func (c *Client) Referrers(ctx context.Context, d digest.Digest) ([]Referrer, error) {
	refs, ok, err := c.ReferrersAPI(ctx, d)
	if ok || err != nil {
		return refs, err
	}
	return c.ReferrersByTag(ctx, d)
}

// ReferrersAPI asks the referrers API alone. ok is false, with no error,
// when the registry has no such API (remembered: it is not asked again);
// the referrers are then in the tag schema (ReferrersByTag).
func (c *Client) ReferrersAPI(ctx context.Context, d digest.Digest) (refs []Referrer, ok bool, err error) {
	if c.noReferrersAPI.Load() {
		return nil, false, nil
	}
	refs, err = c.referrersAPI(ctx, d)
	if errors.Is(err, errNoReferrersAPI) {
		c.noReferrersAPI.Store(true)
		c.log.Debug("no referrers API; reading the referrers tag from now on", "digest", d, "reason", err)
		return nil, false, nil
	}
	return refs, err == nil, err
}

// ReferrersByTag reads the referrers tag schema alone: the index tagged
// ReferrersTag(d); none when the tag does not exist.
func (c *Client) ReferrersByTag(ctx context.Context, d digest.Digest) ([]Referrer, error) {
	return c.referrersTag(ctx, d)
}

// ReferrersByTagOnly reports whether the registry has said it has no
// referrers API, so that its referrers are only in the tag schema: a
// subject without a ReferrersTag tag has none.
func (c *Client) ReferrersByTagOnly() bool { return c.noReferrersAPI.Load() }

// referrersAPI reads every page of the referrers API's answer for d.
func (c *Client) referrersAPI(ctx context.Context, d digest.Digest) ([]Referrer, error) {
	what := "referrers of " + d.String()
	next := c.url("/referrers/" + d.String())
	seen := map[string]bool{}
	var refs []Referrer
	for next != "" {
		if seen[next] {
			return nil, fmt.Errorf("%s: pagination revisits a page: %w", what, hfserr.ErrUnavailable)
		}
		if len(seen) >= maxReferrerPages {
			return nil, fmt.Errorf("%s: more than %d pages: %w", what, maxReferrerPages, hfserr.ErrUnavailable)
		}
		page, link, err := c.referrersPage(ctx, what, next, len(seen) == 0)
		if err != nil {
			return nil, err
		}
		seen[next] = true
		refs = append(refs, page...)
		if next, err = resolveNext(next, link); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	return uniqueReferrers(refs), nil
}

// referrersPage fetches one page of the referrers API. On the first page,
// an answer that says the API is not there wraps errNoReferrersAPI.
func (c *Client) referrersPage(ctx context.Context, what, u string, first bool) (refs []Referrer, link string, err error) {
	hdr := http.Header{"Accept": {mediaTypeIndex}}
	err = c.retry(ctx, what, func(ctx context.Context, hc *http.Client) error {
		resp, err := c.do(ctx, hc, http.MethodGet, u, hdr, false)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err := c.statusError(resp)
			if first && noAPI(resp.StatusCode) {
				return fmt.Errorf("%w (%w)", errNoReferrersAPI, err)
			}
			return err
		}
		body, err := readDocument(resp)
		if err != nil {
			return err
		}
		page, ok := parseReferrers(mediaType(resp.Header.Get("Content-Type"), nil), body)
		switch {
		case !ok && first:
			return fmt.Errorf("%w (the answer is not an image index)", errNoReferrersAPI)
		case !ok:
			return fmt.Errorf("a page of the answer is not an image index: %w", hfserr.ErrUnavailable)
		}
		refs, link = page, resp.Header.Get("Link")
		return nil
	})
	return refs, link, err
}

// noAPI reports statuses by which a registry says it has no such endpoint.
// 401, 403 and 429 are not among them: they are about the client.
func noAPI(code int) bool {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests, http.StatusRequestTimeout:
		return false
	}
	return code >= 400 && code < 500 || code == http.StatusNotImplemented
}

// referrersTag reads the referrers tag schema: the index tagged
// ReferrersTag(d), or no referrers when the tag does not exist.
func (c *Client) referrersTag(ctx context.Context, d digest.Digest) ([]Referrer, error) {
	doc, err := c.Manifest(ctx, ReferrersTag(d))
	if errors.Is(err, hfserr.ErrNotFound) {
		return []Referrer{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", d, err)
	}
	refs, ok := parseReferrers(doc.MediaType, doc.Body)
	if !ok {
		c.log.Warn("the referrers tag is not an image index; no referrers shown", "tag", ReferrersTag(d), "mediatype", doc.MediaType)
		return []Referrer{}, nil
	}
	return uniqueReferrers(refs), nil
}

// parseReferrers reads the manifests of an image index whose media type
// (from the header or from its own mediaType field) says it is one.
func parseReferrers(headerType string, body []byte) ([]Referrer, bool) {
	var v struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			MediaType    string            `json:"mediaType"`
			Digest       string            `json:"digest"`
			Size         int64             `json:"size"`
			ArtifactType string            `json:"artifactType"`
			Annotations  map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, false
	}
	if v.MediaType != mediaTypeIndex && (v.MediaType != "" || headerType != mediaTypeIndex) {
		return nil, false
	}
	refs := make([]Referrer, 0, len(v.Manifests))
	for _, m := range v.Manifests {
		d, err := digest.Parse(m.Digest)
		if err != nil || d.IsZero() || m.Size < 0 {
			continue
		}
		refs = append(refs, Referrer{
			Descriptor:   Descriptor{Digest: d, Size: m.Size, MediaType: m.MediaType},
			ArtifactType: m.ArtifactType,
			Annotations:  m.Annotations,
		})
	}
	return refs, true
}

// uniqueReferrers keeps the first entry of every digest.
func uniqueReferrers(refs []Referrer) []Referrer {
	seen := make(map[digest.Digest]bool, len(refs))
	out := make([]Referrer, 0, len(refs))
	for _, r := range refs {
		if !seen[r.Digest] {
			seen[r.Digest] = true
			out = append(out, r)
		}
	}
	return out
}

// artifact is what a manifest says about itself as a referrer.
type artifact struct {
	subject      digest.Digest // zero if none
	artifactType string        // artifactType, else config.mediaType
	annotations  map[string]string
}

// readArtifact reads the subject, artifact type and annotations of a
// manifest body; ok is false when the body is not a JSON object.
func readArtifact(body []byte) (a artifact, ok bool) {
	var v struct {
		ArtifactType string `json:"artifactType"`
		Config       *struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
		Subject *struct {
			Digest string `json:"digest"`
		} `json:"subject"`
		Annotations map[string]string `json:"annotations"`
	}
	if json.Unmarshal(body, &v) != nil {
		return a, false
	}
	a.artifactType, a.annotations = v.ArtifactType, v.Annotations
	if a.artifactType == "" && v.Config != nil {
		a.artifactType = v.Config.MediaType
	}
	if v.Subject != nil {
		a.subject, _ = digest.Parse(v.Subject.Digest)
	}
	return a, true
}

// Referrers lists the manifests of index.json whose subject is d, in file
// order, one per digest: the layout's answer to the referrers API (what
// `oras attach --oci-layout` writes). Each is read and verified; one that
// is missing, does not hash to its digest or is not JSON is left out.
func (l *Layout) Referrers(ctx context.Context, d digest.Digest) ([]Referrer, error) {
	entries, err := l.entries()
	if err != nil {
		return nil, err
	}
	refs := []Referrer{}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		body, err := l.readBlob(e.desc.Digest)
		if err != nil || digest.Of(body) != e.desc.Digest {
			continue
		}
		a, ok := readArtifact(body)
		if !ok || a.subject != d {
			continue
		}
		mt := e.desc.MediaType
		if mt == "" {
			mt = manifestType(body)
		}
		refs = append(refs, Referrer{
			Descriptor:   Descriptor{Digest: e.desc.Digest, Size: int64(len(body)), MediaType: mt},
			ArtifactType: a.artifactType,
			Annotations:  a.annotations,
		})
	}
	return uniqueReferrers(refs), nil
}

// Referrers lists the referrers of d from the first resolve endpoint that
// answers (referrers change, as tags do; see Client.Referrers).
func (m *Mirrored) Referrers(ctx context.Context, d digest.Digest) ([]Referrer, error) {
	var refs []Referrer
	err := try(m, ctx, "referrers of "+d.String(), CapResolve, -1, func(c *Client) (err error) {
		refs, err = c.Referrers(ctx, d)
		return err
	})
	return refs, err
}
