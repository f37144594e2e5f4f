package manifestview

import (
	"slices"
	"strings"

	"github.com/hashfs/hashfs/internal/digest"
)

// Fixed names in a manifest's directory. Titles never take them.
const (
	nameManifest = "manifest.json"
	nameIndex    = "index.json"
	nameConfig   = "config.json"
	nameBlobs    = "blobs"
	// NameSubject is the symlink to the manifest a referrer refers to.
	NameSubject = "subject"
	// NameReferrers is the directory of the manifests that refer to this one.
	NameReferrers = "referrers"
	// AnnotationTitle is the annotation ORAS uses to name a file.
	AnnotationTitle = "org.opencontainers.image.title"
)

const (
	maxNameLen = 255  // bytes per path component (NAME_MAX)
	maxPathLen = 4095 // bytes per title (PATH_MAX less the NUL)
)

// Build turns one manifest or index document into the tree shown at
// manifests/sha256:<hex>/.
//
// A manifest shows manifest.json (the document), config.json (unless the
// config is the OCI empty descriptor), one file per titled layer or blob
// at its title, and blobs/sha256:<hex> for every config/layer/blob
// descriptor. An index (OCI index, Docker manifest list) shows
// index.json and one symlink per entry, named <os>-<arch>[-<variant>]
// and pointing at ../sha256:<child>; an entry with no usable platform,
// or whose platform name is taken by an earlier entry, is named
// sha256:<child>. A document of unknown media type is a manifest if it
// has a config, layers or blobs, an index if it has only manifests.
//
// Every document also shows referrers/ (Kind Referrers: the manifests
// whose subject it is, listed on use) and, when it has an OCI 1.1
// subject, a symlink subject to ../sha256:<subject>. The root's Desc is
// the document's own, with its annotations, artifactType and subject.
//
// Titles may be relative paths ("data/a.csv" makes data/). A title that
// is unsafe (see safeTitle), starts with a fixed name (manifest.json,
// index.json, config.json, blobs, subject, referrers, layers, rootfs) or a "sha256:<hex>" name, or collides
// with an earlier title (as a file or as a directory) is shown at the
// top-level name "sha256:<hex>" instead; the same title and digest
// twice is one file.
//
// Errors: a body that is not a JSON object, or has fields of the wrong
// JSON type, wraps hfserr.ErrInvalid. A descriptor with a missing,
// malformed, zero or non-sha256 digest or a negative size is skipped
// and the rest of the document is shown. Build never panics.
func Build(doc Doc) (*Node, error) {
	b, err := build(doc)
	if err != nil {
		return nil, err
	}
	return b.root, nil
}

// built is what build learns from a document.
type built struct {
	root    *Node
	seen    []Desc   // the document itself first, then config, layers, blobs or entries
	skipped int      // invalid descriptors left out
	dropped []string // metadata not shown as extended attributes, and why
}

// build is Build that also returns every descriptor it saw.
func build(doc Doc) (built, error) {
	p, err := parse(doc)
	if err != nil {
		return built{}, err
	}
	if doc.Digest.IsZero() {
		doc.Digest = digest.Of(doc.Body)
	}
	self := Desc{Digest: doc.Digest, Size: int64(len(doc.Body)), MediaType: p.mediaType,
		Annotations: p.annotations, ArtifactType: p.artifactType}
	t := newTree()
	t.root.Desc = self
	seen := []Desc{self}
	t.insert(t.root, &Node{Name: NameReferrers, Kind: Referrers, Desc: self})
	if p.subject != nil {
		self.Subject = p.subject.Digest
		t.root.Desc = self
		t.insert(t.root, &Node{Name: NameSubject, Kind: Symlink, Target: "../" + p.subject.Digest.String(), Desc: *p.subject})
		seen = append(seen, *p.subject)
	}
	_, dropped := Attrs(self)
	if p.kind == kindIndex {
		t.insert(t.root, &Node{Name: nameIndex, Kind: File, Desc: self})
		for _, m := range p.manifests {
			t.addPlatform(m)
		}
		seen = append(seen, p.manifests...)
		return built{root: t.finish(), seen: seen, skipped: p.skipped, dropped: dropped}, nil
	}

	t.insert(t.root, &Node{Name: nameManifest, Kind: File, Desc: self})
	blobs := &Node{Name: nameBlobs, Kind: Dir}
	t.insert(t.root, blobs)
	all := p.layers
	if p.config != nil {
		all = append([]Desc{*p.config}, p.layers...)
		if !isEmptyDesc(*p.config) {
			t.insert(t.root, &Node{Name: nameConfig, Kind: File, Desc: *p.config})
		}
	}
	for _, d := range all {
		if t.lookup(blobs, d.Digest.String()) == nil {
			t.insert(blobs, &Node{Name: d.Digest.String(), Kind: File, Desc: d})
		}
		_, why := Attrs(d)
		dropped = append(dropped, why...)
	}
	for _, d := range p.layers {
		if title, ok := d.Annotations[AnnotationTitle]; ok {
			t.addTitled(title, d)
		}
	}
	t.addLayers(doc, self)
	seen = append(seen, all...)
	return built{root: t.finish(), seen: seen, skipped: p.skipped, dropped: dropped}, nil
}

