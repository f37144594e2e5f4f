package layerindex

import (
	"archive/tar"
	"log/slog"
	"path"
	"slices"
	"strings"
)

// Node is one name in a layer's tree (or in a merged rootfs).
type Node struct {
	Name string
	// Entry is the tar header shown at this name: for a hard link, the
	// entry it links to. Nil for a directory the tar does not list.
	Entry *Entry
	// Layer holds the bytes of a file (in a merged tree, the layer the
	// name comes from); ID numbers its entry in that layer, -1 for an
	// unlisted directory. Layer and ID together identify the file: hard
	// links share them.
	Layer *Layer
	ID    int
	// Nlink is how many names the entry has in its layer (hard links);
	// for a directory, 2 plus its subdirectories.
	Nlink    int
	Children []*Node // of a directory, sorted by Name
}

// IsDir reports whether n is a directory.
func (n *Node) IsDir() bool { return n.Entry == nil || n.Entry.IsDir() }

// Child returns the child called name, or nil.
func (n *Node) Child(name string) *Node {
	i, ok := slices.BinarySearchFunc(n.Children, name, func(c *Node, name string) int {
		return strings.Compare(c.Name, name)
	})
	if !ok {
		return nil
	}
	return n.Children[i]
}

// Walk finds the node at a slash-separated path below n ("" is n).
func (n *Node) Walk(p string) *Node {
	if p == "" {
		return n
	}
	for _, name := range strings.Split(p, "/") {
		if n == nil || !n.IsDir() {
			return nil
		}
		n = n.Child(name)
	}
	return n
}

// CleanName is where a tar name lands inside the layer's directory:
// the name is cleaned as if the layer's root were "/", so a leading "/"
// is dropped and ".." stops at the root ("../../etc/passwd" is
// "etc/passwd"), as containerd does when it unpacks a layer. "" is the
// root itself. Names are never followed outside the tree.
func CleanName(name string) string {
	return path.Clean("/" + name)[1:]
}

// maxName is NAME_MAX: longer components cannot be shown.
const maxName = 255

// buildTree turns a layer's entries into its tree, as extracting the tar
// in order would leave it: later entries replace earlier ones of the same
// name (a directory over a directory keeps its children), missing parent
// directories are created, and hard links name the entry they link to.
// Entries whose names cannot be shown, and hard links to nothing, are
// skipped with a log line.
func buildTree(l *Layer, entries []Entry, log *slog.Logger) *Node {
	root := &Node{Layer: l, ID: -1}
	idx := map[*Node]map[string]*Node{} // children by name while building
	child := func(dir *Node, name string) *Node {
		if idx[dir] == nil {
			return nil
		}
		return idx[dir][name]
	}
	set := func(dir *Node, c *Node) {
		if idx[dir] == nil {
			idx[dir] = map[string]*Node{}
		}
		idx[dir][c.Name] = c
	}
	skip := func(e *Entry, why string) {
		log.Warn("tar entry not shown", "layer", l.Digest.String(), "name", e.Name, "why", why)
	}
	for i := range entries {
		e := &entries[i]
		p := CleanName(e.Name)
		if p == "" {
			if e.IsDir() {
				root.Entry, root.ID = e, i
			}
			continue
		}
		parts := strings.Split(p, "/")
		if slices.ContainsFunc(parts, func(s string) bool { return len(s) > maxName || strings.ContainsRune(s, 0) }) {
			skip(e, "name component longer than 255 bytes")
			continue
		}
		dir := root
		for _, name := range parts[:len(parts)-1] {
			c := child(dir, name)
			if c == nil || !c.IsDir() {
				// Extraction would create it (or fail on a file in the way:
				// the later entry wins here).
				c = &Node{Name: name, Layer: l, ID: -1}
				set(dir, c)
			}
			dir = c
		}
		n := &Node{Name: parts[len(parts)-1], Entry: e, Layer: l, ID: i}
		switch e.Type {
		case tar.TypeLink:
			t := root.walkIdx(CleanName(e.Linkname), child)
			if t == nil || t.IsDir() || t.Entry == nil {
				skip(e, "hard link to a name that is not an earlier file")
				continue
			}
			n.Entry, n.ID = t.Entry, t.ID
		case tar.TypeDir:
			if old := child(dir, n.Name); old != nil && old.IsDir() {
				old.Entry, old.ID = e, i // keeps its children
				continue
			}
		case tar.TypeXHeader, tar.TypeXGlobalHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			continue
		}
		set(dir, n)
	}
	// Children in name order; link counts.
	links := map[int]int{}
	var fill func(n *Node)
	fill = func(n *Node) {
		for _, c := range idx[n] {
			n.Children = append(n.Children, c)
		}
		slices.SortFunc(n.Children, func(a, b *Node) int { return strings.Compare(a.Name, b.Name) })
		n.Nlink = 2
		for _, c := range n.Children {
			if c.IsDir() {
				n.Nlink++
				fill(c)
			} else {
				links[c.ID]++
			}
		}
	}
	fill(root)
	var setLinks func(n *Node)
	setLinks = func(n *Node) {
		for _, c := range n.Children {
			if c.IsDir() {
				setLinks(c)
			} else {
				c.Nlink = links[c.ID]
			}
		}
	}
	setLinks(root)
	return root
}

// walkIdx is Walk on a tree still being built.
func (n *Node) walkIdx(p string, child func(*Node, string) *Node) *Node {
	if p == "" {
		return n
	}
	for _, name := range strings.Split(p, "/") {
		if n == nil || !n.IsDir() {
			return nil
		}
		n = child(n, name)
	}
	return n
}
