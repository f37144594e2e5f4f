package manifestview

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// referrerRegistry is a fakeRegistry that also lists referrers.
type referrerRegistry struct {
	*fakeRegistry
	refs map[digest.Digest][]Desc
	down bool
}

func (f *referrerRegistry) Referrers(ctx context.Context, d digest.Digest) ([]Desc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["referrers"]++
	if f.down {
		return nil, fmt.Errorf("referrers: %w", hfserr.ErrUnavailable)
	}
	return f.refs[d], nil
}

func (f *referrerRegistry) set(d digest.Digest, refs ...Desc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refs[d] = refs
}

func (f *referrerRegistry) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func names(refs []Referrer) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = r.Name
	}
	return out
}

func TestReferrerName(t *testing.T) {
	d := blob("m1")
	long := strings.Repeat("a", 300)
	euro := strings.Repeat("€", 100) // 3 bytes each
	for _, tc := range []struct {
		name, artifactType, want string
	}{
		{"media type", "application/spdx+json", "application_spdx+json-" + d.String()},
		{"no type", "", d.String()},
		{"empty descriptor type is none", MediaTypeEmpty, d.String()},
		{"control bytes and NUL", "a\nb\x00c\x7fd", "a_b_c_d-" + d.String()},
		{"no hidden names", ".hidden/x", "_hidden_x-" + d.String()},
		{"dot-dot", "..", "_.-" + d.String()},
		{"invalid UTF-8", "a\xffb", "a_b-" + d.String()},
		{"too long is cut", long, long[:255-len(d.String())-1] + "-" + d.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ReferrerName(Desc{Digest: d, ArtifactType: tc.artifactType}); got != tc.want {
				t.Errorf("ReferrerName(%q) = %q, want %q", tc.artifactType, got, tc.want)
			}
		})
	}
	got := ReferrerName(Desc{Digest: d, ArtifactType: euro})
	if len(got) > maxNameLen || !utf8.ValidString(got) || !strings.HasSuffix(got, "-"+d.String()) || len(got) < maxNameLen-2 {
		t.Errorf("a long multi-byte type gives %q (%d bytes)", got, len(got))
	}
}

func TestRepoReferrers(t *testing.T) {
	ctx := context.Background()
	reg := &referrerRegistry{fakeRegistry: newFakeRegistry(), refs: map[digest.Digest][]Desc{}}
	subject := reg.add(MediaTypeOCIManifest, manifestBody(t, "l1"))
	sig := Desc{Digest: blob("m1"), Size: 10, MediaType: MediaTypeOCIManifest, ArtifactType: "application/vnd.example.sig"}
	sbom := Desc{Digest: blob("m2"), Size: 10, MediaType: MediaTypeOCIManifest, ArtifactType: "application/spdx+json",
		Annotations: map[string]string{"k": "v"}}
	// Listed without a useful artifact type, as ggcr's registry does: the
	// type comes from the document.
	untypedBody := mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": MediaTypeOCIManifest, "artifactType": "application/vnd.example.att",
		"config": jd(MediaTypeEmpty, "{}", 2, nil), "layers": []any{},
		"annotations": map[string]string{"from": "document"},
	})
	untyped := Desc{Digest: reg.add(MediaTypeOCIManifest, untypedBody), Size: int64(len(untypedBody)), MediaType: MediaTypeOCIManifest, ArtifactType: MediaTypeEmpty}
	reg.set(subject, sig, untyped, sig)
	r, clk := newTestRepo(reg, newMemStore())

	// Nothing known and the registry down: the error.
	reg.setDown(true)
	if _, err := r.Referrers(ctx, subject); !errors.Is(err, hfserr.ErrUnavailable) {
		t.Fatalf("Referrers with the registry down and nothing known: %v", err)
	}
	reg.setDown(false)

	got, err := r.Referrers(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"application_vnd.example.att-" + untyped.Digest.String(), "application_vnd.example.sig-" + sig.Digest.String()}
	if fmt.Sprint(names(got)) != fmt.Sprint(want) {
		t.Fatalf("Referrers = %v, want %v (sorted, one per digest)", names(got), want)
	}
	if got[0].Desc.Annotations["from"] != "document" {
		t.Errorf("annotations of a referrer listed without them = %v, want the document's", got[0].Desc.Annotations)
	}
	if k, ok := r.Lookup(sig.Digest); !ok || k.MediaType != MediaTypeOCIManifest {
		t.Errorf("a referrer is not known: %+v, %v", k, ok)
	}

	// Within the TTL the answer stands; after it a new referrer shows.
	reg.set(subject, sig, untyped, sbom)
	clk.Advance(30 * time.Second)
	if got, _ := r.Referrers(ctx, subject); len(got) != 2 {
		t.Errorf("within the TTL: %v", names(got))
	}
	if n := reg.count("referrers"); n != 2 {
		t.Errorf("registry asked %d times, want 2 (one failure, one answer)", n)
	}
	clk.Advance(31 * time.Second)
	got, err = r.Referrers(ctx, subject)
	if err != nil || len(got) != 3 || got[0].Name != "application_spdx+json-"+sbom.Digest.String() {
		t.Errorf("after the TTL: %v, %v", names(got), err)
	}

	// The registry goes down: the last known answer, asked again only
	// after another TTL.
	reg.setDown(true)
	clk.Advance(2 * time.Minute)
	calls := reg.count("referrers")
	for range 3 {
		if got, err := r.Referrers(ctx, subject); err != nil || len(got) != 3 {
			t.Errorf("registry down: %v, %v; want the last known answer", names(got), err)
		}
	}
	if n := reg.count("referrers") - calls; n != 1 {
		t.Errorf("registry down: asked %d times, want 1", n)
	}
	reg.setDown(false)
	reg.set(subject)
	clk.Advance(2 * time.Minute)
	if got, err := r.Referrers(ctx, subject); err != nil || len(got) != 0 {
		t.Errorf("referrers removed: %v, %v", names(got), err)
	}
}

