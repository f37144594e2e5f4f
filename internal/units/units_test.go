package units

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"0", 0, false},
		{"512", 512, false},
		{"1KiB", 1024, false},
		{"1k", 1024, false},
		{"10MB", 10_000_000, false},
		{"2GiB", 2 << 30, false},
		{"1.5M", 1572864, false},
		{"10B", 10, false},
		{"", 0, true},
		{"-1", 0, true},
		{"abc", 0, true},
		{"MiB", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
