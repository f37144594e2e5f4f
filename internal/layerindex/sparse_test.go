package layerindex

import (
	"bytes"
	"context"
	"os"
	"testing"
)

// The testdata archives were written by GNU tar 1.34 (--sparse) from a
// 3 MiB file with "HEAD" at 0, "MIDDLE" at 1500000 and "TAIL" at its end:
// sparse-pax.tar holds a.bin and b.bin (both sparse, PAX 1.0) and c.txt;
// sparse-gnu.tar holds a.bin (old GNU sparse) and c.txt.
func TestSparseFiles(t *testing.T) {
	want := make([]byte, 3<<20)
	copy(want, "HEAD")
	copy(want[1500000:], "MIDDLE")
	copy(want[len(want)-4:], "TAIL")
	tests := []struct {
		file  string
		names []string
	}{
		{"testdata/sparse-pax.tar", []string{"a.bin", "b.bin"}},
		{"testdata/sparse-gnu.tar", []string{"a.bin"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			for _, layer := range [][]byte{b, gz(t, b, 6, 0)} {
				src, ds := newSource(true, layer)
				l, err := New(src, Options{}).Layer(context.Background(), ds[0], int64(len(layer)))
				if err != nil {
					t.Fatal(err)
				}
				s := l.NewStream(src.blobs[ds[0]])
				for _, name := range tt.names {
					n := l.Root.Walk(name)
					if n == nil || !n.Entry.Sparse || n.Entry.Size != int64(len(want)) {
						t.Fatalf("%s: %+v", name, n)
					}
					if got := readAll(t, OpenFile(s, n.Entry)); !bytes.Equal(got, want) {
						t.Fatalf("%s: %d bytes read differ", name, len(got))
					}
				}
				if got := readAll(t, OpenFile(s, l.Root.Walk("c.txt").Entry)); string(got) != "plain\n" {
					t.Fatalf("c.txt after the sparse files reads %q", got)
				}
			}
		})
	}
}
