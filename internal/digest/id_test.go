package digest

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/hashfs/hashfs/internal/hfserr"
)

func TestParseID(t *testing.T) {
	const h = "9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37"
	raw, _ := hex.DecodeString(h)
	sri := "sha256-" + base64.StdEncoding.EncodeToString(raw)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"hash://sha256/" + h, true},
		{"sha256:" + h, true},
		{h, true},
		{sri, true},
		{"hash://sha256/" + h[:63], false},
		{"hash://md5/" + h, false},
		{"sha256-" + base64.StdEncoding.EncodeToString(raw[:31]), false},
		{"sha256-not base64!", false},
		{"SHA256:" + h, false},
		{"", false},
		{"sha512-" + base64.StdEncoding.EncodeToString(raw), false},
	} {
		d, err := ParseID(tc.in)
		switch {
		case tc.ok && (err != nil || d.Hex() != h):
			t.Errorf("ParseID(%q) = %v, %v", tc.in, d, err)
		case !tc.ok && !errors.Is(err, hfserr.ErrInvalid):
			t.Errorf("ParseID(%q) err = %v, want ErrInvalid", tc.in, err)
		}
	}
}
