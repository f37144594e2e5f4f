package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

var _ BlobSource = (*Layout)(nil)

// RefNameAnnotation names a manifest in an image layout's index.json; a
// Layout serves it as a tag.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// maxLayoutFile caps the oci-layout file.
const maxLayoutFile = 64 << 10

// Layout serves a local OCI image layout directory (oci-layout, index.json,
// blobs/sha256/<hex>) with the methods of a Client. Only sha256 blobs are
// seen; paths are built from validated hex only. It is safe for concurrent
// use and picks up changes to index.json.
type Layout struct {
	root string // absolute
	name string // "oci:" + root

	mu    sync.Mutex
	stamp os.FileInfo  // index.json when last read
	index []indexEntry // its sha256 manifests, in file order
}

// indexEntry is one manifest listed in index.json.
type indexEntry struct {
	desc Descriptor
	ref  string // RefNameAnnotation, or ""
}

// OpenLayout opens the image layout at path. A path that does not exist or
// has no oci-layout file wraps hfserr.ErrNotFound; a malformed or
// unsupported layout ErrInvalid.
func OpenLayout(path string) (*Layout, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("image layout %q: %w: %w", clip(path), err, hfserr.ErrInvalid)
	}
	l := &Layout{root: abs, name: "oci:" + abs}
	if err := l.check(); err != nil {
		return nil, err
	}
	return l, nil
}

// Name is "oci:" and the layout's absolute path.
func (l *Layout) Name() string { return l.name }

// Repository is the same as Name.
func (l *Layout) Repository() string { return l.name }

// Ping checks that the layout is still there and readable.
func (l *Layout) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.check()
}

// StatBlob returns the size of blob d; a missing blob wraps
// hfserr.ErrNotFound.
func (l *Layout) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	fi, err := os.Stat(l.blobPath(d))
	if err != nil {
		return 0, l.fileError("stat "+d.String(), err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s: blob %s is not a regular file: %w", l.name, d, hfserr.ErrInvalid)
	}
	return fi.Size(), nil
}

// FetchRange reads bytes [off, off+n) of blob d. A range past the end of
// the blob wraps hfserr.ErrInvalid, a missing blob ErrNotFound.
func (l *Layout) FetchRange(ctx context.Context, d digest.Digest, off, n int64) ([]byte, error) {
	what := fmt.Sprintf("%s: fetch %s [%d, %d+%d)", l.name, d, off, off, n)
	if err := checkRange(off, n); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(l.blobPath(d))
	if err != nil {
		return nil, l.fileError("fetch "+d.String(), err)
	}
	defer f.Close()
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, off)
	switch {
	case int64(got) == n:
		return buf, nil
	case errors.Is(err, io.EOF):
		return nil, fmt.Errorf("%s: range beyond end of blob: %w", what, hfserr.ErrInvalid)
	default:
		return nil, fmt.Errorf("%s: %w: %w", what, err, hfserr.ErrUnavailable)
	}
}

// Manifest returns the manifest named by ref: "sha256:<hex>", or a tag,
// which is the RefNameAnnotation of a manifest listed in index.json (the
// first, if several have it). The body must hash to its digest (else
// hfserr.ErrIntegrity) and be at most MaxManifestSize (else ErrInvalid).
// A blob that is not a manifest wraps ErrNotFound.
func (l *Layout) Manifest(ctx context.Context, ref string) (Doc, error) {
	what := l.name + ": manifest " + clip(ref)
	if err := ctx.Err(); err != nil {
		return Doc{}, err
	}
	d, byDigest, err := parseRef(ref)
	if err != nil {
		return Doc{}, fmt.Errorf("%s: %w", what, err)
	}
	entries, err := l.entries()
	if err != nil {
		return Doc{}, err
	}
	var hint string
	listed := false
	for _, e := range entries {
		if byDigest && e.desc.Digest == d || !byDigest && e.ref == ref {
			d, hint, listed = e.desc.Digest, e.desc.MediaType, true
			break
		}
	}
	if !byDigest && !listed {
		return Doc{}, fmt.Errorf("%s: no manifest in index.json has that %s: %w", what, RefNameAnnotation, hfserr.ErrNotFound)
	}
	body, err := l.readBlob(d)
	if err != nil {
		return Doc{}, fmt.Errorf("%s: %w", what, err)
	}
	if got := digest.Of(body); got != d {
		return Doc{}, fmt.Errorf("%s: blob hashes to %s, expected %s: %w", what, got, d, hfserr.ErrIntegrity)
	}
	mt := hint
	if mt == "" {
		mt = manifestType(body)
	}
	if mt == "" {
		return Doc{}, fmt.Errorf("%s: blob %s is not a manifest: %w", what, d, hfserr.ErrNotFound)
	}
	return Doc{Digest: d, MediaType: mt, Body: body}, nil
}

// StatManifest describes the manifest named by ref (see Manifest), which it
// reads and verifies: the file is local.
func (l *Layout) StatManifest(ctx context.Context, ref string) (Descriptor, error) {
	doc, err := l.Manifest(ctx, ref)
	if err != nil {
		return Descriptor{}, err
	}
	return Descriptor{Digest: doc.Digest, Size: int64(len(doc.Body)), MediaType: doc.MediaType}, nil
}

