package digest

import (
	"errors"
	"testing"

	"github.com/hashfs/hashfs/internal/hfserr"
)

func TestParse(t *testing.T) {
	const vostok = "9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37"
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"sha256:" + vostok, true},
		{vostok, false},
		{"sha256:" + vostok[:63], false},
		{"sha256:" + vostok + "0", false},
		{"sha256:" + "9412325831DAB22AEEBDD674B6EB53BA6B7BDD04BB99A4DBB21DDFF646287E37", false},
		{"sha512:" + vostok, false},
		{"sha256:../" + vostok[3:], false},
		{"", false},
	} {
		d, err := Parse(tc.in)
		if tc.ok {
			if err != nil || d.String() != tc.in {
				t.Errorf("Parse(%q) = %v, %v", tc.in, d, err)
			}
			continue
		}
		if !errors.Is(err, hfserr.ErrInvalid) {
			t.Errorf("Parse(%q) err = %v, want ErrInvalid", tc.in, err)
		}
	}
}

func TestIno(t *testing.T) {
	a := Of([]byte("a"))
	b := Of([]byte("b"))
	if a.Ino(1) == b.Ino(1) || a.Ino(1) == a.Ino(2) {
		t.Fatal("inode numbers collide")
	}
	if a.Ino(1)>>63 != 1 || a.Ino(1) != a.Ino(1) {
		t.Fatal("inode number not stable or top bit unset")
	}
}

func FuzzParseHex(f *testing.F) {
	f.Add("9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseHex(s)
		if err == nil && d.Hex() != s {
			t.Fatalf("round trip %q -> %q", s, d.Hex())
		}
	})
}
