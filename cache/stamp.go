package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hashfs/hashfs/internal/digest"
)

// A stamp lets a restarted daemon trust a whole blob's file without
// hashing it again. When a blob of stampMin bytes or more becomes whole (every byte hashed against
// its table in this process, backing.go), seal notes the file's identity
// (inode number, size, ctime); a background job then makes the file
// durable (fsync) and, if the identity is still the one seal saw, writes
// it to <hex>/stamp next to the file. Any write, truncate, hole punch,
// chmod or replacement of the file through the filesystem changes one of
// them, and user space cannot set a ctime back, so at Open a file whose
// stamp still matches holds the bytes this process hashed, and the blob
// is whole again at once: the first open after a restart hands the
// kernel the file without reading it. A stamp that does not match, or
// cannot be read, is deleted and the blob's chunks are hashed before
// they are served, as without stamps. Options.Recheck ignores stamps.
//
// What this trusts is what a running daemon already trusts (cache.go):
// nobody writes a whole file in the 0700 cache directory behind the
// daemon's back, and the disk returns what was written (a kernel that
// drops a whole file's pages reads them from disk again, unchecked). The
// fsync first is what makes a stamp hold across a crash: no stamp
// exists for bytes that were only in the page cache. The one write a
// stamp can miss is one that leaves the ctime as it was: in the same
// clock tick as the file's last write on a kernel with coarse timestamps
// (before 6.13), or the same second on a filesystem that keeps whole
// seconds; so the job waits that long before it looks (settledStamp).
// Reads that come through the daemon (no passthrough: not root, or an
// older kernel) trust a stamped blob's chunks the same way, and `hashfs
// cache verify` hashes every byte whatever the stamps say
// (store.rehash).

const (
	// stampMin is the smallest blob that is stamped: hashing a smaller
	// one again at its first open after a restart (under 3 ms) costs no
	// more than the fsync a stamp needs.
	stampMin = 4 << 20
	// maxStamping bounds the stamp jobs (each an fsync) at once.
	maxStamping   = 2
	stampFileName = "stamp"
	stampMagic    = "hfsstmp1"
	stampLen      = len(stampMagic) + 32 + 4*8 + sha256.Size
)

// stamp is the identity of a whole blob's file.
type stamp struct {
	d               digest.Digest
	ino             uint64
	size            int64
	ctimeS, ctimeNs int64
}

// fileStamp returns f's identity as d's file.
func fileStamp(d digest.Digest, f *os.File) (stamp, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return stamp{}, err
	}
	return stamp{d: d, ino: st.Ino, size: st.Size, ctimeS: st.Ctim.Sec, ctimeNs: st.Ctim.Nsec}, nil
}

// encode is magic | digest | ino | size | ctime s | ctime ns (LE) | sha256 of all before.
func (s stamp) encode() []byte {
	b := make([]byte, 0, stampLen)
	b = append(b, stampMagic...)
	b = append(b, s.d[:]...)
	b = binary.LittleEndian.AppendUint64(b, s.ino)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.size))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.ctimeS))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.ctimeNs))
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

func decodeStamp(b []byte) (stamp, bool) {
	if len(b) != stampLen || !bytes.HasPrefix(b, []byte(stampMagic)) {
		return stamp{}, false
	}
	body := b[:stampLen-sha256.Size]
	if sha256.Sum256(body) != [32]byte(b[len(body):]) {
		return stamp{}, false
	}
	var s stamp
	p := body[len(stampMagic):]
	copy(s.d[:], p)
	p = p[32:]
	s.ino = binary.LittleEndian.Uint64(p)
	s.size = int64(binary.LittleEndian.Uint64(p[8:]))
	s.ctimeS = int64(binary.LittleEndian.Uint64(p[16:]))
	s.ctimeNs = int64(binary.LittleEndian.Uint64(p[24:]))
	return s, true
}

// ctimeTick bounds the granularity of file timestamps: kernels before
// 6.13 set ctime from a clock that moves once per scheduler tick (1-10 ms).
const ctimeTick = 20 * time.Millisecond

