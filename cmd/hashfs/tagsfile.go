package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/manifestview"
)

// tagsFile keeps a repository's last known tags in the cache directory,
// so that a daemon started while the registry is down (or --offline)
// still shows them.
type tagsFile struct {
	path, tmp string
	log       *slog.Logger
}

type tagRecord struct {
	Name      string `json:"name"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
}

func newTagsFile(cacheDir, repo string, log *slog.Logger) tagsFile {
	h := sha256.Sum256([]byte(repo))
	return tagsFile{
		path: filepath.Join(cacheDir, "tags-"+hex.EncodeToString(h[:8])+".json"),
		tmp:  filepath.Join(cacheDir, "tmp"),
		log:  log,
	}
}

func (f tagsFile) load() []manifestview.Tag {
	b, err := os.ReadFile(f.path)
	if err != nil {
		return nil
	}
	var recs []tagRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		f.log.Warn("ignoring unreadable last known tags", "file", f.path, "err", err)
		return nil
	}
	var out []manifestview.Tag
	for _, r := range recs {
		d, err := digest.Parse(r.Digest)
		if err != nil || r.Size < 0 {
			continue
		}
		out = append(out, manifestview.Tag{Name: r.Name, Target: manifestview.Desc{Digest: d, Size: r.Size, MediaType: r.MediaType}})
	}
	return out
}

func (f tagsFile) save(tags []manifestview.Tag) {
	recs := make([]tagRecord, 0, len(tags))
	for _, t := range tags {
		recs = append(recs, tagRecord{t.Name, t.Target.Digest.String(), t.Target.Size, t.Target.MediaType})
	}
	b, _ := json.Marshal(recs)
	if err := writeAtomic(f.tmp, f.path, b); err != nil {
		f.log.Warn("cannot save the last known tags", "file", f.path, "err", err)
	}
}

// writeAtomic writes b to path through a temporary file in tmpDir (on
// the same file system) renamed into place, so that a reader sees the old
// contents or the new, never a part.
func writeAtomic(tmpDir, path string, b []byte) error {
	tmp, err := os.CreateTemp(tmpDir, "w-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