// Tags lists the RefNameAnnotation values of index.json's manifests that
// are valid tags, in file order, without repeats.
func (l *Layout) Tags(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := l.entries()
	if err != nil {
		return nil, err
	}
	tags := []string{}
	seen := map[string]bool{}
	for _, e := range entries {
		if validTag(e.ref) && !seen[e.ref] {
			seen[e.ref] = true
			tags = append(tags, e.ref)
		}
	}
	return tags, nil
}

func (l *Layout) blobPath(d digest.Digest) string {
	return filepath.Join(l.root, "blobs", "sha256", d.Hex())
}

// check reads oci-layout and index.json.
func (l *Layout) check() error {
	fi, err := os.Stat(l.root)
	if err != nil {
		return l.fileError("open", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory: %w", l.name, hfserr.ErrInvalid)
	}
	b, err := readCapped(filepath.Join(l.root, "oci-layout"), maxLayoutFile)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: not an OCI image layout (no oci-layout file): %w", l.name, hfserr.ErrNotFound)
	}
	if err != nil {
		return l.fileError("read oci-layout", err)
	}
	var v struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("%s: oci-layout: %v: %w", l.name, err, hfserr.ErrInvalid)
	}
	if !strings.HasPrefix(v.Version, "1.") {
		return fmt.Errorf("%s: oci-layout: unsupported imageLayoutVersion %q: %w", l.name, clip(v.Version), hfserr.ErrInvalid)
	}
	_, err = l.entries()
	return err
}

// entries returns index.json's manifests, reading the file again if it
// changed since the last read.
func (l *Layout) entries() ([]indexEntry, error) {
	path := filepath.Join(l.root, "index.json")
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no index.json: %w", l.name, hfserr.ErrInvalid)
	}
	if err != nil {
		return nil, l.fileError("stat index.json", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stamp != nil && os.SameFile(l.stamp, fi) && l.stamp.Size() == fi.Size() && l.stamp.ModTime().Equal(fi.ModTime()) {
		return l.index, nil
	}
	b, err := readCapped(path, MaxManifestSize)
	if err != nil {
		return nil, l.fileError("read index.json", err)
	}
	var v struct {
		Manifests []struct {
			MediaType   string            `json:"mediaType"`
			Digest      string            `json:"digest"`
			Size        int64             `json:"size"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: index.json: %v: %w", l.name, err, hfserr.ErrInvalid)
	}
	index := make([]indexEntry, 0, len(v.Manifests))
	for _, m := range v.Manifests {
		d, err := digest.Parse(m.Digest)
		if err != nil {
			continue // another algorithm, or garbage: not ours to serve
		}
		index = append(index, indexEntry{
			desc: Descriptor{Digest: d, Size: m.Size, MediaType: m.MediaType},
			ref:  m.Annotations[RefNameAnnotation],
		})
	}
	l.stamp, l.index = fi, index
	return index, nil
}

// readBlob reads a whole blob of at most MaxManifestSize bytes.
func (l *Layout) readBlob(d digest.Digest) ([]byte, error) {
	b, err := readCapped(l.blobPath(d), MaxManifestSize)
	var big *tooBigError
	switch {
	case errors.As(err, &big):
		return nil, tooBig(big.size)
	case err != nil:
		return nil, l.fileError("read "+d.String(), err)
	}
	return b, nil
}

// fileError classifies a failed file operation on the layout.
func (l *Layout) fileError(what string, err error) error {
	var big *tooBigError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %s: %w", l.name, what, hfserr.ErrNotFound)
	case errors.Is(err, hfserr.ErrInvalid):
		return fmt.Errorf("%s: %s: %w", l.name, what, err)
	case errors.As(err, &big):
		return fmt.Errorf("%s: %s: %w: %w", l.name, what, err, hfserr.ErrInvalid)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: %s: %w: %w", l.name, what, err, hfserr.ErrDenied)
	}
	return fmt.Errorf("%s: %s: %w: %w", l.name, what, err, hfserr.ErrUnavailable)
}

// tooBigError is a file over readCapped's limit.
type tooBigError struct{ size int64 }

func (e *tooBigError) Error() string { return fmt.Sprintf("file of %d bytes is too big", e.size) }

// readCapped reads a regular file of at most limit bytes.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: %w", filepath.Base(path), hfserr.ErrInvalid)
	}
	if fi.Size() > limit {
		return nil, &tooBigError{fi.Size()}
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &tooBigError{-1}
	}
	return b, nil
}

// manifestType is a manifest body's media type: its mediaType field, or
// what its shape says for OCI documents that leave the field out. "" means
// it is not a manifest.
func manifestType(body []byte) string {
	var v struct {
		MediaType     string          `json:"mediaType"`
		SchemaVersion int             `json:"schemaVersion"`
		Manifests     json.RawMessage `json:"manifests"`
		Layers        json.RawMessage `json:"layers"`
		Config        json.RawMessage `json:"config"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	switch {
	case v.MediaType != "":
		return v.MediaType
	case v.SchemaVersion != 2:
		return ""
	case v.Manifests != nil:
		return "application/vnd.oci.image.index.v1+json"
	case v.Config != nil && v.Layers != nil:
		return "application/vnd.oci.image.manifest.v1+json"
	}
	return ""
}
