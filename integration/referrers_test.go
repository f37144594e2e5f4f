package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// orasVersion is the oras the tests use; `make deps` installs it.
const orasVersion = "v1.3.6"

// needOras returns the oras binary: on PATH, or where `go install` put it.
func needOras(t *testing.T) string {
	t.Helper()
	return needGoTool(t, "oras", "oras.land/oras/cmd/oras@"+orasVersion)
}

// needGoTool returns the binary name: on PATH, or in GOBIN or GOPATH/bin,
// where `go install pkg` (which `make deps` runs) puts it.
func needGoTool(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	var dirs []string
	for _, v := range []string{"GOBIN", "GOPATH"} {
		out, err := exec.Command("go", "env", v).Output()
		if s := strings.TrimSpace(string(out)); err == nil && s != "" {
			if v == "GOPATH" {
				s = filepath.Join(filepath.SplitList(s)[0], "bin")
			}
			dirs = append(dirs, s)
		}
	}
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p
		}
	}
	missing(t, "%s (go install %s; `make deps` does) not on PATH nor in %v", name, pkg, dirs)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// orasCLI runs oras with its own empty Docker config.
type orasCLI struct {
	t   *testing.T
	bin string
	env []string
	dir string // working directory: the files pushed are here
}

func newOras(t *testing.T) *orasCLI {
	return &orasCLI{t: t, bin: needOras(t), env: append(os.Environ(), "DOCKER_CONFIG="+t.TempDir()), dir: t.TempDir()}
}

// file writes a file to push and returns its name.
func (o *orasCLI) file(name, content string) string {
	o.t.Helper()
	if err := os.WriteFile(filepath.Join(o.dir, name), []byte(content), 0o644); err != nil {
		o.t.Fatal(err)
	}
	return name
}

