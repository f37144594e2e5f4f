package manifestview

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

func tagTargets(t *testing.T, r *Repo) map[string]digest.Digest {
	t.Helper()
	tags, err := r.Tags(context.Background())
	if err != nil {
		t.Fatalf("Tags: %v", err)
	}
	out := map[string]digest.Digest{}
	for i, tg := range tags {
		if i > 0 && tags[i-1].Name >= tg.Name {
			t.Fatalf("tags not sorted: %+v", tags)
		}
		out[tg.Name] = tg.Target.Digest
	}
	return out
}

func sameTargets(t *testing.T, got, want map[string]digest.Digest) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("tags = %v, want %v", got, want)
	}
	for n, d := range want {
		if got[n] != d {
			t.Fatalf("tag %s -> %s, want %s", n, got[n], d)
		}
	}
}

func TestRepoTagsTTL(t *testing.T) {
	reg := newFakeRegistry()
	m1 := reg.add(MediaTypeOCIManifest, manifestBody(t, "l1"))
	m2 := reg.add(MediaTypeOCIManifest, manifestBody(t, "l2"))
	reg.tag("v1", m1)
	reg.tag("latest", m1)
	reg.tag("../evil", m2) // not a valid tag: never shown
	r, clk := newTestRepo(reg, newMemStore())

	sameTargets(t, tagTargets(t, r), map[string]digest.Digest{"v1": m1, "latest": m1})
	if got, ok := r.Lookup(m1); !ok || got.MediaType != MediaTypeOCIManifest {
		t.Errorf("tag target not known: %+v", got)
	}

	reg.tag("v1", m2)
	reg.tag("v2", m2)
	clk.Advance(30 * time.Second)
	sameTargets(t, tagTargets(t, r), map[string]digest.Digest{"v1": m1, "latest": m1})
	if d, err := r.Tag(context.Background(), "v1"); err != nil || d.Digest != m1 {
		t.Errorf("Tag(v1) within TTL = %v, %v", d.Digest, err)
	}
	if c := reg.count("list"); c != 1 {
		t.Errorf("listed %d times within the TTL, want 1", c)
	}

	clk.Advance(31 * time.Second)
	sameTargets(t, tagTargets(t, r), map[string]digest.Digest{"v1": m2, "v2": m2, "latest": m1})
	if d, err := r.Tag(context.Background(), "v1"); err != nil || d.Digest != m2 {
		t.Errorf("Tag(v1) after expiry = %v, %v", d.Digest, err)
	}
	for _, ref := range reg.headedRef {
		if ref == "../evil" {
			t.Error("a malformed tag name was sent to the registry")
		}
	}
}

func TestRepoTagsRegistryDown(t *testing.T) {
	reg := newFakeRegistry()
	m1 := reg.add(MediaTypeOCIManifest, manifestBody(t, "l1"))
	m2 := reg.add(MediaTypeOCIManifest, manifestBody(t, "l2"))
	reg.tag("a", m1)
	reg.tag("b", m1)
	r, clk := newTestRepo(reg, newMemStore())

	// Nothing known yet: the error comes through.
	reg.listDown = true
	if _, err := r.Tags(context.Background()); !errors.Is(err, hfserr.ErrUnavailable) {
		t.Fatalf("Tags with the registry down and nothing known: %v", err)
	}
	reg.listDown = false
	sameTargets(t, tagTargets(t, r), map[string]digest.Digest{"a": m1, "b": m1})

	// The whole listing fails: the last answer stands.
	reg.tag("a", m2)
	reg.listDown = true
	clk.Advance(2 * time.Minute)
	sameTargets(t, tagTargets(t, r), map[string]digest.Digest{"a": m1, "b": m1})

	// The listing works but one HEAD fails: that tag keeps its target,
	// a tag gone from the registry is dropped, a new one appears.
	reg.listDown = false
	reg.headDown["a"] = true
	reg.mu.Lock()
	delete(reg.tags, "b")
	reg.mu.Unlock()
	reg.tag("c", m2)
	clk.Advance(2 * time.Minute)
	sameTargets(t, tagTargets(t, r), map[string]digest.Digest{"a": m1, "c": m2})

	// Every HEAD fails: last known targets stay.
	reg.headDown["c"] = true
	clk.Advance(2 * time.Minute)
	sameTargets(t, tagTargets(t, r), map[string]digest.Digest{"a": m1, "c": m2})

	reg.headDown = map[string]bool{}
	clk.Advance(2 * time.Minute)
	sameTargets(t, tagTargets(t, r), map[string]digest.Digest{"a": m2, "c": m2})
}

func TestRepoTagsAllHeadsFailNothingKnown(t *testing.T) {
	reg := newFakeRegistry()
	reg.tag("a", reg.add(MediaTypeOCIManifest, manifestBody(t, "l1")))
	reg.headDown["a"] = true
	r, _ := newTestRepo(reg, newMemStore())
	if tags, err := r.Tags(context.Background()); !errors.Is(err, hfserr.ErrUnavailable) {
		t.Errorf("Tags = %v, %v; want ErrUnavailable", tags, err)
	}
}