// ctimeGrain is how far apart two writes to a file may be and still
// leave the same ctime: ctimeTick, or 2 s where the ctime has no
// nanoseconds, as on filesystems that keep whole seconds (ext4 with
// 128-byte inodes, ext3) or two (vfat).
func ctimeGrain(ns int64) time.Duration {
	if ns == 0 {
		return 2 * time.Second
	}
	return ctimeTick
}

// settledStamp is fileStamp once f's ctime is a grain in the past: a
// write in the same grain as the last one could leave the ctime as it
// was, and go unseen.
func settledStamp(d digest.Digest, f *os.File) (stamp, error) {
	st, err := fileStamp(d, f)
	if err != nil {
		return st, err
	}
	grain := ctimeGrain(st.ctimeNs)
	if wait := time.Until(time.Unix(st.ctimeS, st.ctimeNs).Add(grain)); wait > 0 {
		time.Sleep(min(wait, grain)) // a ctime in the future (clock stepped back) waits no longer
		return fileStamp(d, f)
	}
	return st, nil
}

// stamped reports whether the stamp in dir says f is still d's whole
// file of size bytes, as it was when it was stamped.
func stamped(dir string, d digest.Digest, f *os.File, size int64) bool {
	b, err := os.ReadFile(filepath.Join(dir, stampFileName))
	if err != nil {
		return false
	}
	want, ok := decodeStamp(b)
	got, err := fileStamp(d, f)
	return ok && err == nil && want == got && got.size == size
}

// stampIfWhole stamps k's file if every chunk is cached and matched the
// table in this process but no open has asked for the file since (its
// readers read through the daemon): a restart then trusts it as it
// trusts a file handed to the kernel.
func (c *Cache) stampIfWhole(k blobKey) {
	if k.size <= 0 || c.store.isStamping(k.d) || c.quarantineErr(k) != nil {
		return
	}
	tab, _ := c.table(k.d)
	if tab == nil || tab.size != k.size {
		return
	}
	f, _, stamp := c.store.seal(k.d, tab)
	if f != nil {
		f.Close()
	}
	if stamp {
		c.startStamp(k.d)
	}
}

// startStamp runs writeStamp for d in the background, at most
// maxStamping at once; a cache that closes first leaves d unstamped.
func (c *Cache) startStamp(d digest.Digest) {
	c.spawn(func() {
		select {
		case c.stampSem <- struct{}{}:
		case <-c.ctx.Done():
			return
		}
		defer func() { <-c.stampSem }()
		c.store.writeStamp(d)
	})
}

// isStamping reports whether d's file is stamped or being stamped.
func (s *store) isStamping(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	bf, ok := s.lru.Peek(d)
	return ok && bf.stamping
}

// writeStamp makes d's whole file durable and stamps it (the blob's
// stamping flag was claimed by seal). It gives up quietly if the blob is
// removed meanwhile: a stamp is only ever written into the directory of
// the file it describes, under store.mu, while that file is indexed.
func (s *store) writeStamp(d digest.Digest) {
	s.mu.Lock()
	bf, ok := s.lru.Peek(d)
	if !ok || !bf.whole || bf.dead {
		s.mu.Unlock()
		return
	}
	seen := bf.seen
	f, err := s.openLocked(d, bf, false)
	s.mu.Unlock()
	if err != nil {
		return
	}
	var tmp string
	var st stamp
	if err = f.Sync(); err == nil {
		st, err = settledStamp(d, f)
	}
	if err == nil && st != seen {
		// Changed since this process found it whole, and not by it.
		err = errors.New("the file changed after its bytes were hashed")
	}
	if err == nil {
		tmp, err = writeTemp(s.tmp, st.encode(), false)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doneLocked(d, bf)
	if cur, ok := s.lru.Peek(d); err == nil && (!ok || cur != bf || bf.dead) {
		os.Remove(tmp)
		return
	}
	if err == nil {
		if err = os.Rename(tmp, filepath.Join(s.blobDir(d), stampFileName)); err != nil {
			os.Remove(tmp)
		}
	}
	if err != nil {
		s.log.Debug("cannot stamp a whole blob; a restart will hash it again", "digest", d.String(), "err", err)
		bf.stamping = false
	}
}
