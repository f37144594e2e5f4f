package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/hashfs/hashfs/internal/hfserr"
)

// sourceKind is what a SOURCE argument names.
type sourceKind int

const (
	repoSource    sourceKind = iota // one repository: ghcr.io/ns/repo
	wholeRegistry                   // a whole registry: ghcr.io, 127.0.0.1:5000
	layoutSource                    // a local OCI image layout: oci:/path
)

// sourceArg is a parsed SOURCE argument.
type sourceArg struct {
	kind sourceKind
	ref  string // repository name, registry host, or layout directory (absolute)
	path string // where a many-source mount shows it: "<registry>/<repo>", "<registry>", "oci/<path>"
}

// parseSource classifies s. A name without a slash is a registry when it
// looks like a host (has a dot or a port, or is localhost), as Docker
// decides; otherwise it is a repository (Docker Hub's "busybox").
func parseSource(s string, plainHTTP bool) (sourceArg, error) {
	var nopts []name.Option
	if plainHTTP {
		nopts = append(nopts, name.Insecure)
	}
	switch {
	case strings.HasPrefix(s, "oci:"):
		dir := strings.TrimPrefix(s, "oci:")
		if dir == "" {
			return sourceArg{}, fmt.Errorf("source %q: oci: needs a directory: %w", s, hfserr.ErrInvalid)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return sourceArg{}, fmt.Errorf("source %q: %w", s, err)
		}
		return sourceArg{kind: layoutSource, ref: abs, path: "oci" + layoutPath(abs)}, nil
	case !strings.Contains(s, "/") && (strings.ContainsAny(s, ".:") || s == "localhost"):
		reg, err := name.NewRegistry(strings.ToLower(s), nopts...) // host names are case-insensitive
		if err != nil {
			return sourceArg{}, fmt.Errorf("registry %q: %v: %w", clip(s), err, hfserr.ErrInvalid)
		}
		return sourceArg{kind: wholeRegistry, ref: reg.RegistryStr(), path: reg.RegistryStr()}, nil
	}
	r, err := name.NewRepository(s, nopts...)
	if err != nil {
		return sourceArg{}, fmt.Errorf("repository %q: %v: %w", clip(s), err, hfserr.ErrInvalid)
	}
	return sourceArg{kind: repoSource, ref: r.Name(), path: strings.ToLower(r.RegistryStr()) + "/" + r.RepositoryStr()}, nil
}

// layoutPath turns an absolute directory into namespace path components
// ("/srv/Data sets" -> "/srv/data_sets"): lower case, and any character
// a component cannot hold becomes "_".
func layoutPath(abs string) string {
	var b strings.Builder
	for _, part := range strings.Split(strings.Trim(abs, "/"), "/") {
		if part == "" {
			continue
		}
		b.WriteByte('/')
		for i, c := range strings.ToLower(part) {
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' && i > 0
			if !ok {
				c = '_'
			}
			b.WriteRune(c)
		}
	}
	return b.String()
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
