package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// pager serves tag lists in pages of at most size tags, with a Link header
// built by link(path, lastTag) while more remain. It asks the real registry
// for the full list and pages it itself.
func pager(t *testing.T, size int, link func(path, last string) string) hook {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if kind(r) != "tags" {
			next.ServeHTTP(w, r)
			return
		}
		q := r.URL.Query()
		n, err := strconv.Atoi(q.Get("n"))
		if err != nil || n != tagsPageSize {
			t.Errorf("client asked for n=%q, want %d", q.Get("n"), tagsPageSize)
		}
		all := r.Clone(r.Context())
		all.URL.RawQuery = ""
		rec := record(next, all)
		var v struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Errorf("registry tag list: %v", err)
		}
		slices.Sort(v.Tags)
		if last := q.Get("last"); last != "" {
			i, _ := slices.BinarySearch(v.Tags, last)
			for i < len(v.Tags) && v.Tags[i] <= last {
				i++
			}
			v.Tags = v.Tags[i:]
		}
		if len(v.Tags) > size {
			v.Tags = v.Tags[:size]
			w.Header().Set("Link", link(r.URL.Path, v.Tags[size-1]))
		}
		_ = json.NewEncoder(w).Encode(v)
	}
}

func TestTags(t *testing.T) {
	f := newFixture(t)
	repo, _ := name.NewRepository(f.repo)
	want := []string{"latest"}
	for i := range 7 {
		tag := fmt.Sprintf("v%d", i)
		if err := remote.Tag(repo.Tag(tag), f.img); err != nil {
			t.Fatal(err)
		}
		want = append(want, tag)
	}
	slices.Sort(want)

	relative := func(p, last string) string {
		return fmt.Sprintf("<%s?n=%d&last=%s>; rel=\"next\"", p, tagsPageSize, url.QueryEscape(last))
	}
	for _, tc := range []struct {
		name     string
		hook     hook
		want     error
		requests int
	}{
		{name: "one page", requests: 1},
		{name: "relative links", hook: pager(t, 3, relative), requests: 3},
		{name: "page size divides evenly", hook: pager(t, 4, relative), requests: 2},
		{name: "absolute links among others", hook: pager(t, 3, func(p, last string) string {
			return fmt.Sprintf(`<%s/elsewhere>; rel="prev", <%s%s?last=%s&n=%d>; rel=next`,
				f.srv.URL, f.srv.URL, p, url.QueryEscape(last), tagsPageSize)
		}), requests: 3},
		{name: "link loop", hook: pager(t, 3, func(p, _ string) string {
			return fmt.Sprintf("<%s?n=%d>; rel=\"next\"", p, tagsPageSize)
		}), want: hfserr.ErrUnavailable, requests: 1},
		{name: "link to another host", hook: pager(t, 3, func(p, last string) string {
			return fmt.Sprintf("<http://evil.example%s?last=%s>; rel=\"next\"", p, last)
		}), want: hfserr.ErrUnavailable, requests: 1},
		{name: "503 on a later page is retried", hook: func() hook {
			page := pager(t, 3, relative)
			var failed atomic.Bool
			return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
				if strings.Contains(r.URL.RawQuery, "last=") && failed.CompareAndSwap(false, true) {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				page(w, r, next)
			}
		}(), requests: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.setHook(tc.hook)
			f.resetCounts()
			got, err := f.client(t).Tags(context.Background())
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			} else if err != nil || !slices.Equal(got, want) {
				t.Fatalf("Tags = %q, %v; want %q", got, err, want)
			}
			if r := f.count("GET tags"); r != tc.requests {
				t.Errorf("tag list GETs = %d, want %d", r, tc.requests)
			}
		})
	}
}

func TestTagsUnknownRepo(t *testing.T) {
	f := newFixture(t)
	c, err := New(strings.TrimSuffix(f.repo, "/test/repo")+"/no/such",
		Options{Keychain: staticKeychain{auth: authn.Anonymous}, RetryBase: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Tags(context.Background()); !errors.Is(err, hfserr.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestNextLink(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, ``},
		{`</v2/r/tags/list?n=2&last=b>; rel="next"`, `/v2/r/tags/list?n=2&last=b`},
		{`</a>; rel=next`, `/a`},
		{`</a>; REL="Next"`, `/a`},
		{`</a>; rel="prev", </b>; rel="next"`, `/b`},
		{`</a>; title="x"; rel="prev next"`, `/a`},
		{`</a>; rel="prev"`, ``},
		{`/a; rel="next"`, ``},
		{`</a; rel="next"`, ``},
		{`<>; rel="next"`, ``},
	} {
		if got := nextLink(tc.in); got != tc.want {
			t.Errorf("nextLink(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
