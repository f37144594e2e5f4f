package fetch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/hashfs/hashfs/internal/hfserr"
)

const (
	tagsPageSize = 1000
	maxTagPages  = 10000
	maxTagsBody  = 16 << 20
)

// Tags lists the repository's tags in server order, following Link
// pagination (rel="next", same host only).
func (c *Client) Tags(ctx context.Context) ([]string, error) {
	what := "list tags of " + c.Repository()
	next := c.url("/tags/list", "n", strconv.Itoa(tagsPageSize))
	seen := map[string]bool{}
	tags := []string{}
	for next != "" {
		if seen[next] {
			return nil, fmt.Errorf("%s: pagination revisits a page: %w", what, hfserr.ErrUnavailable)
		}
		if len(seen) >= maxTagPages {
			return nil, fmt.Errorf("%s: more than %d pages: %w", what, maxTagPages, hfserr.ErrUnavailable)
		}
		seen[next] = true
		page, link, err := c.tagPage(ctx, what, next)
		if err != nil {
			return nil, err
		}
		tags = append(tags, page...)
		if next, err = resolveNext(next, link); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	return tags, nil
}

// tagPage fetches one page of a tag list and returns its tags and Link header.
func (c *Client) tagPage(ctx context.Context, what, u string) (tags []string, link string, err error) {
	err = c.retry(ctx, what, func(ctx context.Context, hc *http.Client) error {
		resp, err := c.do(ctx, hc, http.MethodGet, u, nil, false)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return c.statusError(resp)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxTagsBody+1))
		if err != nil {
			return transient(fmt.Errorf("read body: %w", err))
		}
		if len(body) > maxTagsBody {
			return fmt.Errorf("tag list page over %d bytes: %w", maxTagsBody, hfserr.ErrInvalid)
		}
		var v struct {
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return fmt.Errorf("malformed tag list: %v: %w", err, hfserr.ErrUnavailable)
		}
		tags, link = v.Tags, resp.Header.Get("Link")
		return nil
	})
	return tags, link, err
}

// resolveNext returns the absolute URL of the rel="next" target in a Link
// header, relative to cur, or "" if there is none. A target on another host
// is refused: our credentials are scoped to the registry.
func resolveNext(cur, link string) (string, error) {
	target := nextLink(link)
	if target == "" {
		return "", nil
	}
	base, err := url.Parse(cur)
	if err != nil {
		return "", fmt.Errorf("bad page URL: %v: %w", err, hfserr.ErrInvalid)
	}
	ref, err := url.Parse(target)
	if err != nil {
		return "", fmt.Errorf("bad Link target: %v: %w", err, hfserr.ErrUnavailable)
	}
	next := base.ResolveReference(ref)
	if next.Host != base.Host {
		return "", fmt.Errorf("Link points to another host %q: %w", clip(next.Host), hfserr.ErrUnavailable)
	}
	next.Scheme = base.Scheme
	return next.String(), nil
}

// nextLink extracts the target of the first rel="next" link from an RFC 8288
// Link header value such as `</v2/x/tags/list?n=2&last=b>; rel="next"`.
func nextLink(h string) string {
	for {
		h = strings.TrimLeft(h, " \t,")
		if !strings.HasPrefix(h, "<") {
			return ""
		}
		end := strings.IndexByte(h, '>')
		if end < 0 {
			return ""
		}
		target := h[1:end]
		params, rest, _ := strings.Cut(h[end+1:], ",")
		h = rest
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
				continue
			}
			for _, r := range strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)) {
				if strings.EqualFold(r, "next") {
					return target
				}
			}
		}
	}
}
