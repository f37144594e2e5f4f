package cache

import (
	"context"
	"testing"

	"github.com/hashfs/hashfs/internal/digest"
)

func TestAdmin(t *testing.T) {
	a, b := blob(30, 3*cs), blob(31, 2*cs+100)
	da, db := digest.Of(a), digest.Of(b)
	dir := t.TempDir()
	c := openCache(t, dir, newFake(a, b), Options{})
	readAll(t, c, a, cs)
	readAll(t, c, b, cs)

	if st := c.Stats(); st.Usage != int64(len(a)+len(b)) || st.VerifiedBlobs != 2 || st.Quarantined != 0 || st.Max <= 0 {
		t.Errorf("Stats = %+v", st)
	}
	blobs, err := c.Blobs()
	if err != nil || len(blobs) != 2 {
		t.Fatalf("Blobs = %+v, %v", blobs, err)
	}
	for _, bi := range blobs {
		want := map[digest.Digest]int64{da: int64(len(a)), db: int64(len(b))}[bi.Digest]
		if bi.Size != want || bi.CachedBytes != want {
			t.Errorf("Blobs row %+v, want size and cached %d", bi, want)
		}
	}

	flipChunkByte(t, dir, da, 1, 7)
	c = openCache(t, dir, newFake(a, b), Options{}) // a restart: nothing checked yet
	vr, err := c.VerifyAll(context.Background())
	if want := (VerifyResult{Checked: 6, Bad: 1}); err != nil || vr != want {
		t.Fatalf("VerifyAll = %+v, %v; want %+v", vr, err, want)
	}
	if got := c.Status(da, int64(len(a))).CachedBytes; got != 2*cs {
		t.Errorf("after VerifyAll blob a has %d bytes cached, want %d", got, 2*cs)
	}

	r := c.Open(db, int64(len(b))) // pinned: Prune must leave it
	freed := c.Prune(0)
	if freed != 2*cs || c.Usage() != int64(len(b)) {
		t.Errorf("Prune(0) freed %d, usage %d; want %d freed and the pinned blob kept", freed, c.Usage(), 2*cs)
	}
	r.Close()
	if c.Prune(0); c.Usage() != 0 {
		t.Errorf("usage %d after Prune(0) with nothing pinned", c.Usage())
	}
	readAll(t, c, a, cs) // still served, fetched again
}

func TestChunkSizeAdopted(t *testing.T) {
	a := blob(32, 3*cs+5)
	d := digest.Of(a)
	dir := t.TempDir()
	readAll(t, openCache(t, dir, newFake(a), Options{ChunkSize: cs}), a, cs)
	src := newFake(a)
	c := openCache(t, dir, src, Options{ChunkSize: 2 * cs})
	readAll(t, c, a, 1000)
	if n := src.totalCalls(d); n != 0 {
		t.Fatalf("a restart with another --chunk-size fetched %d times; the cache should be kept", n)
	}
}