func TestRepoTag(t *testing.T) {
	ctx := context.Background()
	reg := newFakeRegistry()
	m1 := reg.add(MediaTypeOCIManifest, manifestBody(t, "l1"))
	m2 := reg.add(MediaTypeOCIManifest, manifestBody(t, "l2"))
	reg.tag("v1", m1)
	r, clk := newTestRepo(reg, newMemStore())

	for _, name := range []string{"nope", "..", "a/b", "", "sha256:" + m1.Hex(), ".hidden"} {
		if _, err := r.Tag(ctx, name); !errors.Is(err, hfserr.ErrNotFound) {
			t.Errorf("Tag(%q) err = %v, want ErrNotFound", name, err)
		}
	}
	if c := reg.count("head"); c != 1 {
		t.Errorf("%d HEADs; malformed names must not reach the registry", c)
	}

	d, err := r.Tag(ctx, "v1")
	if err != nil || d.Digest != m1 || d.Size != int64(len(manifestBody(t, "l1"))) {
		t.Fatalf("Tag(v1) = %+v, %v", d, err)
	}
	heads := reg.count("head")
	if d, _ := r.Tag(ctx, "v1"); d.Digest != m1 || reg.count("head") != heads {
		t.Error("Tag within the TTL asked the registry again")
	}

	// Down after the TTL: the last known target, then the new one.
	reg.tag("v1", m2)
	reg.headDown["v1"] = true
	clk.Advance(2 * time.Minute)
	if d, err := r.Tag(ctx, "v1"); err != nil || d.Digest != m1 {
		t.Errorf("Tag(v1) with the registry down = %v, %v; want last known", d.Digest, err)
	}
	reg.headDown["v1"] = false
	if d, err := r.Tag(ctx, "v1"); err != nil || d.Digest != m2 {
		t.Errorf("Tag(v1) back up = %v, %v", d.Digest, err)
	}

	// Deleted from the registry: not found, and forgotten.
	reg.mu.Lock()
	delete(reg.tags, "v1")
	reg.mu.Unlock()
	clk.Advance(2 * time.Minute)
	if _, err := r.Tag(ctx, "v1"); !errors.Is(err, hfserr.ErrNotFound) {
		t.Errorf("Tag(deleted) err = %v, want ErrNotFound", err)
	}
	reg.headDown["v1"] = true
	if _, err := r.Tag(ctx, "v1"); !errors.Is(err, hfserr.ErrUnavailable) {
		t.Errorf("Tag(deleted, registry down) err = %v, want ErrUnavailable (nothing known)", err)
	}
}

// With ResolveTagsWithGet, listing tags and browsing every tag's tree
// costs one listing plus one GET per tag, and no HEAD.
func TestRepoTagsResolvedWithGet(t *testing.T) {
	reg := newFakeRegistry()
	m1 := reg.add(MediaTypeOCIManifest, manifestBody(t, "l1"))
	m2 := reg.add(MediaTypeOCIManifest, manifestBody(t, "l2"))
	reg.tag("v1", m1)
	reg.tag("v2", m2)
	store := newMemStore()
	r := NewRepo(reg, store, RepoOptions{TagTTL: time.Minute, ResolveTagsWithGet: true})
	sameTargets(t, tagTargets(t, r), map[string]digest.Digest{"v1": m1, "v2": m2})
	for _, d := range []digest.Digest{m1, m2} {
		if _, err := r.Tree(context.Background(), d); err != nil {
			t.Fatalf("Tree(%s): %v", d, err)
		}
	}
	if h, g, l := reg.count("head"), reg.count("manifest"), reg.count("list"); h != 0 || g != 2 || l != 1 {
		t.Errorf("requests: %d HEAD, %d GET, %d list; want 0, 2, 1", h, g, l)
	}
	if got, ok := r.Lookup(m2); !ok || got.Size != int64(len(manifestBody(t, "l2"))) {
		t.Errorf("Lookup(m2) = %+v, %v", got, ok)
	}
}

// Tags known from an earlier run are served while the registry is down,
// and a fresh answer is handed to OnTags.
func TestRepoKnownTagsAndOnTags(t *testing.T) {
	reg := newFakeRegistry()
	m1 := reg.add(MediaTypeOCIManifest, manifestBody(t, "l1"))
	reg.tag("v1", m1)
	var saved []Tag
	r := NewRepo(reg, newMemStore(), RepoOptions{OnTags: func(tags []Tag) { saved = tags }})
	sameTargets(t, tagTargets(t, r), map[string]digest.Digest{"v1": m1})
	if len(saved) != 1 || saved[0].Name != "v1" || saved[0].Target.Digest != m1 {
		t.Fatalf("OnTags got %+v", saved)
	}

	down := newFakeRegistry()
	down.listDown = true
	down.headDown["v1"] = true
	r2 := NewRepo(down, newMemStore(), RepoOptions{KnownTags: saved})
	sameTargets(t, tagTargets(t, r2), map[string]digest.Digest{"v1": m1})
	if d, err := r2.Tag(context.Background(), "v1"); err != nil || d.Digest != m1 {
		t.Errorf("Tag(v1) from the known answer = %v, %v", d.Digest, err)
	}
	if down.count("list") == 0 {
		t.Error("the known answer was served without asking the registry first")
	}
}
