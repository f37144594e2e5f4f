package fetch

import (
	"fmt"
	"strconv"
	"strings"
)

// parseContentRange parses a satisfied byte range as sent with a 206:
// "bytes <start>-<end>/<total>" or "bytes <start>-<end>/*". end is
// inclusive; total is -1 when the server wrote "*". It rejects anything else,
// including the unsatisfied form "bytes */<total>", start > end and
// end >= total.
func parseContentRange(s string) (start, end, total int64, err error) {
	bad := func(why string) (int64, int64, int64, error) {
		return 0, 0, 0, fmt.Errorf("content-range %q: %s", clip(s), why)
	}
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return bad("want unit \"bytes\"")
	}
	rng, size, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("missing /")
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return bad("missing -")
	}
	if start, err = parseUint(first); err != nil {
		return bad("start: " + err.Error())
	}
	if end, err = parseUint(last); err != nil {
		return bad("end: " + err.Error())
	}
	if start > end {
		return bad("start after end")
	}
	if size == "*" {
		return start, end, -1, nil
	}
	if total, err = parseUint(size); err != nil {
		return bad("length: " + err.Error())
	}
	if end >= total {
		return bad("end beyond length")
	}
	return start, end, total, nil
}

// parseUint accepts only ASCII digits (no sign, no spaces) that fit in an
// int64.
func parseUint(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("not a number")
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("out of range")
	}
	return v, nil
}