func TestRepoReferrersWithoutLister(t *testing.T) {
	reg := newFakeRegistry()
	r, _ := newTestRepo(reg, newMemStore())
	got, err := r.Referrers(context.Background(), blob("m1"))
	if err != nil || len(got) != 0 {
		t.Errorf("Referrers from a registry that cannot list them = %v, %v; want none", got, err)
	}
}

// tagOnlyRegistry keeps referrers only in the tag schema.
type tagOnlyRegistry struct{ *referrerRegistry }

func (tagOnlyRegistry) ReferrersByTagOnly() bool { return true }

// With referrers only in the tag schema, a fresh tag list without the
// subject's sha256-<hex> tag answers "none" without asking the registry.
func TestRepoReferrersFromTagList(t *testing.T) {
	ctx := context.Background()
	fr := newFakeRegistry()
	reg := tagOnlyRegistry{&referrerRegistry{fakeRegistry: fr, refs: map[digest.Digest][]Desc{}}}
	withRefs := fr.add(MediaTypeOCIManifest, manifestBody(t, "l1"))
	without := fr.add(MediaTypeOCIManifest, manifestBody(t, "l2"))
	sig := Desc{Digest: blob("m3"), Size: 9, MediaType: MediaTypeOCIManifest, ArtifactType: "application/vnd.example.sig"}
	reg.set(withRefs, sig)
	fr.tag("v1", withRefs)
	fr.tag("sha256-"+withRefs.Hex(), blob("m3"))
	r, clock := newTestRepo(reg, newMemStore())

	if _, err := r.Referrers(ctx, without); err != nil || reg.count("referrers") != 1 {
		t.Fatalf("without a tag list: %v, %d registry calls; want it asked once", err, reg.count("referrers"))
	}
	clock.Advance(2 * time.Minute) // past the referrers' TTL
	if _, err := r.Tags(ctx); err != nil {
		t.Fatal(err)
	}
	before := reg.count("referrers")
	if refs, err := r.Referrers(ctx, without); err != nil || len(refs) != 0 || reg.count("referrers") != before {
		t.Errorf("no sha256-<hex> tag: %v, %v, %d registry calls; want none, asked 0 times", refs, err, reg.count("referrers")-before)
	}
	if refs, err := r.Referrers(ctx, withRefs); err != nil || len(refs) != 1 || reg.count("referrers") != before+1 {
		t.Errorf("with the tag: %v, %v; want the registry asked", refs, err)
	}
}

// twoStepRegistry has no referrers API and keeps referrers in the tag schema.
type twoStepRegistry struct {
	*referrerRegistry
	noAPI bool
}

func (f *twoStepRegistry) ReferrersAPI(ctx context.Context, d digest.Digest) ([]Desc, bool, error) {
	f.mu.Lock()
	f.calls["api"]++
	f.noAPI = true
	f.mu.Unlock()
	return nil, false, nil
}

func (f *twoStepRegistry) ReferrersByTag(ctx context.Context, d digest.Digest) ([]Desc, error) {
	return f.Referrers(ctx, d)
}

func (f *twoStepRegistry) ReferrersByTagOnly() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.noAPI
}

// The first subject's listing learns there is no API, and already uses
// the fresh tag list: no tag request for a subject without the tag.
func TestRepoReferrersTwoSteps(t *testing.T) {
	ctx := context.Background()
	fr := newFakeRegistry()
	reg := &twoStepRegistry{referrerRegistry: &referrerRegistry{fakeRegistry: fr, refs: map[digest.Digest][]Desc{}}}
	withRefs := fr.add(MediaTypeOCIManifest, manifestBody(t, "l1"))
	without := fr.add(MediaTypeOCIManifest, manifestBody(t, "l2"))
	reg.set(withRefs, Desc{Digest: blob("m3"), Size: 9, MediaType: MediaTypeOCIManifest, ArtifactType: "application/vnd.example.sig"})
	fr.tag("v1", withRefs)
	fr.tag("sha256-"+withRefs.Hex(), blob("m3"))
	r, _ := newTestRepo(reg, newMemStore())
	if _, err := r.Tags(ctx); err != nil {
		t.Fatal(err)
	}
	if refs, err := r.Referrers(ctx, without); err != nil || len(refs) != 0 || reg.count("api") != 1 || reg.count("referrers") != 0 {
		t.Errorf("first subject, no tag: %v, %v; API asked %d, tag schema %d; want 1 and 0", refs, err, reg.count("api"), reg.count("referrers"))
	}
	if refs, err := r.Referrers(ctx, withRefs); err != nil || len(refs) != 1 || reg.count("referrers") != 1 {
		t.Errorf("subject with the tag: %v, %v; tag schema asked %d, want 1", refs, err, reg.count("referrers"))
	}
}
