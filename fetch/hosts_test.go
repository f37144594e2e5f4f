package fetch

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/hashfs/hashfs/internal/hfserr"
)

func TestLoadHosts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string // path under the hosts dir -> content
		host  string
		want  []Endpoint // CA paths relative to the hosts dir
		err   error
	}{
		{
			name: "no directory: the registry alone",
			host: "ghcr.io",
			want: []Endpoint{{Host: "ghcr.io", Capabilities: CapAll, Server: true}},
		},
		{
			name:  "directory without hosts.toml: certs.d CA files",
			host:  "registry.example:5000",
			files: map[string]string{"registry.example:5000/ca.crt": "x", "registry.example:5000/client.cert": "x"},
			want:  []Endpoint{{Host: "registry.example:5000", Capabilities: CapAll, Server: true, CA: []string{"registry.example:5000/ca.crt"}}},
		},
		{
			name: "mirrors in file order, then the server",
			host: "registry.example",
			files: map[string]string{"registry.example/hosts.toml": `
server = "https://registry.example"

[host."https://z-mirror.example"]
  capabilities = ["pull"]
  [host."https://z-mirror.example".header]
    x-custom = "ignored"

[host."http://10.0.0.5:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  ca = "mirror.pem"

[host."https://a-mirror.example/prefix"]
  capabilities = ["PULL"]

[host."https://odd.example/v2/upstream"]
  override_path = true
  ca = ["/abs/one.pem", "two.pem"]
`},
			want: []Endpoint{
				{Scheme: "https", Host: "z-mirror.example", Capabilities: CapPull},
				{Scheme: "http", Host: "10.0.0.5:5000", Capabilities: CapPull | CapResolve, SkipVerify: true, CA: []string{"registry.example/mirror.pem"}},
				{Scheme: "https", Host: "a-mirror.example", Path: "/prefix/v2", Capabilities: CapPull},
				{Scheme: "https", Host: "odd.example", Path: "/v2/upstream", Capabilities: CapAll, CA: []string{"/abs/one.pem", "registry.example/two.pem"}},
				{Scheme: "https", Host: "registry.example", Capabilities: CapAll, Server: true},
			},
		},
		{
			name: "no server: the registry itself, with top-level settings",
			host: "registry.example",
			files: map[string]string{"registry.example/hosts.toml": `
capabilities = ["pull", "resolve"]
[host."mirror.example"]
`},
			want: []Endpoint{
				{Scheme: "https", Host: "mirror.example", Capabilities: CapAll},
				{Host: "registry.example", Capabilities: CapPull | CapResolve, Server: true},
			},
		},
		{
			name: "dotted keys keep their order too",
			host: "registry.example",
			files: map[string]string{"registry.example/hosts.toml": `
[host]
"https://b.example".capabilities = ["pull"]
"https://a.example".capabilities = ["pull"]
"https://b.example".skip_verify = true
`},
			want: []Endpoint{
				{Scheme: "https", Host: "b.example", Capabilities: CapPull, SkipVerify: true},
				{Scheme: "https", Host: "a.example", Capabilities: CapPull},
				{Host: "registry.example", Capabilities: CapAll, Server: true},
			},
		},
		{
			name: "port directory in containerd's spelling wins",
			host: "registry.example:5000",
			files: map[string]string{
				"registry.example_5000_/hosts.toml": `server = "https://first.example"`,
				"registry.example:5000/hosts.toml":  `server = "https://second.example"`,
			},
			want: []Endpoint{{Scheme: "https", Host: "first.example", Capabilities: CapAll, Server: true}},
		},
		{
			name:  "host:port directory",
			host:  "registry.example:5000",
			files: map[string]string{"registry.example:5000/hosts.toml": `server = "http://plain.example:5000"`},
			want:  []Endpoint{{Scheme: "http", Host: "plain.example:5000", Capabilities: CapAll, Server: true}},
		},
		{
			name:  "_default applies to any registry",
			host:  "quay.io",
			files: map[string]string{"_default/hosts.toml": `[host."https://all.example"]`},
			want: []Endpoint{
				{Scheme: "https", Host: "all.example", Capabilities: CapAll},
				{Host: "quay.io", Capabilities: CapAll, Server: true},
			},
		},
		{
			name:  "Docker Hub lives in docker.io",
			host:  "index.docker.io",
			files: map[string]string{"docker.io/hosts.toml": `[host."https://mirror.gcr.io"]` + "\ncapabilities = [\"pull\"]"},
			want: []Endpoint{
				{Scheme: "https", Host: "mirror.gcr.io", Capabilities: CapPull},
				{Host: "index.docker.io", Capabilities: CapAll, Server: true},
			},
		},
		{
			name:  "inline tables keep their order too",
			host:  "registry.example",
			files: map[string]string{"registry.example/hosts.toml": `host = { "https://b.example" = {}, "https://a.example" = { capabilities = ["pull"] } }`},
			want: []Endpoint{
				{Scheme: "https", Host: "b.example", Capabilities: CapAll},
				{Scheme: "https", Host: "a.example", Capabilities: CapPull},
				{Host: "registry.example", Capabilities: CapAll, Server: true},
			},
		},
		{name: "unknown capability", host: "r.example", files: map[string]string{"r.example/hosts.toml": `capabilities = ["fly"]`}, err: hfserr.ErrInvalid},
		{name: "bad TOML", host: "r.example", files: map[string]string{"r.example/hosts.toml": `[host."x`}, err: hfserr.ErrInvalid},
		{name: "bad scheme", host: "r.example", files: map[string]string{"r.example/hosts.toml": `[host."ftp://m.example"]`}, err: hfserr.ErrInvalid},
		{name: "userinfo in host URL", host: "r.example", files: map[string]string{"r.example/hosts.toml": `server = "https://u:p@m.example"`}, err: hfserr.ErrInvalid},
		{name: "bad ca type", host: "r.example", files: map[string]string{"r.example/hosts.toml": `ca = 7`}, err: hfserr.ErrInvalid},
		{name: "host escaping the directory", host: "../etc", err: hfserr.ErrInvalid},
		{name: "host naming the fallback", host: "_default", err: hfserr.ErrInvalid},
		{name: "empty host", host: "", err: hfserr.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, content := range tc.files {
				full := filepath.Join(dir, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := LoadHosts(dir, tc.host)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("LoadHosts = %+v, %v; want %v", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.want {
				for j, ca := range tc.want[i].CA {
					if !filepath.IsAbs(ca) {
						tc.want[i].CA[j] = filepath.Join(dir, ca)
					}
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("LoadHosts =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestEndpoint(t *testing.T) {
	for _, tc := range []struct {
		ep   Endpoint
		str  string
		caps string
		pull bool
		res  bool
	}{
		{ep: Endpoint{Host: "r.example"}, str: "https://r.example/v2", caps: "", pull: true, res: true},
		{ep: Endpoint{Scheme: "http", Host: "m:5000", Path: "/p/v2", Capabilities: CapPull}, str: "http://m:5000/p/v2", caps: "pull", pull: true},
		{ep: Endpoint{Host: "m", Capabilities: CapResolve | CapPush}, str: "https://m/v2", caps: "resolve,push", res: true},
	} {
		if s := tc.ep.String(); s != tc.str {
			t.Errorf("String() = %q, want %q", s, tc.str)
		}
		if s := tc.ep.Capabilities.String(); s != tc.caps {
			t.Errorf("Capabilities = %q, want %q", s, tc.caps)
		}
		if tc.ep.Can(CapPull) != tc.pull || tc.ep.Can(CapResolve) != tc.res {
			t.Errorf("%s: Can(pull), Can(resolve) = %v, %v", tc.str, tc.ep.Can(CapPull), tc.ep.Can(CapResolve))
		}
	}
	for _, bad := range []Endpoint{
		{Scheme: "ftp", Host: "m"},
		{Host: "m", Path: "v2"},
		{Host: "m", Path: "/a/../v2"},
		{Host: "m", Path: "/v2?x=1"},
		{Host: "m/x"},
		{Host: "m", CA: []string{"/nonexistent/ca.pem"}},
	} {
		if _, err := New("r.example/repo", Options{Endpoint: bad}); !errors.Is(err, hfserr.ErrInvalid) {
			t.Errorf("New with endpoint %+v: %v, want ErrInvalid", bad, err)
		}
	}
}
