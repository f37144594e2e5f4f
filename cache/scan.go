package cache

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
)

// load rebuilds the chunk index from disk at Open. Only chunks of blobs
// with a trusted table survive: anything else was an unverified lazy
// chunk or a verification that never finished (for example after
// kill -9), so a restart serves only verified bytes. Files that cannot
// be a chunk of their blob are removed. LRU order is file mtime order.
// Returns how many chunk files were removed.
func (s *store) load(sizes map[digest.Digest]int64, cs int64) (removed int, err error) {
	type found struct {
		k     chunkKey
		size  int64
		mtime time.Time
	}
	var all []found
	shards, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, err
	}
	for _, sh := range shards {
		shPath := filepath.Join(s.dir, sh.Name())
		if !sh.IsDir() || len(sh.Name()) != 2 {
			os.RemoveAll(shPath)
			removed++
			continue
		}
		blobs, err := os.ReadDir(shPath)
		if err != nil {
			return removed, err
		}
		for _, b := range blobs {
			bPath := filepath.Join(shPath, b.Name())
			d, err := digest.ParseHex(b.Name())
			size, tabled := sizes[d]
			if err != nil || !b.IsDir() || b.Name()[:2] != sh.Name() || !tabled {
				n, _ := countFiles(bPath)
				removed += max(n, 1)
				os.RemoveAll(bPath)
				continue
			}
			files, err := os.ReadDir(bPath)
			if err != nil {
				return removed, err
			}
			kept := 0
			for _, f := range files {
				fPath := filepath.Join(bPath, f.Name())
				i, perr := strconv.ParseInt(f.Name(), 10, 64)
				ok := perr == nil && f.Type().IsRegular() && strconv.FormatInt(i, 10) == f.Name() &&
					i >= 0 && i < chunkCount(size, cs)
				var fi os.FileInfo
				if ok {
					fi, err = f.Info()
					ok = err == nil
				}
				if ok {
					_, n := chunkSpan(size, cs, i)
					ok = fi.Size() == n
				}
				if !ok {
					os.RemoveAll(fPath)
					removed++
					continue
				}
				all = append(all, found{chunkKey{d, i}, fi.Size(), fi.ModTime()})
				kept++
			}
			if kept == 0 {
				os.Remove(bPath)
			}
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a].mtime.Before(all[b].mtime) })
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range all {
		s.addLocked(f.k, &entry{size: f.size})
	}
	s.makeRoomLocked(0)
	return removed, nil
}

func countFiles(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n, err
}
