package cache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

func TestLazyFetchesOnlyTouchedChunks(t *testing.T) {
	b := blob(20, 10*cs)
	d := digest.Of(b)
	size := int64(len(b))
	src := newFake(b)
	release := make(chan struct{})
	// Hold the background verification: only chunk 3 is answered.
	src.setHook(gate(release, func(_ digest.Digest, off int64) bool { return off != 3*cs }))
	dir := t.TempDir()
	c := openCache(t, dir, src, Options{Mode: Lazy, LazyVerifyMax: 4 * cs, Parallel: 2})
	r := c.Open(d, size)
	defer r.Close()
	p := make([]byte, 1000)
	if n, err := r.ReadAt(context.Background(), p, 3*cs+10); err != nil || !bytes.Equal(p[:n], b[3*cs+10:3*cs+1010]) {
		t.Fatalf("lazy ReadAt = %d, %v", n, err)
	}
	if got := src.answered(); got != cs {
		t.Fatalf("answered %d bytes before verification, want one chunk (%d)", got, cs)
	}
	if st := c.Status(d, size); st.Verified || st.CachedBytes != cs || st.Quarantined {
		t.Fatalf("Status before verification = %+v", st)
	}
	close(release)
	waitFor(t, "background verification", func() bool { return c.Status(d, size).Verified })
	for i := int64(0); i < 10; i++ {
		if got := src.callsAt(d, i*cs); got != 1 {
			t.Errorf("chunk %d fetched %d times, want 1", i, got)
		}
	}
	readAll(t, c, b, 7777)
}

func TestLazySmallBlobIsStrict(t *testing.T) {
	b := blob(21, 3*cs)
	d := digest.Of(b)
	src := newFake(b)
	src.setFlip(d, 2*cs)
	quarantined := make(chan digest.Digest, 1)
	c := openCache(t, t.TempDir(), src, Options{Mode: Lazy, LazyVerifyMax: 3 * cs,
		OnQuarantine: func(d digest.Digest) { quarantined <- d }})
	r := c.Open(d, int64(len(b)))
	defer r.Close()
	if n, err := r.ReadAt(context.Background(), make([]byte, 10), 0); n != 0 || !isIntegrity(err) {
		t.Fatalf("ReadAt = %d, %v; want no bytes and an integrity error", n, err)
	}
	if c.Status(d, int64(len(b))).Quarantined || len(quarantined) != 0 {
		t.Fatal("a strictly verified blob was quarantined")
	}
}

