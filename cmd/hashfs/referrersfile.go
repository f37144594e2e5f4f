package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/manifestview"
)

// referrersFiles keeps a repository's last known referrers answers in the
// cache directory, one file per subject manifest
// (referrers-<repo hash>/<subject hex>.json), so that a daemon started
// while the registry is down (or --offline) still lists them. The
// referrer manifests themselves are in the DocStore.
type referrersFiles struct {
	dir, tmp string
	log      *slog.Logger
}

type referrerRecord struct {
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

func newReferrersFiles(cacheDir, repo string, log *slog.Logger) referrersFiles {
	h := sha256.Sum256([]byte(repo))
	return referrersFiles{
		dir: filepath.Join(cacheDir, "referrers-"+hex.EncodeToString(h[:8])),
		tmp: filepath.Join(cacheDir, "tmp"),
		log: log,
	}
}

func (f referrersFiles) path(subject digest.Digest) string {
	return filepath.Join(f.dir, subject.Hex()+".json")
}

// load returns the saved answer for subject; ok is false if there is none
// (or it cannot be read, which is logged).
func (f referrersFiles) load(subject digest.Digest) (descs []manifestview.Desc, ok bool) {
	p := f.path(subject)
	b, err := os.ReadFile(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			f.log.Warn("cannot read the last known referrers", "file", p, "err", err)
		}
		return nil, false
	}
	var recs []referrerRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		f.log.Warn("ignoring unreadable last known referrers", "file", p, "err", err)
		return nil, false
	}
	descs = make([]manifestview.Desc, 0, len(recs))
	for _, r := range recs {
		d, err := digest.Parse(r.Digest)
		if err != nil || r.Size < 0 {
			continue
		}
		descs = append(descs, manifestview.Desc{Digest: d, Size: r.Size, MediaType: r.MediaType,
			ArtifactType: r.ArtifactType, Annotations: r.Annotations})
	}
	return descs, true
}

// loadOffline is load for --offline: a subject with no saved answer has
// no referrers the cache knows of, which is an answer, not a failure.
func (f referrersFiles) loadOffline(subject digest.Digest) ([]manifestview.Desc, bool) {
	descs, _ := f.load(subject)
	return descs, true
}

// save keeps descs as the answer for subject; no referrers removes the
// file.
func (f referrersFiles) save(subject digest.Digest, descs []manifestview.Desc) {
	p := f.path(subject)
	if len(descs) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			f.log.Warn("cannot remove the last known referrers", "file", p, "err", err)
		}
		return
	}
	recs := make([]referrerRecord, len(descs))
	for i, d := range descs {
		recs[i] = referrerRecord{d.Digest.String(), d.Size, d.MediaType, d.ArtifactType, d.Annotations}
	}
	b, _ := json.Marshal(recs)
	err := os.MkdirAll(f.dir, 0o700)
	if err == nil {
		err = writeAtomic(f.tmp, p, b)
	}
	if err != nil {
		f.log.Warn("cannot save the last known referrers", "file", p, "err", err)
	}
}