// run runs oras with args and returns its trimmed standard output.
func (o *orasCLI) run(args ...string) string {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.bin, args...)
	cmd.Dir, cmd.Env = o.dir, o.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		o.t.Fatalf("oras %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// digestOf runs an oras push or attach and returns the manifest digest.
func (o *orasCLI) digestOf(args ...string) string {
	o.t.Helper()
	d := o.run(append(args, "--format", "go-template", "--template", "{{.digest}}")...)
	if !strings.HasPrefix(d, "sha256:") || len(d) != 71 {
		o.t.Fatalf("oras %s printed %q, not a digest", strings.Join(args, " "), d)
	}
	return d
}

// startGGCRReferrers is startGGCR with the referrers API on, counting the
// requests to it and to referrers tags (sha256-<hex>).
func startGGCRReferrers(t *testing.T, api, tags *atomic.Int64) string {
	t.Helper()
	reg := registry.New(registry.Logger(quietLogger), registry.WithReferrersSupport(true))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/referrers/"):
			api.Add(1)
		case strings.Contains(r.URL.Path, "/manifests/sha256-"):
			tags.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// referrersAPIStatus is the status of GET /v2/<repo>/referrers/<digest>.
func referrersAPIStatus(t *testing.T, host, repo, d string) int {
	t.Helper()
	resp, err := http.Get("http://" + host + "/v2/" + repo + "/referrers/" + d)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestReferrers(t *testing.T) {
	needFUSE(t)
	needTool(t, "getfattr")
	t.Run("distribution: referrers tag schema", func(t *testing.T) {
		host, _ := startDistribution(t)
		checkReferrers(t, host, "", nil, nil)
	})
	t.Run("ggcr: referrers API", func(t *testing.T) {
		var api, tags atomic.Int64
		host := startGGCRReferrers(t, &api, &tags)
		checkReferrers(t, host, "v1.1-referrers-api", &api, &tags)
	})
	t.Run("OCI layout", checkLayoutReferrers)
}

// checkReferrers pushes an artifact and two referrers with oras to host
// (spec: oras --distribution-spec, "" for its default), mounts the
// repository and checks referrers/, subject and the xattrs, then that a
// third referrer shows once the tag TTL has passed. api and tags, if set,
// count the registry's referrers API and referrers tag requests: hashfs
// must use the API only.
func checkReferrers(t *testing.T, host, spec string, api, tags *atomic.Int64) {
	const (
		repoPath = "lab/referrers"
		ttl      = 2 * time.Second
		dataType = "application/vnd.hashfs.test.data"
		sbomType = "application/spdx+json"
		sigType  = "application/vnd.hashfs.test.signature"
		attType  = "application/vnd.in-toto+json"
	)
	repo := host + "/" + repoPath
	o := newOras(t)
	data := o.file("co2.csv", "year,ppmv\n1958,315.3\n")
	ann := o.file("annotations.json", `{"$manifest":{"org.example.owner":"lab","org.example.note":"ice cores"},"co2.csv":{"org.example.units":"ppmv"}}`)
	subject := o.digestOf("push", "--plain-http", repo+":v1", "--artifact-type", dataType, "--annotation-file", ann, data+":text/csv")
	attach := func(artifactType, file, kind string) string {
		args := []string{"attach", "--plain-http", repo + "@" + subject, "--artifact-type", artifactType, "--annotation", "org.example.kind=" + kind, file}
		if spec != "" {
			args = append(args, "--distribution-spec", spec)
		}
		return o.digestOf(args...)
	}
	sbom := attach(sbomType, o.file("sbom.spdx.json", `{"spdxVersion":"SPDX-2.3"}`), "sbom")
	sig := attach(sigType, o.file("sig.bin", "not really a signature"), "signature")
	if spec == "" {
		if code := referrersAPIStatus(t, host, repoPath, subject); code != http.StatusNotFound {
			t.Fatalf("this registry answers the referrers API with %d: the tag schema is not what is tested", code)
		}
	}

	if api != nil {
		api.Store(0) // from here on, only hashfs asks
		tags.Store(0)
	}
	m := mount(t, repo, "--tag-ttl", ttl.String())
	subjectDir := m.path("manifests/" + subject)
	refDir := filepath.Join(subjectDir, "referrers")
	names := func() []string {
		t.Helper()
		ents, err := os.ReadDir(refDir)
		if err != nil {
			t.Fatalf("ls %s: %v", refDir, err)
		}
		var out []string
		for _, e := range ents {
			if e.Type() != os.ModeSymlink {
				t.Errorf("referrers/%s is %v, want a symlink", e.Name(), e.Type())
			}
			out = append(out, e.Name())
		}
		return out
	}
	listedAt := time.Now()
	got := names()
	want := []string{"application_spdx+json-" + sbom, "application_vnd.hashfs.test.signature-" + sig}
	if !slices.Equal(got, want) {
		t.Fatalf("referrers/ lists %q, want %q", got, want)
	}
	if api != nil && api.Load() == 0 {
		t.Error("hashfs listed referrers without asking the referrers API")
	}
	if tags != nil && tags.Load() != 0 {
		t.Errorf("%d requests for referrers tags: the API answers, no fallback is needed", tags.Load())
	}
	if out := runCmd(t, "ls", refDir); !strings.Contains(out, want[0]) || !strings.Contains(out, want[1]) {
		t.Errorf("ls %s:\n%s", refDir, out)
	}

	t.Run("links resolve and subject links back", func(t *testing.T) {
		for i, d := range []string{sbom, sig} {
			link := filepath.Join(refDir, want[i])
			if target, err := os.Readlink(link); err != nil || target != "../../"+d {
				t.Errorf("readlink %s = %q, %v; want ../../%s", want[i], target, err, d)
			}
			real, err := filepath.EvalSymlinks(link)
			if err != nil || real != m.path("manifests/"+d) {
				t.Errorf("%s resolves to %q, %v; want manifests/%s", want[i], real, err, d)
			}
			raw := mustRead(t, filepath.Join(link, "manifest.json"))
			if got := "sha256:" + sha256Hex(raw); got != d {
				t.Errorf("%s/manifest.json hashes to %s", want[i], got)
			}
			var doc struct {
				Subject struct{ Digest string } `json:"subject"`
			}
			if err := json.Unmarshal(raw, &doc); err != nil || doc.Subject.Digest != subject {
				t.Errorf("%s/manifest.json has subject %q, %v", want[i], doc.Subject.Digest, err)
			}
			back := filepath.Join(m.path("manifests/"+d), "subject")
			if target, err := os.Readlink(back); err != nil || target != "../"+subject {
				t.Errorf("readlink manifests/%s/subject = %q, %v; want ../%s", d, target, err, subject)
			}
			if real, err := filepath.EvalSymlinks(back); err != nil || real != subjectDir {
				t.Errorf("manifests/%s/subject resolves to %q, %v; want %s", d, real, err, subjectDir)
			}
		}
		if _, err := os.Lstat(filepath.Join(subjectDir, "subject")); !os.IsNotExist(err) {
			t.Errorf("the subject itself has a subject link: %v", err)
		}
	})

	t.Run("xattrs", func(t *testing.T) {
		// The blob is looked up through sha256/ first: it has no
		// descriptor there, so no title; the titled path below still
		// answers its own descriptor's (same inode number).
		blob := m.path("sha256/" + sha256Hex([]byte("year,ppmv\n1958,315.3\n")))
		if _, err := getxattr(blob, "user.oci.annotation.org.opencontainers.image.title"); err == nil {
			t.Errorf("%s carries the title of a descriptor", blob)
		}
		if got, err := getxattr(blob, "user.oci.mediaType"); err != nil || got != "text/csv" {
			t.Errorf("getxattr %s user.oci.mediaType = %q, %v; want text/csv", blob, got, err)
		}
		if a, b := inode(t, blob), inode(t, m.path("tags/v1/co2.csv")); a != b {
			t.Errorf("inode numbers differ between sha256/ (%d) and the titled path (%d)", a, b)
		}
		wantAttrs := map[string]map[string]string{
			subjectDir: {
				"user.oci.artifactType":                 dataType,
				"user.oci.mediaType":                    "application/vnd.oci.image.manifest.v1+json",
				"user.oci.annotation.org.example.owner": "lab",
				"user.oci.annotation.org.example.note":  "ice cores",
			},
			filepath.Join(refDir, want[0]) + "/": { // through the link: the referrer's directory
				"user.oci.artifactType":                sbomType,
				"user.oci.subject":                     subject,
				"user.oci.annotation.org.example.kind": "sbom",
			},
			filepath.Join(refDir, want[1], "manifest.json"): {
				"user.oci.artifactType":                sigType,
				"user.oci.subject":                     subject,
				"user.oci.annotation.org.example.kind": "signature",
			},
			m.path("tags/v1/co2.csv"): {
				"user.oci.mediaType": "text/csv",
				"user.oci.annotation.org.opencontainers.image.title": "co2.csv",
				"user.oci.annotation.org.example.units":              "ppmv",
				"user.hashfs.mediatype":                              "text/csv",
			},
		}
		for path, attrs := range wantAttrs {
			names := listxattr(t, path)
			for name, w := range attrs {
				if !slices.Contains(names, name) {
					t.Errorf("listxattr %s = %q, missing %s", path, names, name)
				}
				if got, err := getxattr(path, name); err != nil || got != w {
					t.Errorf("getxattr %s %s = %q, %v; want %q", path, name, got, err, w)
				}
			}
		}
		out := runCmd(t, "getfattr", "-d", "-m", "user.oci", filepath.Join(refDir, want[0])+"/")
		for _, w := range []string{`user.oci.artifactType="` + sbomType + `"`, `user.oci.annotation.org.example.kind="sbom"`} {
			if !strings.Contains(out, w) {
				t.Errorf("getfattr -d of the SBOM referrer does not show %s:\n%s", w, out)
			}
		}
	})

	t.Run("a new referrer shows after the tag TTL", func(t *testing.T) {
		att := attach(attType, o.file("att.json", `{"_type":"https://in-toto.io/Statement/v1"}`), "attestation")
		name := "application_vnd.in-toto+json-" + att
		if time.Since(listedAt) < ttl-500*time.Millisecond && slices.Contains(names(), name) {
			t.Errorf("%s listed within the TTL of the last answer", name)
		}
		deadline := time.Now().Add(ttl + 10*time.Second)
		for !slices.Contains(names(), name) {
			if time.Now().After(deadline) {
				t.Fatalf("%s not listed %v after it was attached: %q", name, ttl+10*time.Second, names())
			}
			time.Sleep(200 * time.Millisecond)
		}
		if real, err := filepath.EvalSymlinks(filepath.Join(refDir, name)); err != nil || real != m.path("manifests/"+att) {
			t.Errorf("%s resolves to %q, %v", name, real, err)
		}
	})
}

// checkLayoutReferrers attaches a referrer in an OCI image layout with
// oras and reads it through a mount of the layout.
func checkLayoutReferrers(t *testing.T) {
	o := newOras(t)
	layout := t.TempDir()
	subject := o.digestOf("push", "--oci-layout", layout+":v1", "--artifact-type", "application/vnd.hashfs.test.data", o.file("a.txt", "a\n"))
	sig := o.digestOf("attach", "--oci-layout", layout+"@"+subject, "--artifact-type", "application/vnd.hashfs.test.signature",
		"--annotation", "org.example.kind=signature", o.file("sig.bin", "sig"))
	m := mount(t, "oci:"+layout)
	refDir := m.path("manifests/" + subject + "/referrers")
	ents, err := os.ReadDir(refDir)
	if err != nil {
		t.Fatal(err)
	}
	name := "application_vnd.hashfs.test.signature-" + sig
	if len(ents) != 1 || ents[0].Name() != name {
		t.Fatalf("referrers/ of the layout's artifact: %v, want [%s]", ents, name)
	}
	if got, err := getxattr(filepath.Join(refDir, name)+"/", "user.oci.annotation.org.example.kind"); err != nil || got != "signature" {
		t.Errorf("the referrer's annotation: %q, %v", got, err)
	}
	if real, err := filepath.EvalSymlinks(m.path("manifests/" + sig + "/subject")); err != nil || real != m.path("manifests/"+subject) {
		t.Errorf("subject resolves to %q, %v", real, err)
	}
}
