package fs

import (
	"strings"
	"testing"
)

const vostokHex = "9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37"

func TestParseShardName(t *testing.T) {
	for _, tc := range []struct {
		prefix, name string
		sub          string
		digest       bool
		ok           bool
	}{
		{"", vostokHex, "", true, true},
		{"", "94", "94", false, true},
		{"94", "12", "9412", false, true},
		{"9412", vostokHex, "", true, true},
		{"9412", "32", "", false, false}, // no third level
		{"94", vostokHex, "", true, true},
		{"ab", vostokHex, "", false, false}, // wrong shard
		{"", "9G", "", false, false},
		{"", "AB", "", false, false},
		{"", strings.ToUpper(vostokHex), "", false, false},
		{"", "..", "", false, false},
		{"", "sha256:" + vostokHex, "", false, false},
		{"", vostokHex + "0", "", false, false},
		{"", "", "", false, false},
	} {
		sub, d, ok := parseShardName(tc.prefix, tc.name)
		if ok != tc.ok || sub != tc.sub || (tc.digest && d.Hex() != tc.name) || (!tc.digest && !d.IsZero()) {
			t.Errorf("parseShardName(%q, %q) = %q, %v, %v", tc.prefix, tc.name, sub, d, ok)
		}
	}
}

func FuzzLookupName(f *testing.F) {
	for _, s := range []string{vostokHex, "94", "..", "sha256:" + vostokHex, "\x00", strings.Repeat("a", 4096)} {
		f.Add("", s)
		f.Add("9412", s)
	}
	f.Fuzz(func(t *testing.T, prefix, name string) {
		if len(prefix)%2 != 0 || len(prefix) > 4 || !isHex(prefix) {
			t.Skip("fs only builds shard directories with prefixes \"\", <ab> and <abcd>")
		}
		sub, d, ok := parseShardName(prefix, name)
		if !ok {
			return
		}
		if sub != "" && (len(sub) > 4 || !isHex(sub) || !strings.HasPrefix(sub, prefix)) {
			t.Fatalf("bad shard %q from %q/%q", sub, prefix, name)
		}
		if sub == "" && (d.Hex() != name || !strings.HasPrefix(name, prefix)) {
			t.Fatalf("digest %s from %q/%q", d, prefix, name)
		}
	})
}
