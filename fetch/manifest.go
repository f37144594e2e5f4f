package fetch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

// manifestAccept lists every manifest media type we can hand on.
var manifestAccept = strings.Join([]string{
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v1+prettyjws",
	"application/vnd.oci.artifact.manifest.v1+json",
}, ", ")

// Manifest fetches the manifest named by ref, a tag or "sha256:<hex>".
// When ref is a digest the body must hash to it (else hfserr.ErrIntegrity).
// Bodies over MaxManifestSize wrap hfserr.ErrInvalid.
func (c *Client) Manifest(ctx context.Context, ref string) (Doc, error) {
	what := "manifest " + clip(ref)
	want, byDigest, err := parseRef(ref)
	if err != nil {
		return Doc{}, fmt.Errorf("%s: %w", what, err)
	}
	u := c.url("/manifests/" + ref)
	hdr := http.Header{"Accept": {manifestAccept}}
	var doc Doc
	err = c.retry(ctx, what, func(ctx context.Context, hc *http.Client) error {
		resp, err := c.do(ctx, hc, http.MethodGet, u, hdr, false)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return c.statusError(resp)
		}
		body, err := readDocument(resp)
		if err != nil {
			return err
		}
		got := digest.Of(body)
		if byDigest && got != want {
			return fmt.Errorf("body hashes to %s, expected %s: %w", got, want, hfserr.ErrIntegrity)
		}
		doc = Doc{Digest: got, MediaType: mediaType(resp.Header.Get("Content-Type"), body), Body: body}
		return nil
	})
	if err != nil {
		return Doc{}, err
	}
	return doc, nil
}

// StatManifest describes the manifest named by ref from a HEAD request
// (Docker-Content-Digest, Content-Length, Content-Type). If the server leaves
// any of them out it falls back to Manifest and hashes the body.
func (c *Client) StatManifest(ctx context.Context, ref string) (Descriptor, error) {
	what := "stat manifest " + clip(ref)
	want, byDigest, err := parseRef(ref)
	if err != nil {
		return Descriptor{}, fmt.Errorf("%s: %w", what, err)
	}
	u := c.url("/manifests/" + ref)
	hdr := http.Header{"Accept": {manifestAccept}}
	var desc Descriptor
	complete := false
	err = c.retry(ctx, what, func(ctx context.Context, hc *http.Client) error {
		resp, err := c.do(ctx, hc, http.MethodHead, u, hdr, false)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return c.statusError(resp)
		}
		if resp.ContentLength > MaxManifestSize {
			return tooBig(resp.ContentLength)
		}
		desc = Descriptor{Size: resp.ContentLength, MediaType: mediaType(resp.Header.Get("Content-Type"), nil)}
		haveDigest := false
		if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
			if d, err := digest.Parse(h); err == nil {
				desc.Digest, haveDigest = d, true
			}
		}
		if byDigest {
			if haveDigest && desc.Digest != want {
				return fmt.Errorf("registry reports digest %s, expected %s: %w", desc.Digest, want, hfserr.ErrIntegrity)
			}
			desc.Digest, haveDigest = want, true
		}
		complete = haveDigest && desc.Size >= 0 && desc.MediaType != "" && !genericType(desc.MediaType)
		return nil
	})
	if err != nil {
		return Descriptor{}, err
	}
	if complete {
		return desc, nil
	}
	doc, err := c.Manifest(ctx, ref)
	if err != nil {
		return Descriptor{}, err
	}
	return Descriptor{Digest: doc.Digest, Size: int64(len(doc.Body)), MediaType: doc.MediaType}, nil
}

func tooBig(n int64) error {
	if n >= 0 {
		return fmt.Errorf("manifest is %d bytes, over the %d-byte limit: %w", n, MaxManifestSize, hfserr.ErrInvalid)
	}
	return fmt.Errorf("manifest is over the %d-byte limit: %w", MaxManifestSize, hfserr.ErrInvalid)
}

// parseRef accepts a tag or a "sha256:<hex>" digest.
func parseRef(ref string) (d digest.Digest, isDigest bool, err error) {
	if strings.Contains(ref, ":") {
		d, err := digest.Parse(ref)
		return d, err == nil, err
	}
	if !validTag(ref) {
		return d, false, fmt.Errorf("reference %q is neither a tag nor sha256:<hex>: %w", clip(ref), hfserr.ErrInvalid)
	}
	return d, false, nil
}

// validTag implements the distribution spec's [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func validTag(s string) bool {
	if len(s) == 0 || len(s) > 128 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
			ch == '_' || ch == '.' || ch == '-') {
			return false
		}
	}
	return true
}

// mediaType is the Content-Type without parameters, or the body's own
// mediaType field when the header is missing or generic.
func mediaType(header string, body []byte) string {
	mt, _, err := mime.ParseMediaType(header)
	if err != nil {
		mt, _, _ = strings.Cut(header, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	if (mt == "" || genericType(mt)) && len(body) > 0 {
		var v struct {
			MediaType string `json:"mediaType"`
		}
		if json.Unmarshal(body, &v) == nil && v.MediaType != "" {
			return v.MediaType
		}
	}
	return mt
}

func genericType(mt string) bool {
	switch mt {
	case "application/octet-stream", "binary/octet-stream", "application/json", "text/plain":
		return true
	}
	return false
}

// readDocument reads a manifest-sized response body: at most
// MaxManifestSize bytes (more wraps hfserr.ErrInvalid); a body cut short
// is transient.
func readDocument(resp *http.Response) ([]byte, error) {
	if resp.ContentLength > MaxManifestSize {
		return nil, tooBig(resp.ContentLength)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return nil, transient(fmt.Errorf("read body: %w", err))
	}
	if len(body) > MaxManifestSize {
		return nil, tooBig(-1)
	}
	return body, nil
}
