package manifestview

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/fakeclock"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// fakeRegistry serves documents by digest and tags, and counts calls.
type fakeRegistry struct {
	mu        sync.Mutex
	docs      map[digest.Digest]Doc
	tags      map[string]digest.Digest
	listDown  bool            // Tags fails
	headDown  map[string]bool // StatManifest of these refs fails
	tamper    bool            // Manifest returns altered bytes
	gate      chan struct{}   // when set, Manifest waits for it to close
	entered   chan struct{}   // when set, Manifest signals here first
	calls     map[string]int  // "manifest", "head", "list"
	headedRef []string
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{docs: map[digest.Digest]Doc{}, tags: map[string]digest.Digest{}, headDown: map[string]bool{}, calls: map[string]int{}}
}

func (f *fakeRegistry) add(mediaType string, body []byte) digest.Digest {
	d := digest.Of(body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docs[d] = Doc{Digest: d, MediaType: mediaType, Body: body}
	return d
}

func (f *fakeRegistry) tag(name string, d digest.Digest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tags[name] = d
}

func (f *fakeRegistry) count(what string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[what]
}

func (f *fakeRegistry) Manifest(ctx context.Context, ref string) (Doc, error) {
	f.mu.Lock()
	f.calls["manifest"]++
	gate, entered, tamper := f.gate, f.entered, f.tamper
	d, err := digest.Parse(ref)
	if td, isTag := f.tags[ref]; isTag {
		d, err = td, nil
	}
	doc, ok := f.docs[d]
	f.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	if err != nil || !ok {
		return Doc{}, fmt.Errorf("manifest %s: %w", ref, hfserr.ErrNotFound)
	}
	if tamper {
		doc.Body = append(bytes.Clone(doc.Body), ' ')
	}
	return doc, nil
}

func (f *fakeRegistry) StatManifest(ctx context.Context, ref string) (Desc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["head"]++
	f.headedRef = append(f.headedRef, ref)
	if f.headDown[ref] {
		return Desc{}, fmt.Errorf("HEAD %s: %w", ref, hfserr.ErrUnavailable)
	}
	d, ok := f.tags[ref]
	if !ok {
		return Desc{}, fmt.Errorf("HEAD %s: %w", ref, hfserr.ErrNotFound)
	}
	doc := f.docs[d]
	return Desc{Digest: d, Size: int64(len(doc.Body)), MediaType: doc.MediaType}, nil
}

func (f *fakeRegistry) Tags(ctx context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["list"]++
	if f.listDown {
		return nil, fmt.Errorf("list: %w", hfserr.ErrUnavailable)
	}
	var out []string
	for n := range f.tags {
		out = append(out, n)
	}
	return out, nil
}

// memStore is an in-memory DocStore.
type memStore struct {
	mu   sync.Mutex
	docs map[digest.Digest]Doc
	puts int
}

func newMemStore() *memStore { return &memStore{docs: map[digest.Digest]Doc{}} }

func (m *memStore) PutDoc(d digest.Digest, mediaType string, body []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.puts++
	m.docs[d] = Doc{Digest: d, MediaType: mediaType, Body: bytes.Clone(body)}
	return nil
}

func (m *memStore) GetDoc(d digest.Digest) (string, []byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	doc, ok := m.docs[d]
	return doc.MediaType, doc.Body, ok
}

func newTestRepo(reg Registry, store DocStore) (*Repo, *fakeclock.Clock) {
	c := fakeclock.New(time.Unix(1_700_000_000, 0))
	return NewRepo(reg, store, RepoOptions{TagTTL: time.Minute, Now: c.Now}), c
}

func manifestBody(t testing.TB, layer string) []byte {
	return mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": MediaTypeOCIManifest,
		"config": jd(MediaTypeEmpty, "{}", 2, nil),
		"layers": []any{jd("application/vnd.oci.image.layer.v1.tar", layer, 2, title(layer+".txt"))},
	})
}

func TestRepoManifest(t *testing.T) {
	ctx := context.Background()
	reg := newFakeRegistry()
	store := newMemStore()
	d := reg.add(MediaTypeOCIManifest, manifestBody(t, "l1"))
	r, _ := newTestRepo(reg, store)

	doc, err := r.Manifest(ctx, d)
	if err != nil || doc.Digest != d || doc.MediaType != MediaTypeOCIManifest {
		t.Fatalf("Manifest = %+v, %v", doc, err)
	}
	if store.puts != 1 {
		t.Errorf("document stored %d times, want 1", store.puts)
	}
	if _, err := r.Manifest(ctx, d); err != nil || reg.count("manifest") != 1 {
		t.Errorf("second Manifest: err %v, registry calls %d; want served from the DocStore", err, reg.count("manifest"))
	}
	if got, ok := r.Lookup(d); !ok || got.Size != int64(len(doc.Body)) || got.MediaType != MediaTypeOCIManifest {
		t.Errorf("Lookup(manifest) = %+v, %v", got, ok)
	}

	// A DocStore entry that does not hash to its digest is fetched again.
	store.docs[d] = Doc{MediaType: MediaTypeOCIManifest, Body: []byte("{}")}
	if doc, err := r.Manifest(ctx, d); err != nil || digest.Of(doc.Body) != d || reg.count("manifest") != 2 {
		t.Errorf("Manifest over a corrupt store = %v, calls %d", err, reg.count("manifest"))
	}

	// Bytes that do not match the digest are refused and not stored.
	d2 := reg.add(MediaTypeOCIManifest, manifestBody(t, "l2"))
	reg.tamper = true
	puts := store.puts
	if _, err := r.Manifest(ctx, d2); !errors.Is(err, hfserr.ErrIntegrity) {
		t.Errorf("tampered Manifest err = %v, want ErrIntegrity", err)
	}
	if _, _, ok := store.GetDoc(d2); ok || store.puts != puts {
		t.Error("tampered document was stored")
	}
	if _, err := r.Manifest(ctx, blob("missing")); !errors.Is(err, hfserr.ErrNotFound) {
		t.Errorf("missing Manifest err = %v, want ErrNotFound", err)
	}
}

