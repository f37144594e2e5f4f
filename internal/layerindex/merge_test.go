package layerindex

import (
	"slices"
	"strings"
	"testing"
)

func TestMerge(t *testing.T) {
	tests := []struct {
		name   string
		layers [][]file // bottom first
		want   []string
	}{
		{
			name: "higher layer wins a name",
			layers: [][]file{
				{reg("f", []byte("old")), dir("d/"), reg("d/a", nil)},
				{reg("f", []byte("new")), dir("d/"), reg("d/b", nil)},
			},
			want: []string{"d/", "d/a", "d/b", "f"},
		},
		{
			name: "whiteout hides a file and a directory tree",
			layers: [][]file{
				{reg("keep", nil), reg("gone", nil), reg("tree/x/y", nil)},
				{reg(".wh.gone", nil), reg(".wh.tree", nil)},
			},
			want: []string{"keep"},
		},
		{
			name: "opaque directory hides lower content only",
			layers: [][]file{
				{reg("d/old", nil), reg("d/sub/deep", nil), reg("other", nil)},
				{dir("d/"), reg("d/.wh..wh..opq", nil), reg("d/new", nil)},
			},
			want: []string{"d/", "d/new", "other"},
		},
		{
			name: "whiteout does not hide its own layer",
			layers: [][]file{
				{reg("x", []byte("1"))},
				{reg(".wh.x", nil), reg("x", []byte("2"))},
			},
			want: []string{"x"},
		},
		{
			name: "file replaces a directory",
			layers: [][]file{
				{reg("p/child", nil)},
				{reg("p", nil)},
			},
			want: []string{"p"},
		},
		{
			name: "directory replaces a file",
			layers: [][]file{
				{reg("p", nil)},
				{reg("p/child", nil)},
			},
			want: []string{"p/", "p/child"},
		},
		{
			name: "recreated after a whiteout",
			layers: [][]file{
				{reg("a/old", nil)},
				{reg(".wh.a", nil)},
				{reg("a/new", nil)},
			},
			want: []string{"a/", "a/new"},
		},
		{
			name: "whiteout metadata files are not shown",
			layers: [][]file{
				{reg(".wh..wh.plnk/123", nil), reg("f", nil)},
			},
			want: []string{"f"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ls []*Layer
			for _, files := range tt.layers {
				ls = append(ls, index(t, files))
			}
			got := listing(Merge(ls))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("rootfs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestMergeTakesTheTopmostFile(t *testing.T) {
	bottom := index(t, []file{reg("f", []byte("old"))})
	top := index(t, []file{reg("f", []byte("new!"))})
	f := Merge([]*Layer{bottom, top}).Child("f")
	if f.Layer != top || f.Entry.Size != 4 {
		t.Fatalf("f comes from the wrong layer (size %d)", f.Entry.Size)
	}
}
