package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCompletionAndHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"completion", "bash"}, "__start_hashfs"},
		{[]string{"completion", "zsh"}, "#compdef hashfs"},
		{[]string{"mount", "--help"}, "--cache-max-size"},
		{[]string{"--help"}, "sha256/<ab>/<cd>/<hex>"},
	} {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(tc.args)
		if err := root.Execute(); err != nil || !strings.Contains(out.String(), tc.want) {
			t.Errorf("hashfs %v: %v; output lacks %q", tc.args, err, tc.want)
		}
	}
}
