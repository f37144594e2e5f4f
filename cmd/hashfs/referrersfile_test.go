package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/manifestview"
)

func TestReferrersFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	f := newReferrersFiles(dir, "registry.example/lab/data", log)
	other := newReferrersFiles(dir, "registry.example/lab/other", log)
	subject, absent := digest.Of([]byte("subject")), digest.Of([]byte("absent"))
	descs := []manifestview.Desc{
		{Digest: digest.Of([]byte("sig")), Size: 12, MediaType: "application/vnd.oci.image.manifest.v1+json",
			ArtifactType: "application/vnd.example.sig", Annotations: map[string]string{"k": "v"}},
		{Digest: digest.Of([]byte("untyped")), Size: 3, MediaType: "application/vnd.oci.image.manifest.v1+json"},
	}
	f.save(subject, descs)
	if err := os.WriteFile(f.path(absent), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		load    func(digest.Digest) ([]manifestview.Desc, bool)
		subject digest.Digest
		want    []manifestview.Desc
		ok      bool
	}{
		{"saved", f.load, subject, descs, true},
		{"other repository", other.load, subject, nil, false},
		{"unreadable file", f.load, absent, nil, false},
		{"offline: saved", f.loadOffline, subject, descs, true},
		{"offline: none saved is none", other.loadOffline, subject, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.load(tc.subject)
			if ok != tc.ok || len(got) != len(tc.want) || (len(got) > 0 && !reflect.DeepEqual(got, tc.want)) {
				t.Errorf("load = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}

	f.save(subject, nil)
	if _, ok := f.load(subject); ok {
		t.Error("an empty answer left the saved one in place")
	}
	if fi, err := os.Stat(f.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("referrers directory: %v, %v; want mode 0700", fi, err)
	}
}
