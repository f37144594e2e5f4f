package fetch

import (
	"fmt"
	"testing"
)

func TestParseContentRange(t *testing.T) {
	for _, tc := range []struct {
		in                string
		start, end, total int64
		ok                bool
	}{
		{in: "bytes 0-0/1", start: 0, end: 0, total: 1, ok: true},
		{in: "bytes 100-199/1000", start: 100, end: 199, total: 1000, ok: true},
		{in: "bytes 5-9/*", start: 5, end: 9, total: -1, ok: true},
		{in: "bytes 9223372036854775806-9223372036854775806/9223372036854775807", start: 1<<63 - 2, end: 1<<63 - 2, total: 1<<63 - 1, ok: true},
		{in: "bytes */1000"},
		{in: "bytes 10-5/100"},
		{in: "bytes 0-100/100"},
		{in: "bytes 0-99/0"},
		{in: "bytes -1-5/100"},
		{in: "bytes +1-5/100"},
		{in: "bytes 1 -5/100"},
		{in: "bytes 0-9223372036854775808/*"},
		{in: "bytes=0-5/100"},
		{in: "items 0-5/100"},
		{in: "bytes 0-5"},
		{in: "bytes 0/100"},
		{in: "bytes 0-5/"},
		{in: "bytes 0-5/100/7"},
		{in: ""},
	} {
		start, end, total, err := parseContentRange(tc.in)
		if !tc.ok {
			if err == nil {
				t.Errorf("parseContentRange(%q) = %d, %d, %d; want error", tc.in, start, end, total)
			}
			continue
		}
		if err != nil || start != tc.start || end != tc.end || total != tc.total {
			t.Errorf("parseContentRange(%q) = %d, %d, %d, %v; want %d, %d, %d",
				tc.in, start, end, total, err, tc.start, tc.end, tc.total)
		}
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{
		"bytes 0-0/1", "bytes 100-199/1000", "bytes 5-9/*", "bytes */1000",
		"bytes 10-5/100", "bytes 0-9223372036854775807/*", "bytes -1-5/100", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, total, err := parseContentRange(s)
		if err != nil {
			return
		}
		if start < 0 || end < start || total < -1 || total >= 0 && end >= total {
			t.Fatalf("parseContentRange(%q) accepted %d, %d, %d", s, start, end, total)
		}
		// Accepted input is canonical: no signs, spaces or padding beyond
		// leading zeros, so formatting the values and parsing again agrees.
		canon := fmt.Sprintf("bytes %d-%d/%d", start, end, total)
		if total < 0 {
			canon = fmt.Sprintf("bytes %d-%d/*", start, end)
		}
		s2, e2, t2, err := parseContentRange(canon)
		if err != nil || s2 != start || e2 != end || t2 != total {
			t.Fatalf("round trip of %q via %q: %d, %d, %d, %v", s, canon, s2, e2, t2, err)
		}
	})
}
