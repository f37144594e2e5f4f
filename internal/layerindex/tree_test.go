package layerindex

import (
	"archive/tar"
	"context"
	"slices"
	"strings"
	"testing"
)

// index builds the Layer of an uncompressed tar of files.
func index(t *testing.T, files []file) *Layer {
	t.Helper()
	tarball := makeTar(t, files)
	src, ds := newSource(true, tarball)
	l, err := New(src, Options{}).Layer(context.Background(), ds[0], int64(len(tarball)))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// listing is "path kind [-> target]" for every node, depth first.
func listing(n *Node) []string {
	var out []string
	var walk func(n *Node, p string)
	walk = func(n *Node, p string) {
		for _, c := range n.Children {
			cp := strings.TrimPrefix(p+"/"+c.Name, "/")
			switch {
			case c.IsDir():
				out = append(out, cp+"/")
				walk(c, cp)
			case c.Entry.IsSymlink():
				out = append(out, cp+" -> "+c.Entry.Linkname)
			default:
				out = append(out, cp)
			}
		}
	}
	walk(n, "")
	return out
}

func TestCleanName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a/b", "a/b"},
		{"./a/b/", "a/b"},
		{"/abs/path", "abs/path"},
		{"../../etc/passwd", "etc/passwd"},
		{"a/../../b", "b"},
		{"a//b/./c", "a/b/c"},
		{"./", ""},
		{"..", ""},
		{"/", ""},
	}
	for _, tt := range tests {
		if got := CleanName(tt.in); got != tt.want {
			t.Errorf("CleanName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestTree(t *testing.T) {
	tests := []struct {
		name  string
		files []file
		want  []string
	}{
		{
			name: "hostile names stay inside",
			files: []file{
				reg("../../etc/passwd", []byte("x")), reg("/abs", []byte("y")),
				symlink("shadow", "/etc/shadow"), symlink("up", "../../../.."),
				hardlink("link", "../../etc/passwd"),
			},
			want: []string{"abs", "etc/", "etc/passwd", "link", "shadow -> /etc/shadow", "up -> ../../../.."},
		},
		{
			name:  "implicit parents",
			files: []file{reg("a/b/c", []byte("x"))},
			want:  []string{"a/", "a/b/", "a/b/c"},
		},
		{
			name:  "later entry wins",
			files: []file{reg("x", []byte("1")), dir("x/"), reg("x/y", nil), reg("x", []byte("2"))},
			want:  []string{"x"},
		},
		{
			name:  "directory twice keeps its children",
			files: []file{dir("d/"), reg("d/f", nil), dir("d/")},
			want:  []string{"d/", "d/f"},
		},
		{
			name:  "hard link to nothing is skipped",
			files: []file{hardlink("l", "missing"), reg("f", nil)},
			want:  []string{"f"},
		},
		{
			name:  "whiteouts are shown as they are",
			files: []file{reg(".wh.gone", nil), reg("d/.wh..wh..opq", nil)},
			want:  []string{".wh.gone", "d/", "d/.wh..wh..opq"},
		},
		{
			name:  "over-long names are skipped",
			files: []file{reg(strings.Repeat("n", 256), nil), reg("ok", nil)},
			want:  []string{"ok"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := listing(index(t, tt.files).Root)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestHardLinksShareTheirEntry(t *testing.T) {
	l := index(t, []file{reg("a", []byte("data")), hardlink("b", "a"), hardlink("c", "./b"), reg("solo", nil)})
	a, b, c := l.Root.Child("a"), l.Root.Child("b"), l.Root.Child("c")
	if a.ID != b.ID || b.ID != c.ID || a.Entry != c.Entry {
		t.Fatalf("links do not share the entry: ids %d %d %d", a.ID, b.ID, c.ID)
	}
	if a.Nlink != 3 || c.Nlink != 3 || l.Root.Child("solo").Nlink != 1 {
		t.Fatalf("nlink %d %d %d, want 3 3 1", a.Nlink, c.Nlink, l.Root.Child("solo").Nlink)
	}
	if c.Entry.Type != tar.TypeReg || c.Entry.Size != 4 {
		t.Fatalf("link shows type %c size %d", c.Entry.Type, c.Entry.Size)
	}
}
