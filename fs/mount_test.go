package fs

import "testing"

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/mnt/data`:          "/mnt/data",
		`/mnt/my\040data`:    "/mnt/my data",
		`/mnt/tab\011x\134y`: "/mnt/tab\tx\\y",
		`/mnt/trailing\04`:   `/mnt/trailing\04`,
		`/mnt/not\999octal`:  `/mnt/not\999octal`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
