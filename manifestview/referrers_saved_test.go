package manifestview

import (
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

// savedReferrers is what OnReferrers wrote and KnownReferrers reads: the
// cache directory's file per subject, in memory.
type savedReferrers struct {
	mu     sync.Mutex
	descs  map[digest.Digest][]Desc
	writes int
}

func (s *savedReferrers) save(d digest.Digest, descs []Desc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if len(descs) == 0 {
		delete(s.descs, d)
		return
	}
	s.descs[d] = descs
}

func (s *savedReferrers) load(d digest.Digest) ([]Desc, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	descs, ok := s.descs[d]
	return descs, ok
}

// TestRepoReferrersSaved: a fresh answer is handed to OnReferrers once
// per change, and a later Repo (another run) whose registry is down
// serves it through KnownReferrers, with the referrers known by digest.
func TestRepoReferrersSaved(t *testing.T) {
	ctx := context.Background()
	reg := &referrerRegistry{fakeRegistry: newFakeRegistry(), refs: map[digest.Digest][]Desc{}}
	subject := reg.add(MediaTypeOCIManifest, manifestBody(t, "l1"))
	other := reg.add(MediaTypeOCIManifest, manifestBody(t, "l2"))
	sig := Desc{Digest: blob("m1"), Size: 10, MediaType: MediaTypeOCIManifest, ArtifactType: "application/vnd.example.sig",
		Annotations: map[string]string{"k": "v"}}
	sbom := Desc{Digest: blob("m2"), Size: 11, MediaType: MediaTypeOCIManifest, ArtifactType: "application/spdx+json"}
	reg.set(subject, sig, sbom)
	saved := &savedReferrers{descs: map[digest.Digest][]Desc{}}
	clk := fakeclock.New(time.Unix(1_700_000_000, 0))
	opts := RepoOptions{TagTTL: time.Minute, Now: clk.Now, KnownReferrers: saved.load, OnReferrers: saved.save}

	first := NewRepo(reg, newMemStore(), opts)
	want, err := first.Referrers(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Referrers(ctx, other); err != nil {
		t.Fatal(err)
	}
	if saved.writes != 2 || len(saved.descs[subject]) != 2 {
		t.Fatalf("after two first answers: %d writes, saved %+v", saved.writes, saved.descs)
	}
	if _, ok := saved.descs[other]; ok {
		t.Error("an empty answer is saved as a list, want none kept")
	}
	clk.Advance(2 * time.Minute)
	if _, err := first.Referrers(ctx, subject); err != nil || saved.writes != 2 {
		t.Errorf("the same answer after the TTL: %v, %d writes; want no new write", err, saved.writes)
	}

	for _, tc := range []struct {
		name  string
		d     digest.Digest
		want  []Referrer
		wantE error
	}{
		{"saved answer", subject, want, nil},
		{"no referrers saved", other, nil, hfserr.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg.setDown(true)
			defer reg.setDown(false)
			next := NewRepo(reg, newMemStore(), opts)
			got, err := next.Referrers(ctx, tc.d)
			if !errors.Is(err, tc.wantE) || fmt.Sprint(names(got)) != fmt.Sprint(names(tc.want)) {
				t.Fatalf("registry down, next run: %v, %v; want %v, %v", names(got), err, names(tc.want), tc.wantE)
			}
			for _, ref := range tc.want {
				if k, ok := next.Lookup(ref.Desc.Digest); !ok || k.Size != ref.Desc.Size {
					t.Errorf("saved referrer %s not known: %+v, %v", ref.Name, k, ok)
				}
			}
			if len(got) > 0 && got[0].Desc.ArtifactType != sbom.ArtifactType {
				t.Errorf("first saved referrer %+v", got[0].Desc)
			}
		})
	}

	// The registry answers again: its answer wins over the saved one and
	// replaces it.
	reg.set(subject, sig)
	next := NewRepo(reg, newMemStore(), opts)
	if got, err := next.Referrers(ctx, subject); err != nil || len(got) != 1 || len(saved.descs[subject]) != 1 {
		t.Errorf("registry back: %v, %v, saved %d", names(got), err, len(saved.descs[subject]))
	}
}