func TestLazyQuarantine(t *testing.T) {
	b := blob(22, 8*cs)
	d := digest.Of(b)
	size := int64(len(b))
	src := newFake(b)
	src.setFlip(d, 6*cs+1)
	var logs logBuffer
	quarantined := make(chan digest.Digest, 4)
	dir := t.TempDir()
	const qt = 300 * time.Millisecond
	c := openCache(t, dir, src, Options{
		Mode: Lazy, LazyVerifyMax: cs, QuarantineTime: qt, Logger: newTestLogger(&logs),
		OnQuarantine: func(d digest.Digest) { quarantined <- d },
	})
	for range maxBackground { // hold verification until the first read is served
		c.bgSem <- struct{}{}
	}
	r := c.Open(d, size)
	defer r.Close()
	p := make([]byte, 500)
	if _, err := r.ReadAt(context.Background(), p, 0); err != nil {
		t.Fatalf("lazy ReadAt of a good chunk: %v", err)
	}
	for range maxBackground {
		<-c.bgSem
	}
	var at time.Time
	select {
	case got := <-quarantined:
		at = time.Now()
		if got != d {
			t.Fatalf("OnQuarantine(%s), want %s", got, d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnQuarantine not called")
	}
	if n := logs.count("level=ERROR"); n != 1 || logs.count(d.String()) == 0 {
		t.Fatalf("quarantine logged %d errors", n)
	}
	waitFor(t, "chunks purged", func() bool { return c.Status(d, size).CachedBytes == 0 })
	if files, _ := chunkFiles(t, dir); len(files) != 0 {
		t.Fatalf("quarantined blob left chunks: %v", files)
	}
	if n := c.Stats().Quarantined; n != 1 {
		t.Errorf("Stats().Quarantined = %d, want 1", n)
	}
	if st := c.Status(d, size); !st.Quarantined || st.Verified {
		t.Fatalf("Status = %+v", st)
	}
	for _, off := range []int64{0, 3 * cs, 6 * cs} {
		if n, err := r.ReadAt(context.Background(), p, off); n != 0 || !isIntegrity(err) {
			t.Fatalf("quarantined ReadAt(%d) = %d, %v", off, n, err)
		}
	}
	src.setFlip(d, -1)
	if time.Since(at) < qt/2 {
		if _, err := r.ReadAt(context.Background(), p, 0); !isIntegrity(err) {
			t.Fatalf("ReadAt inside quarantine after the fault cleared = %v", err)
		}
	}
	time.Sleep(time.Until(at.Add(qt + 20*time.Millisecond)))
	if _, err := r.ReadAt(context.Background(), p, 0); err != nil {
		t.Fatalf("ReadAt after quarantine: %v", err)
	}
	waitFor(t, "verification after quarantine", func() bool { return c.Status(d, size).Verified })
	readAll(t, c, b, 10000)
}

func TestLazyChunkCorruptOnDisk(t *testing.T) {
	b := blob(23, 6*cs)
	d := digest.Of(b)
	src := newFake(b)
	dir := t.TempDir()
	c := openCache(t, dir, src, Options{Mode: Lazy, LazyVerifyMax: cs})
	// Hold background verification so only the reader touches chunk 0.
	for range maxBackground {
		c.bgSem <- struct{}{}
	}
	defer func() {
		for range maxBackground {
			<-c.bgSem
		}
	}()
	r := c.Open(d, int64(len(b)))
	defer r.Close()
	// Chunk 2 first: a chunk that does not follow the blob's chain
	// (chain.go) is written with a hash of its own.
	const at = 2 * cs
	p := make([]byte, 100)
	if _, err := r.ReadAt(context.Background(), p, at); err != nil {
		t.Fatal(err)
	}
	// While the fetched copy is in memory the reader gets it, whatever
	// the disk says.
	flipChunkByte(t, dir, d, 2, 50)
	if _, err := r.ReadAt(context.Background(), p, at); err != nil || !bytes.Equal(p, b[at:at+100]) {
		t.Fatalf("ReadAt from memory after on-disk corruption: %v", err)
	}
	if got := src.callsAt(d, at); got != 1 {
		t.Fatalf("chunk 2 fetched %d times with its copy in memory, want 1", got)
	}
	// Read back from disk, an unverified chunk is still checked against
	// what was fetched.
	c.mem.Purge()
	if _, err := r.ReadAt(context.Background(), p, at); err != nil || !bytes.Equal(p, b[at:at+100]) {
		t.Fatalf("ReadAt after on-disk corruption: %v", err)
	}
	if got := src.callsAt(d, at); got != 2 {
		t.Fatalf("chunk 2 fetched %d times, want 2", got)
	}
}

func TestCloseWaitsAndRefuses(t *testing.T) {
	b := blob(24, 4*cs)
	d := digest.Of(b)
	src := newFake(b)
	release := make(chan struct{})
	defer close(release)
	src.setHook(gate(release, func(_ digest.Digest, off int64) bool { return off != 0 }))
	c := openCache(t, t.TempDir(), src, Options{Mode: Lazy, LazyVerifyMax: cs})
	r := c.Open(d, int64(len(b)))
	if _, err := r.ReadAt(context.Background(), make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the background job")
	}
	if _, err := r.ReadAt(context.Background(), make([]byte, 10), 0); !errors.Is(err, errClosed) {
		t.Fatalf("ReadAt after Close = %v", err)
	}
}

func TestDocs(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, newFake(), Options{})
	body := []byte(`{"schemaVersion":2}`)
	d := digest.Of(body)
	const mt = "application/vnd.oci.image.manifest.v1+json"
	if _, _, ok := c.GetDoc(d); ok {
		t.Fatal("GetDoc of a missing document ok")
	}
	for _, tc := range []struct {
		name  string
		d     digest.Digest
		mt    string
		check func(error) bool
	}{
		{"wrong digest", digest.Of([]byte("other")), mt, isIntegrity},
		{"newline in media type", d, "a\nb", func(err error) bool { return err != nil }},
		{"good", d, mt, func(err error) bool { return err == nil }},
	} {
		if err := c.PutDoc(tc.d, tc.mt, body); !tc.check(err) {
			t.Fatalf("%s: PutDoc = %v", tc.name, err)
		}
	}
	if gotMT, got, ok := c.GetDoc(d); !ok || gotMT != mt || !bytes.Equal(got, body) {
		t.Fatalf("GetDoc = %q, %q, %v", gotMT, got, ok)
	}
	p := c.docPath(d)
	raw, _ := os.ReadFile(p)
	raw[len(raw)-2] ^= 1
	if err := os.WriteFile(p, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := c.GetDoc(d); ok {
		t.Fatal("GetDoc served a corrupt document")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("corrupt document not removed: %v", err)
	}
	c2 := openCache(t, dir, newFake(), Options{})
	if err := c2.PutDoc(d, "", body); err != nil {
		t.Fatal(err)
	}
	if gotMT, got, ok := c2.GetDoc(d); !ok || gotMT != "" || !bytes.Equal(got, body) {
		t.Fatalf("GetDoc with empty media type = %q, %q, %v", gotMT, got, ok)
	}
}

// Background verification waits until the blob has gone unread for
// BackgroundDelay: a reader still busy with it gets all the bandwidth.
func TestLazyBackgroundWaitsForIdle(t *testing.T) {
	b := blob(23, 12*cs)
	d := digest.Of(b)
	size := int64(len(b))
	src := newFake(b)
	c := openCache(t, t.TempDir(), src, Options{Mode: Lazy, LazyVerifyMax: cs, BackgroundDelay: 300 * time.Millisecond})
	r := c.Open(d, size)
	defer r.Close()
	p := make([]byte, 100)
	for i := int64(0); i < 8; i++ { // one read every 100 ms for 800 ms: never idle for 300 ms
		if n, err := r.ReadAt(context.Background(), p, i*cs+5); err != nil || !bytes.Equal(p[:n], b[i*cs+5:i*cs+105]) {
			t.Fatalf("read %d = %d, %v", i, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := src.answered(); got != 8*cs {
		t.Fatalf("while reads went on, %d bytes were fetched; want only the 8 chunks read (%d)", got, 8*cs)
	}
	waitFor(t, "background verification once idle", func() bool { return c.Status(d, size).Verified })
	if got := src.answered(); got != size {
		t.Errorf("fetched %d bytes in all, want the blob once (%d)", got, size)
	}
}

// A purge (a failed verification, another source) makes the chunks a
// lazy reader fetched before it stale, in memory as on disk: the next
// read fetches again.
func TestLazyFreshChunksStaleAfterPurge(t *testing.T) {
	b := blob(25, 6*cs)
	d := digest.Of(b)
	src := newFake(b)
	c := openCache(t, t.TempDir(), src, Options{Mode: Lazy, LazyVerifyMax: cs, BackgroundDelay: time.Hour})
	r := c.Open(d, int64(len(b)))
	defer r.Close()
	p := make([]byte, 100)
	for range 2 {
		if _, err := r.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, b[:100]) {
			t.Fatalf("ReadAt: %v", err)
		}
	}
	if got := src.callsAt(d, 0); got != 1 {
		t.Fatalf("chunk 0 fetched %d times before the purge, want 1", got)
	}
	c.store.purge(d)
	if _, err := r.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, b[:100]) {
		t.Fatalf("ReadAt after the purge: %v", err)
	}
	if got := src.callsAt(d, 0); got != 2 {
		t.Fatalf("chunk 0 fetched %d times after the purge, want 2", got)
	}
}

// A lazy blob whose descriptor says it is longer than it is: the
// read-ahead run that reaches past the real end fails, but the chunks
// before the end still read right; the ones past it answer EIO.
func TestLazyRunPastRealEnd(t *testing.T) {
	const mib = 1 << 20
	b := blob(27, 10*mib+5)
	src := newFake(b)
	// The run over chunks 8-11 is still out when the reader gets there.
	src.setHook(func(ctx context.Context, _ digest.Digest, off int64) error {
		if off >= 8*mib {
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		return nil
	})
	c := openCache(t, t.TempDir(), src, Options{ChunkSize: mib, Parallel: 16, Mode: Lazy, LazyVerifyMax: mib,
		BackgroundDelay: time.Hour})
	r := c.Open(digest.Of(b), 12*mib) // 2 MiB more than there is
	defer r.Close()
	got := make([]byte, 10*mib)
	for off := 0; off < len(got); off += 128 << 10 {
		if n, err := r.ReadAt(context.Background(), got[off:off+128<<10], int64(off)); n != 128<<10 {
			t.Fatalf("read at %d, before the real end: %d bytes, %v", off, n, err)
		}
	}
	if !bytes.Equal(got, b[:10*mib]) {
		t.Fatal("bytes before the real end differ")
	}
	if _, err := r.ReadAt(context.Background(), make([]byte, 4096), 11*mib); !errors.Is(err, hfserr.ErrIntegrity) {
		t.Fatalf("read past the real end: %v, want ErrIntegrity", err)
	}
}
