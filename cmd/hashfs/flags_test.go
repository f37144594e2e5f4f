package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestCacheOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // substring of the error; "" means valid
	}{
		{nil, ""},
		{[]string{"--verify", "lazy", "--chunk-size", "4MiB", "--cache-max-size", "2G"}, ""},
		{[]string{"--verify", "weird"}, "--verify"},
		{[]string{"--chunk-size", "1"}, "--chunk-size"},
		{[]string{"--chunk-size", "128MiB"}, "--chunk-size"},
		{[]string{"--parallel", "0"}, "--parallel"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--log-format", "json"}, ""},
	} {
		o := &options{}
		fl := pflag.NewFlagSet("t", pflag.ContinueOnError)
		o.register(fl)
		if err := fl.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		co, err := o.cacheOptions(o.logger(), "r")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: unexpected error %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		case tc.want == "" && (co.ChunkSize < 64<<10 || co.MaxSize <= 0):
			t.Errorf("%v: bad defaults %+v", tc.args, co)
		}
	}
}

func TestBadSizeFlag(t *testing.T) {
	o := &options{}
	fl := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.register(fl)
	if err := fl.Parse([]string{"--cache-max-size", "12XB"}); err == nil {
		t.Fatal("12XB accepted")
	}
}

func TestLogFormat(t *testing.T) {
	for _, tc := range []struct{ format, prefix string }{{"json", `{"time":`}, {"text", "time="}} {
		var b strings.Builder
		newLogger(&b, tc.format, slog.LevelInfo).Info("mounted", "repository", "r")
		if !strings.HasPrefix(b.String(), tc.prefix) || !strings.Contains(b.String(), "mounted") {
			t.Errorf("%s log line %q", tc.format, b.String())
		}
	}
}
