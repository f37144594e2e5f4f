package main

import (
	"errors"
	"testing"

	"github.com/hashfs/hashfs/internal/hfserr"
)

func TestParseSource(t *testing.T) {
	tests := []struct {
		in   string
		want sourceArg
		err  error
	}{
		{"ghcr.io/ns/repo", sourceArg{kind: repoSource, ref: "ghcr.io/ns/repo", path: "ghcr.io/ns/repo"}, nil},
		{"127.0.0.1:5000/lab/raw", sourceArg{kind: repoSource, ref: "127.0.0.1:5000/lab/raw", path: "127.0.0.1:5000/lab/raw"}, nil},
		{"busybox", sourceArg{kind: repoSource, ref: "index.docker.io/library/busybox", path: "index.docker.io/library/busybox"}, nil},
		{"ghcr.io", sourceArg{kind: wholeRegistry, ref: "ghcr.io", path: "ghcr.io"}, nil},
		{"127.0.0.1:5000", sourceArg{kind: wholeRegistry, ref: "127.0.0.1:5000", path: "127.0.0.1:5000"}, nil},
		{"localhost", sourceArg{kind: wholeRegistry, ref: "localhost", path: "localhost"}, nil},
		{"oci:/srv/Data Sets/refs", sourceArg{kind: layoutSource, ref: "/srv/Data Sets/refs", path: "oci/srv/data_sets/refs"}, nil},
		{"oci:/srv/.hidden", sourceArg{kind: layoutSource, ref: "/srv/.hidden", path: "oci/srv/_hidden"}, nil},
		{"oci:", sourceArg{}, hfserr.ErrInvalid},
		{"Bad//Repo", sourceArg{}, hfserr.ErrInvalid},
		{"UPPER.io", sourceArg{kind: wholeRegistry, ref: "upper.io", path: "upper.io"}, nil},
		{"GHCR.io/ns/repo", sourceArg{kind: repoSource, ref: "GHCR.io/ns/repo", path: "ghcr.io/ns/repo"}, nil},
		{"bad_host:x", sourceArg{}, hfserr.ErrInvalid},
	}
	for _, tt := range tests {
		got, err := parseSource(tt.in, false)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("parseSource(%q) = %+v, %v; want %v", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseSource(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}
