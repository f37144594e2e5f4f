package main

import (
	"slices"
	"testing"
)

func TestWithoutFlag(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"prefetch", "--background", "/mnt/a"}, []string{"prefetch", "/mnt/a"}},
		{[]string{"pull", "--background=true", "--log-file", "x.log", "r:v1", "d"}, []string{"pull", "--log-file", "x.log", "r:v1", "d"}},
		{[]string{"prefetch", "--jobs", "2", "--", "--background"}, []string{"prefetch", "--jobs", "2", "--", "--background"}},
	} {
		if got := withoutFlag(c.in, "background"); !slices.Equal(got, c.want) {
			t.Errorf("withoutFlag(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
