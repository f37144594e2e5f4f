package fetch

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// onManifestGET rewrites the body of manifest GET responses.
func onManifestGET(edit func([]byte) []byte) hook {
	return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method != http.MethodGet || kind(r) != "manifest" {
			next.ServeHTTP(w, r)
			return
		}
		rec := record(next, r)
		replay(w, rec, edit(bytes.Clone(rec.Body.Bytes())))
	}
}

func TestManifest(t *testing.T) {
	f := newFixture(t)
	flip := onManifestGET(func(b []byte) []byte { b[len(b)/2] ^= 1; return b })
	huge := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if kind(r) != "manifest" {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header()["Content-Length"] = nil // chunked: the limit must hold without a length
		chunk := bytes.Repeat([]byte(" "), 64<<10)
		for written := 0; written <= MaxManifestSize; written += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
	noType := func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if kind(r) != "manifest" {
			next.ServeHTTP(w, r)
			return
		}
		rec := record(next, r)
		rec.Header()["Content-Type"] = nil // present but nil: net/http neither sends nor sniffs it
		replay(w, rec, rec.Body.Bytes())
	}
	for _, tc := range []struct {
		name     string
		hook     hook
		ref      string
		want     error
		wantType string
		requests int
	}{
		{name: "by tag", ref: "latest", requests: 1},
		{name: "by digest", ref: f.manDigest.String(), requests: 1},
		{name: "flipped byte by digest", hook: flip, ref: f.manDigest.String(), want: hfserr.ErrIntegrity, requests: 1},
		{name: "oversized with length", hook: onManifestGET(func([]byte) []byte {
			return make([]byte, MaxManifestSize+1)
		}), ref: "latest", want: hfserr.ErrInvalid, requests: 1},
		{name: "oversized chunked", hook: huge, ref: "latest", want: hfserr.ErrInvalid, requests: 1},
		{name: "media type from body when header missing", hook: noType, ref: "latest", requests: 1},
		{name: "503 then success", hook: failFirst(2, "manifest", status(503)), ref: "latest", requests: 3},
		{name: "unknown tag", ref: "nope", want: hfserr.ErrNotFound, requests: 1},
		{name: "unknown digest", ref: digest.Of(nil).String(), want: hfserr.ErrNotFound, requests: 1},
		{name: "path in ref", ref: "../x", want: hfserr.ErrInvalid},
		{name: "bad digest", ref: "sha256:zz", want: hfserr.ErrInvalid},
		{name: "other algorithm", ref: "sha512:" + strings.Repeat("0", 128), want: hfserr.ErrInvalid},
		{name: "empty ref", ref: "", want: hfserr.ErrInvalid},
		{name: "long tag", ref: strings.Repeat("a", 129), want: hfserr.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.setHook(tc.hook)
			f.resetCounts()
			doc, err := f.client(t).Manifest(context.Background(), tc.ref)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if doc.Digest != f.manDigest || !bytes.Equal(doc.Body, f.manBody) || doc.MediaType != f.manType {
					t.Fatalf("got %s %q (%d bytes), want %s %q", doc.Digest, doc.MediaType, len(doc.Body), f.manDigest, f.manType)
				}
			}
			if r := f.count("GET manifest"); r != tc.requests {
				t.Errorf("manifest GETs = %d, want %d", r, tc.requests)
			}
		})
	}
}

func TestManifestErrorsNameTheProblem(t *testing.T) {
	f := newFixture(t)
	f.setHook(onManifestGET(func(b []byte) []byte { b[0] ^= 1; return b }))
	_, err := f.client(t).Manifest(context.Background(), f.manDigest.String())
	if err == nil || !strings.Contains(err.Error(), f.manDigest.String()) {
		t.Fatalf("integrity error %v does not name the expected digest", err)
	}
	f.setHook(onManifestGET(func([]byte) []byte { return make([]byte, MaxManifestSize+1) }))
	_, err = f.client(t).Manifest(context.Background(), "latest")
	if err == nil || !strings.Contains(err.Error(), "4194304") {
		t.Fatalf("size error %v does not name the limit", err)
	}
}

func TestStatManifest(t *testing.T) {
	f := newFixture(t)
	editHeaders := func(edit func(http.Header)) hook {
		return func(w http.ResponseWriter, r *http.Request, next http.Handler) {
			if kind(r) != "manifest" {
				next.ServeHTTP(w, r)
				return
			}
			rec := record(next, r)
			edit(rec.Header())
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		}
	}
	// A nil entry is neither sent nor filled in by net/http.
	stripHeader := func(key string) hook { return editHeaders(func(h http.Header) { h[key] = nil }) }
	for _, tc := range []struct {
		name        string
		hook        hook
		ref         string
		want        error
		heads, gets int
	}{
		{name: "by tag", ref: "latest", heads: 1},
		{name: "by digest", ref: f.manDigest.String(), heads: 1},
		{name: "no digest header, tag: falls back to GET", hook: stripHeader("Docker-Content-Digest"), ref: "latest", heads: 1, gets: 1},
		{name: "no digest header, digest ref: none needed", hook: stripHeader("Docker-Content-Digest"), ref: f.manDigest.String(), heads: 1},
		{name: "no content type: falls back to GET", hook: stripHeader("Content-Type"), ref: "latest", heads: 1, gets: 1},
		{name: "wrong digest header", hook: editHeaders(func(h http.Header) {
			h.Set("Docker-Content-Digest", digest.Of(nil).String())
		}), ref: f.manDigest.String(), want: hfserr.ErrIntegrity, heads: 1},
		{name: "unknown", ref: "nope", want: hfserr.ErrNotFound, heads: 1},
		{name: "503 then success", hook: failFirst(1, "manifest", status(503)), ref: "latest", heads: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.setHook(tc.hook)
			f.resetCounts()
			desc, err := f.client(t).StatManifest(context.Background(), tc.ref)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
			} else {
				want := Descriptor{Digest: f.manDigest, Size: int64(len(f.manBody)), MediaType: f.manType}
				if err != nil || desc != want {
					t.Fatalf("StatManifest = %+v, %v; want %+v", desc, err, want)
				}
			}
			if h, g := f.count("HEAD manifest"), f.count("GET manifest"); h != tc.heads || g != tc.gets {
				t.Errorf("HEADs, GETs = %d, %d; want %d, %d", h, g, tc.heads, tc.gets)
			}
		})
	}
}

func TestMediaType(t *testing.T) {
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}`)
	for _, tc := range []struct {
		header string
		body   []byte
		want   string
	}{
		{"application/vnd.oci.image.manifest.v1+json", body, "application/vnd.oci.image.manifest.v1+json"},
		{"application/vnd.oci.image.manifest.v1+json; charset=utf-8", nil, "application/vnd.oci.image.manifest.v1+json"},
		{"", body, "application/vnd.oci.image.index.v1+json"},
		{"text/plain; charset=utf-8", body, "application/vnd.oci.image.index.v1+json"},
		{"application/octet-stream", []byte("not json"), "application/octet-stream"},
		{"", nil, ""},
		{"Application/VND.Docker.Distribution.Manifest.V2+json ;x", nil, "application/vnd.docker.distribution.manifest.v2+json"},
	} {
		if got := mediaType(tc.header, tc.body); got != tc.want {
			t.Errorf("mediaType(%q) = %q, want %q", tc.header, got, tc.want)
		}
	}
}