func TestRepoManifestSingleflight(t *testing.T) {
	reg := newFakeRegistry()
	d := reg.add(MediaTypeOCIManifest, manifestBody(t, "l1"))
	reg.gate = make(chan struct{})
	reg.entered = make(chan struct{}, 10)
	r, _ := newTestRepo(reg, newMemStore())

	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = r.Manifest(context.Background(), d) })
	}
	<-reg.entered // one fetch is in flight

	// A caller that gives up returns at once; the shared fetch goes on.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, err := r.Manifest(ctx, d); done <- err }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller err = %v", err)
	}

	// Give the other callers time to reach the registry if they were
	// not sharing the fetch; any that start late are served from the
	// store, so the count below stays 1 when sharing works.
	time.Sleep(50 * time.Millisecond)
	close(reg.gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if c := reg.count("manifest"); c != 1 {
		t.Errorf("registry fetched %d times, want 1", c)
	}
}

func TestRepoTreeKnown(t *testing.T) {
	ctx := context.Background()
	reg := newFakeRegistry()
	store := newMemStore()
	m1Body := manifestBody(t, "l1")
	m1 := reg.add(MediaTypeOCIManifest, m1Body)
	idxBody := mustJSON(t, map[string]any{
		"mediaType": MediaTypeOCIIndex,
		"manifests": []any{
			withPlatform(map[string]any{"mediaType": MediaTypeOCIManifest, "digest": m1.String(), "size": 999}, "linux", "amd64", ""),
		},
	})
	idx := reg.add("", idxBody) // no Content-Type: the body's mediaType counts
	r, _ := newTestRepo(reg, store)

	tree, err := r.Tree(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	if l := tree.Child("linux-amd64"); l == nil || l.Target != "../"+m1.String() {
		t.Fatalf("index tree = %v", listing(tree))
	}
	if got, _ := r.Lookup(idx); got.MediaType != MediaTypeOCIIndex || got.Size != int64(len(idxBody)) {
		t.Errorf("Lookup(index) = %+v", got)
	}
	if got, _ := r.Lookup(m1); got.Size != 999 {
		t.Errorf("Lookup(child) before fetching it = %+v, want the index's claim", got)
	}

	tree, err = r.Tree(ctx, m1)
	if err != nil {
		t.Fatal(err)
	}
	if f := tree.Child("l1.txt"); f == nil || f.Desc.Digest != blob("l1") {
		t.Fatalf("manifest tree = %v", listing(tree))
	}
	// The measured size replaces the index's wrong claim.
	if got, _ := r.Lookup(m1); got.Size != int64(len(m1Body)) || got.MediaType != MediaTypeOCIManifest {
		t.Errorf("Lookup(child) after fetching = %+v", got)
	}
	if got, ok := r.Lookup(blob("l1")); !ok || got.Size != 2 || got.Annotations != nil {
		t.Errorf("Lookup(layer) = %+v, %v", got, ok)
	}
	if _, ok := r.Lookup(blob("nothing")); ok {
		t.Error("Lookup of an unseen digest succeeded")
	}

	want := []digest.Digest{idx, m1, blob("l1"), blob("{}")}
	known := r.Known()
	if len(known) != len(want) {
		t.Fatalf("Known = %+v", known)
	}
	for i := 1; i < len(known); i++ {
		if bytes.Compare(known[i-1].Digest[:], known[i].Digest[:]) >= 0 {
			t.Fatalf("Known not sorted or not unique: %v", known)
		}
	}
	for _, d := range want {
		if _, ok := r.Lookup(d); !ok {
			t.Errorf("Known lacks %s", d)
		}
	}

	// Trees are cached: a second Tree neither fetches nor reads the store.
	store.mu.Lock()
	clear(store.docs)
	store.mu.Unlock()
	reg.mu.Lock()
	clear(reg.docs)
	reg.mu.Unlock()
	if again, err := r.Tree(ctx, m1); err != nil || again != tree {
		t.Errorf("cached Tree = %p, %v; want %p", again, err, tree)
	}

	bad := reg.add(MediaTypeOCIManifest, []byte(`{"layers": 5}`))
	if _, err := r.Tree(ctx, bad); !errors.Is(err, hfserr.ErrInvalid) {
		t.Errorf("Tree(malformed) err = %v, want ErrInvalid", err)
	}
}