func isEmptyDesc(d Desc) bool {
	return d.MediaType == MediaTypeEmpty || d.Digest == emptyDigest
}

// tree builds Nodes with a name index per directory, then sorts.
type tree struct {
	root *Node
	idx  map[*Node]map[string]*Node
}

func newTree() *tree {
	return &tree{root: &Node{Kind: Dir}, idx: map[*Node]map[string]*Node{}}
}

func (t *tree) lookup(dir *Node, name string) *Node {
	m := t.idx[dir]
	if m == nil {
		m = make(map[string]*Node, len(dir.Children))
		for _, c := range dir.Children {
			m[c.Name] = c
		}
		t.idx[dir] = m
	}
	return m[name]
}

// insert adds c to dir; the caller has checked the name is free.
func (t *tree) insert(dir *Node, c *Node) {
	t.lookup(dir, c.Name) // make sure the index exists
	t.idx[dir][c.Name] = c
	dir.Children = append(dir.Children, c)
}

// addTitled places d at title, or at the top-level fallback name.
func (t *tree) addTitled(title string, d Desc) {
	if parts, ok := safeTitle(title); ok && t.place(parts, d) {
		return
	}
	t.addFallback(&Node{Name: d.Digest.String(), Kind: File, Desc: d})
}

// place creates parts (directories, then the file) if nothing is in
// the way; it checks the whole path before creating anything.
func (t *tree) place(parts []string, d Desc) bool {
	dir := t.root
	for i, name := range parts {
		if dir == t.root && reserved(name) {
			return false
		}
		c := t.lookup(dir, name)
		if i == len(parts)-1 {
			// The same title and digest twice is one file.
			return c == nil && t.create(parts, d) ||
				c != nil && c.Kind == File && c.Desc.Digest == d.Digest
		}
		if c == nil {
			return t.create(parts, d)
		}
		if c.Kind != Dir {
			return false
		}
		dir = c
	}
	return false // not reached: the loop returns at the last part
}

// create makes the directories of parts as needed and the file.
func (t *tree) create(parts []string, d Desc) bool {
	dir := t.root
	for _, name := range parts[:len(parts)-1] {
		c := t.lookup(dir, name)
		if c == nil {
			c = &Node{Name: name, Kind: Dir}
			t.insert(dir, c)
		}
		dir = c
	}
	t.insert(dir, &Node{Name: parts[len(parts)-1], Kind: File, Desc: d})
	return true
}

// addFallback adds a top-level "sha256:<hex>" entry. Only fallbacks use
// such names (titles and platforms that look like one are refused), so
// an existing entry is the same digest: keep the first.
func (t *tree) addFallback(n *Node) {
	if t.lookup(t.root, n.Name) == nil {
		t.insert(t.root, n)
	}
}

// addPlatform adds an index entry as <os>-<arch>[-<variant>] or, with
// no usable platform or a duplicate name, as sha256:<child>.
func (t *tree) addPlatform(m Desc) {
	target := "../" + m.Digest.String()
	if name, ok := platformName(m.Platform); ok && !reserved(name) && t.lookup(t.root, name) == nil {
		t.insert(t.root, &Node{Name: name, Kind: Symlink, Target: target, Desc: m})
		return
	}
	t.addFallback(&Node{Name: m.Digest.String(), Kind: Symlink, Target: target, Desc: m})
}

func platformName(p *Platform) (string, bool) {
	if p == nil || p.OS == "" || p.Architecture == "" {
		return "", false
	}
	name := p.OS + "-" + p.Architecture
	if p.Variant != "" {
		name += "-" + p.Variant
	}
	if strings.Contains(name, "/") || !validComponent(name) {
		return "", false
	}
	return name, true
}

// reserved reports names a title or platform may not take at the top
// level: the fixed names and anything shaped like a fallback name.
func reserved(name string) bool {
	switch name {
	case nameManifest, nameIndex, nameConfig, nameBlobs, NameSubject, NameReferrers, NameLayers, NameRootfs:
		return true
	}
	_, err := digest.Parse(name)
	return err == nil
}

// safeTitle splits an ORAS title into path components. It refuses
// NUL, a leading "/", empty, "." and ".." components, components over
// 255 bytes and titles over 4095 bytes.
func safeTitle(title string) ([]string, bool) {
	if title == "" || len(title) > maxPathLen || strings.HasPrefix(title, "/") {
		return nil, false
	}
	parts := strings.Split(title, "/")
	for _, p := range parts {
		if !validComponent(p) {
			return nil, false
		}
	}
	return parts, true
}

func validComponent(p string) bool {
	return p != "" && p != "." && p != ".." && len(p) <= maxNameLen && !strings.ContainsRune(p, 0)
}

// finish sorts every directory and returns the root.
func (t *tree) finish() *Node {
	var sortDir func(n *Node)
	sortDir = func(n *Node) {
		slices.SortFunc(n.Children, func(a, b *Node) int { return strings.Compare(a.Name, b.Name) })
		for _, c := range n.Children {
			if c.Kind == Dir {
				sortDir(c)
			}
		}
	}
	sortDir(t.root)
	return t.root
}
