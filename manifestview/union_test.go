package manifestview

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// mapStater knows the sizes in have; everything else is err (or not found).
type mapStater struct {
	have map[digest.Digest]int64
	err  error
}

func (m mapStater) Stat(ctx context.Context, d digest.Digest) (Desc, error) {
	if n, ok := m.have[d]; ok {
		return Desc{Digest: d, Size: n}, nil
	}
	if m.err != nil {
		return Desc{}, m.err
	}
	return Desc{}, fmt.Errorf("%s: %w", d, hfserr.ErrNotFound)
}

func TestUnionStat(t *testing.T) {
	a, b := blob("l1"), blob("l2")
	down := fmt.Errorf("registry down: %w", hfserr.ErrUnavailable)
	tests := []struct {
		name    string
		members []mapStater
		ask     digest.Digest
		size    int64
		wantErr error
	}{
		{"first", []mapStater{{have: map[digest.Digest]int64{a: 1}}, {}}, a, 1, nil},
		{"second only", []mapStater{{}, {have: map[digest.Digest]int64{b: 2}}}, b, 2, nil},
		{"down one skipped", []mapStater{{err: down}, {have: map[digest.Digest]int64{a: 3}}}, a, 3, nil},
		{"nowhere", []mapStater{{}, {}}, a, 0, hfserr.ErrNotFound},
		{"nowhere, one down", []mapStater{{}, {err: down}}, a, 0, hfserr.ErrUnavailable},
		{"no members", nil, a, 0, hfserr.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := NewUnion()
			for i, s := range tt.members {
				r, _ := newTestRepo(newFakeRegistry(), newMemStore())
				u.Add(Member{Name: fmt.Sprint("m", i), Repo: r, Stater: s})
			}
			desc, err := u.Stat(context.Background(), tt.ask)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Stat = %+v, %v; want %v", desc, err, tt.wantErr)
				}
				if tt.wantErr == hfserr.ErrUnavailable && errors.Is(err, hfserr.ErrNotFound) {
					t.Errorf("a member being down must not read as not found: %v", err)
				}
				return
			}
			if err != nil || desc.Size != tt.size {
				t.Fatalf("Stat = %+v, %v; want size %d", desc, err, tt.size)
			}
		})
	}
}

func TestUnionManifestAndKnown(t *testing.T) {
	ctx := context.Background()
	regA, regB := newFakeRegistry(), newFakeRegistry()
	onlyB := regB.add(MediaTypeOCIManifest, manifestBody(t, "l2"))
	ra, _ := newTestRepo(regA, newMemStore())
	rb, _ := newTestRepo(regB, newMemStore())
	u := NewUnion(Member{Name: "a", Repo: ra, Stater: mapStater{}},
		Member{Name: "b", Repo: rb, Stater: mapStater{have: map[digest.Digest]int64{onlyB: 9}}})
	if _, err := u.Stat(ctx, onlyB); err != nil {
		t.Fatal(err)
	}
	doc, err := u.Manifest(ctx, onlyB)
	if err != nil || doc.Digest != onlyB {
		t.Fatalf("Manifest = %v, %v", doc.Digest, err)
	}
	if n := regA.count("manifest"); n != 0 {
		t.Errorf("the member that does not have it was asked %d times, want 0 (where it was found is remembered)", n)
	}
	if _, err := rb.Tree(ctx, onlyB); err != nil {
		t.Fatal(err)
	}
	known := map[digest.Digest]bool{}
	for _, d := range u.Known() {
		known[d.Digest] = true
	}
	if !known[onlyB] || !known[blob("l2")] {
		t.Errorf("Known = %v, want the manifest and its layer", known)
	}
	if _, err := u.Manifest(ctx, blob("nowhere")); !errors.Is(err, hfserr.ErrNotFound) {
		t.Errorf("Manifest of an unknown digest: %v, want ErrNotFound", err)
	}
}
