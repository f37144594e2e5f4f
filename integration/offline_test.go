package integration

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestOfflineReferrers: the referrers a mount listed are kept in its cache
// directory, so that a later daemon lists the same ones, with working
// links both ways, when started with --offline and when its registry
// (docker-registry, referrers in the tag schema) stops answering.
func TestOfflineReferrers(t *testing.T) {
	needFUSE(t)
	host, _ := startDistribution(t)
	proxy := newFaultProxy(t, host) // taken down to stop the registry
	const repoPath = "lab/referrers"
	o := newOras(t)
	subject := o.digestOf("push", "--plain-http", host+"/"+repoPath+":v1", "--artifact-type", "application/vnd.hashfs.test.data",
		o.file("co2.csv", "year,ppmv\n1958,315.3\n")+":text/csv")
	attach := func(artifactType, file string) string {
		return o.digestOf("attach", "--plain-http", host+"/"+repoPath+"@"+subject, "--artifact-type", artifactType, file)
	}
	sbom := attach("application/spdx+json", o.file("sbom.spdx.json", `{"spdxVersion":"SPDX-2.3"}`))
	sig := attach("application/vnd.hashfs.test.signature", o.file("sig.bin", "not really a signature"))
	want := []string{"application_spdx+json-" + sbom, "application_vnd.hashfs.test.signature-" + sig}
	refs := map[string]string{want[0]: sbom, want[1]: sig}
	repo := proxy.addr + "/" + repoPath
	cacheDir := t.TempDir()

	first := mountAt(t, t.TempDir(), cacheDir, repo, "--tag-ttl", "1s")
	checkReferrersView(t, first, subject, want, refs)
	if exited, err := first.terminate(); !exited || err != nil {
		t.Fatalf("first daemon did not stop: %v", err)
	}

	t.Run("--offline", func(t *testing.T) {
		before := proxy.st.requests.Load()
		m := mountAt(t, t.TempDir(), cacheDir, repo, "--offline", "--tag-ttl", "1s")
		checkReferrersView(t, m, subject, want, refs)
		if n := proxy.st.requests.Load() - before; n != 0 {
			t.Errorf("--offline made %d registry requests", n)
		}
	})
	t.Run("registry stopped", func(t *testing.T) {
		m := mountAt(t, t.TempDir(), cacheDir, repo, "--tag-ttl", "1s")
		proxy.down()
		defer proxy.up()
		checkReferrersView(t, m, subject, want, refs)
	})
}

// checkReferrersView checks that manifests/<subject>/referrers/ of m lists
// want, each a link to manifests/<digest> (refs[name]) whose manifest.json
// hashes to it and whose subject link leads back.
func checkReferrersView(t *testing.T, m *mnt, subject string, want []string, refs map[string]string) {
	t.Helper()
	subjectDir := m.path("manifests/" + subject)
	refDir := filepath.Join(subjectDir, "referrers")
	var ents []os.DirEntry
	var err error
	withTimeout(t, "ls referrers/", func() { ents, err = os.ReadDir(refDir) })
	if err != nil {
		t.Fatalf("ls %s: %v", refDir, err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("referrers/ lists %q, want %q", got, want)
	}
	for _, name := range want {
		d := refs[name]
		link := filepath.Join(refDir, name)
		if real, err := filepath.EvalSymlinks(link); err != nil || real != m.path("manifests/"+d) {
			t.Errorf("%s resolves to %q, %v; want manifests/%s", name, real, err, d)
		}
		if raw := mustRead(t, filepath.Join(link, "manifest.json")); "sha256:"+sha256Hex(raw) != d {
			t.Errorf("%s/manifest.json does not hash to %s", name, d)
		}
		back := filepath.Join(m.path("manifests/"+d), "subject")
		if real, err := filepath.EvalSymlinks(back); err != nil || real != subjectDir {
			t.Errorf("manifests/%s/subject resolves to %q, %v; want %s", d, real, err, subjectDir)
		}
	}
}
