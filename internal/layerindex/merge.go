package layerindex

import (
	"slices"
	"strings"
)

// Whiteout names (OCI image-spec layer.md, from AUFS).
const (
	WhiteoutPrefix = ".wh."
	WhiteoutMeta   = ".wh..wh."
	WhiteoutOpaque = ".wh..wh..opq"
)

// Merge returns the root filesystem of layers given bottom first, as
// unpacking them in order leaves it (what `crane export` writes): a name
// in a higher layer hides the same name below (two directories merge,
// the higher one's metadata winning), `.wh.<name>` hides <name> and
// everything under it in lower layers, `.wh..wh..opq` hides everything
// lower in its directory, and whiteouts only act on lower layers. The
// whiteout files themselves, and other `.wh..wh.` names, are not shown.
// The trees are not modified; the result shares their entries.
func Merge(layers []*Layer) *Node {
	root := &Node{ID: -1}
	hidden := map[string]bool{} // paths whited out by higher layers
	opaque := map[string]bool{} // directories made opaque by higher layers
	for i := len(layers) - 1; i >= 0; i-- {
		l := layers[i]
		if root.Entry == nil && l.Root.Entry != nil {
			root.Entry, root.Layer, root.ID = l.Root.Entry, l, l.Root.ID
		}
		newHidden, newOpaque := map[string]bool{}, map[string]bool{}
		mergeDir(root, l.Root, "", hidden, opaque, newHidden, newOpaque)
		for p := range newHidden {
			hidden[p] = true
		}
		for p := range newOpaque {
			opaque[p] = true
		}
	}
	finishMerged(root)
	return root
}

// mergeDir adds to dst (the merged directory at path p) what the layer's
// directory src contributes.
func mergeDir(dst, src *Node, p string, hidden, opaque, newHidden, newOpaque map[string]bool) {
	if opaque[p] {
		return // a higher layer emptied this directory of lower content
	}
	join := func(name string) string {
		if p == "" {
			return name
		}
		return p + "/" + name
	}
	for _, c := range src.Children {
		switch {
		case c.Name == WhiteoutOpaque:
			newOpaque[p] = true
			continue
		case strings.HasPrefix(c.Name, WhiteoutMeta):
			continue
		case strings.HasPrefix(c.Name, WhiteoutPrefix):
			newHidden[join(c.Name[len(WhiteoutPrefix):])] = true
			continue
		}
		cp := join(c.Name)
		if hidden[cp] {
			continue
		}
		m := dst.Child(c.Name)
		if m == nil {
			m = &Node{Name: c.Name, Entry: c.Entry, Layer: c.Layer, ID: c.ID, Nlink: c.Nlink}
			dst.Children = insertSorted(dst.Children, m)
		} else if !m.IsDir() || !c.IsDir() {
			continue // the higher layer's name wins
		}
		if c.IsDir() {
			if m.Entry == nil && c.Entry != nil {
				m.Entry, m.Layer, m.ID = c.Entry, c.Layer, c.ID
			}
			mergeDir(m, c, cp, hidden, opaque, newHidden, newOpaque)
		}
	}
}

func insertSorted(s []*Node, n *Node) []*Node {
	i, _ := slices.BinarySearchFunc(s, n.Name, func(c *Node, name string) int { return strings.Compare(c.Name, name) })
	return slices.Insert(s, i, n)
}

// finishMerged sets directory link counts.
func finishMerged(n *Node) {
	n.Nlink = 2
	for _, c := range n.Children {
		if c.IsDir() {
			n.Nlink++
			finishMerged(c)
		}
	}
}
