package cache

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hashfs/hashfs/internal/digest"
)

// load rebuilds the chunk index from disk at Open. Only blobs with a
// trusted table survive: anything else was an unverified lazy chunk or a
// verification that never finished (for example after kill -9), so a
// restart serves only verified bytes. A chunk counts as cached when its
// whole span of the blob's file is data (not a hole); it is checked
// against the table the first time this process reads it. Files that
// cannot belong to their blob are removed. LRU order is file mtime order.
// Returns how many files were removed, and how many blobs a stamp made
// whole (stamp.go).
func (s *store) load(sizes map[digest.Digest]int64, cs int64) (removed, stamped int, err error) {
	type found struct {
		d     digest.Digest
		bf    *blobFile
		mtime time.Time
	}
	var all []found
	shards, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, 0, err
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
			return removed, 0, err
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
			bf, mtime, n, err := loadBlob(bPath, d, size, cs, !s.recheck)
			removed += n
			if err != nil || bf.bytes == 0 {
				os.RemoveAll(bPath)
				continue
			}
			all = append(all, found{d, bf, mtime})
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a].mtime.Before(all[b].mtime) })
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range all {
		s.lru.Add(f.d, f.bf)
		s.usage += f.bf.bytes
		if f.bf.whole {
			stamped++
		}
	}
	s.makeRoomLocked(0)
	return removed, stamped, nil
}

// loadBlob indexes the chunks in one blob's directory: the data of its
// file (holes are chunks not cached) and, in a cache made by an earlier
// hashfs, one file per chunk, which it moves into the blob's file. With
// trust, a blob whose stamp still matches its file is whole.
func loadBlob(dir string, d digest.Digest, size, cs int64, trust bool) (*blobFile, time.Time, int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, time.Time{}, 0, err
	}
	removed := 0
	var old []int64
	hasStamp := false
	for _, e := range ents {
		name := e.Name()
		if (name == blobFileName || name == stampFileName) && e.Type().IsRegular() {
			hasStamp = hasStamp || name == stampFileName
			continue
		}
		i, perr := strconv.ParseInt(name, 10, 64)
		if perr == nil && e.Type().IsRegular() && strconv.FormatInt(i, 10) == name && i >= 0 && i < chunkCount(size, cs) {
			old = append(old, i)
			continue
		}
		os.RemoveAll(filepath.Join(dir, name))
		removed++
	}
	p := filepath.Join(dir, blobFileName)
	flag := os.O_RDWR
	if len(old) > 0 {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(p, flag, 0o600)
	if err != nil {
		return nil, time.Time{}, removed, err
	}
	defer f.Close()
	for _, i := range old {
		cp := filepath.Join(dir, strconv.FormatInt(i, 10))
		off, n := chunkSpan(size, cs, i)
		if b, err := os.ReadFile(cp); err == nil && int64(len(b)) == n {
			if _, err := f.WriteAt(b, off); err != nil {
				punch(f, off, n)
			}
		}
		os.Remove(cp)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, removed, err
	}
	if fi.Size() > size {
		removed++
		return nil, time.Time{}, removed, errors.New("blob file longer than the blob")
	}
	bf := &blobFile{chunks: map[int64]*entry{}}
	for _, i := range dataChunks(f, fi.Size(), size, cs) {
		_, n := chunkSpan(size, cs, i)
		bf.chunks[i] = &entry{size: n}
		bf.bytes += n
	}
	if hasStamp {
		all := int64(len(bf.chunks)) == chunkCount(size, cs)
		if trust && all && len(old) == 0 && stamped(dir, d, f, size) {
			bf.whole, bf.stamping = true, true
			for _, e := range bf.chunks {
				e.verified = true
			}
		} else {
			os.Remove(filepath.Join(dir, stampFileName))
		}
	}
	return bf, fi.ModTime(), removed, nil
}

// dataChunks lists the chunks of a blob of size bytes whose whole span
// is data in f (flen bytes long). A filesystem that cannot tell holes
// makes every chunk within flen count; the first-read check sorts them.
func dataChunks(f *os.File, flen, size, cs int64) []int64 {
	fd := int(f.Fd())
	var out []int64
	for off := int64(0); off < flen; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) {
			break
		}
		end := flen
		if err != nil {
			start = off
		} else if e, err := unix.Seek(fd, start, unix.SEEK_HOLE); err == nil {
			end = e
		}
		for i := (start + cs - 1) / cs; i < chunkCount(size, cs); i++ {
			o, n := chunkSpan(size, cs, i)
			if o+n > end {
				break
			}
			out = append(out, i)
		}
		if end <= off {
			break
		}
		off = end
	}
	return out
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
