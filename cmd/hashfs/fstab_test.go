package main

import (
	"slices"
	"strings"
	"testing"
)

func TestFstabArgs(t *testing.T) {
	m := newMountCmd()
	for _, tc := range []struct {
		opts string
		want []string // between "mount" and SOURCE MOUNTPOINT
		err  string
	}{
		{"", nil, ""},
		{"ro,nosuid,nodev,noauto,_netdev,x-systemd.automount,defaults", nil, ""},
		{"cache_dir=/var/cache/hashfs,verify=lazy", []string{"--cache-dir=/var/cache/hashfs", "--verify=lazy"}, ""},
		{"allow_other,cache-max-size=20GiB", []string{"--allow-other=true", "--cache-max-size=20GiB"}, ""},
		{"no_such=1", nil, "no --no-such flag"},
		{"cache_dir", nil, "needs a value"},
		{"daemon", nil, "no --daemon flag"},
	} {
		got, err := fstabArgs(m, "ghcr.io/a/b", "/mnt/x", tc.opts)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.opts, err, tc.err)
			}
			continue
		}
		want := append(append([]string{"mount"}, tc.want...), "ghcr.io/a/b", "/mnt/x")
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%q = %v, %v; want %v", tc.opts, got, err, want)
		}
	}
	if got := logFileArg([]string{"mount", "--log-file=/var/log/h.log", "a", "b"}); got != "/var/log/h.log" {
		t.Errorf("logFileArg = %q", got)
	}
}
