// Command bench measures hashfs against curl, crane blob, httpdirfs and
// local files on the real CNCF registry behind a shaping proxy, and
// writes bench/REPORT.md and bench/report.json. Run it as root with
// `make bench`; `-quick` is a smoke test with small blobs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type bench struct {
	quick    bool
	profiles map[string]bool // cold case: which proxy profiles (loopback, wan)
	peers    map[string]bool // cold case: which peers besides hashfs (curl, crane, curl+openssl, httpdirfs)
	keep     bool
	perf     bool
	out      string
	start    time.Time
	root     string // repository root
	work     string // temp dir under /var/tmp, removed at the end

	hashfsBin string
	commit    string
	hashfsErr error
	crane     string
	craneErr  error

	reg       *registry
	loop, wan *proxy

	big, shared, huge blob
	many              []blob

	chosen    hfOpts
	chosenWhy string
	warmCache string
	warmReady bool
	lazySeq   measurement // cold sequential, wan, lazy: for the readahead section
	strictSeq measurement // the same, strict
	defaultRA int

	sweep    []sweepPoint
	raSweep  []readaheadPoint
	ms       []measurement
	rows     []row
	warnings []string
	timings  map[string]time.Duration
	seq      int
	c        cleanups
}

func main() {
	quick := flag.Bool("quick", false, "smoke test: 64 MiB instead of 1 GiB, no 4 GiB and 1000-tag cases (< 2 min)")
	only := flag.String("cases", "all", "comma-separated subset of: sweep,cold,warm,random,shared,many,rss,tags")
	perf := flag.Bool("perf", false, "profile the FUSE daemon with perf during each timed read; profiles go to OUT/perf/")
	keep := flag.Bool("keep", false, "keep the work directory under /var/tmp (logs, registry storage) for debugging")
	out := flag.String("out", "", "where to write REPORT.md and report.json (default: bench/, or $TMPDIR/hashfs-bench-quick with -quick)")
	profiles := flag.String("profiles", "wan,loopback", "cold case: which registry profiles to read through")
	peers := flag.String("peers", "curl,crane,curl+openssl,httpdirfs", "cold case: which peers to measure besides hashfs")
	chunk := flag.Int64("chunk-size", 1<<20, "hashfs --chunk-size for the cases after the sweep, when the sweep does not run")
	parallel := flag.Int("parallel", 16, "hashfs --parallel for the cases after the sweep, when the sweep does not run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	b := &bench{quick: *quick, keep: *keep, perf: *perf, start: time.Now(), timings: map[string]time.Duration{},
		chosen:   hfOpts{Chunk: *chunk, Parallel: *parallel, Verify: "strict"},
		profiles: set(*profiles), peers: set(*peers)}
	err := b.run(ctx, *only, *out)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// set splits a comma-separated flag value.
func set(list string) map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		m[strings.TrimSpace(s)] = true
	}
	return m
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) warnOnce(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, w := range b.warnings {
		if w == msg {
			return
		}
	}
	b.warnings = append(b.warnings, msg)
	b.logf("warning: %s", msg)
}

func (b *bench) phase(name string, fn func()) {
	t := time.Now()
	fn()
	b.timings[name] = time.Since(t)
}

// run sets up, runs the selected cases and writes the report. Cleanup
// (unmounts, registry, temp dir) runs on every return and on panic.
func (b *bench) run(ctx context.Context, only, out string) error {
	defer b.c.run()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	b.root = root
	if out == "" {
		out = filepath.Join(root, "bench")
		if b.quick {
			out = filepath.Join(os.TempDir(), "hashfs-bench-quick")
		}
	}
	b.out = out
	want := map[string]bool{}
	for _, c := range strings.Split(only, ",") {
		want[strings.TrimSpace(c)] = true
	}
	on := func(c string) bool {
		if ctx.Err() != nil {
			return false
		}
		if want[c] {
			return true
		}
		return want["all"] && !(b.quick && (c == "rss" || c == "tags"))
	}
	if os.Geteuid() != 0 {
		b.warnOnce("not root: dependencies are not installed, the page cache cannot be dropped and readahead cannot be set")
	}
	if err := b.setup(ctx, on); err != nil {
		return err
	}
	cases := []struct {
		name string
		fn   func(context.Context)
	}{
		{"sweep", b.caseSweep}, {"cold", b.caseCold}, {"warm", b.caseWarmHot}, {"random", b.caseRandom},
		{"shared", b.caseShared}, {"many", b.caseMany}, {"rss", b.caseRSS}, {"tags", b.caseTags},
	}
	for _, c := range cases {
		if on(c.name) {
			b.phase(c.name, func() { c.fn(ctx) })
		}
	}
	if ctx.Err() != nil {
		b.warnOnce("interrupted: the report is partial")
	}
	if err := b.writeReport(out); err != nil {
		return err
	}
	b.logf("wrote %s and %s", filepath.Join(out, "REPORT.md"), filepath.Join(out, "report.json"))
	return nil
}

// setup installs and builds what is missing, starts the registry and the
// two proxies and pushes the blobs the selected cases need.
func (b *bench) setup(ctx context.Context, on func(string) bool) error {
	work, err := os.MkdirTemp("/var/tmp", "hashfs-bench-")
	if err != nil {
		return err
	}
	b.work = work
	b.c.add(func() {
		if b.keep {
			b.logf("kept %s", work)
			return
		}
		_ = os.RemoveAll(work)
	})
	b.warmCache = filepath.Join(work, "warm-cache")
	b.phase("setup: deps and build", func() { b.tools(ctx) })
	if ctx.Err() != nil {
		return ctx.Err()
	}
	b.logf("starting docker-registry")
	reg, err := startRegistry(ctx, filepath.Join(work, "registry"))
	if err != nil {
		return err
	}
	b.reg = reg
	b.c.add(reg.stop)
	if b.loop, err = startProxy(loopback, reg.base); err != nil {
		return err
	}
	b.c.add(b.loop.close)
	if b.wan, err = startProxy(wan, reg.base); err != nil {
		return err
	}
	b.c.add(b.wan.close)
	bigSize, sharedSize, manySize, hugeSize := int64(1<<30), int64(256<<20), int64(64<<20), int64(4<<30)
	if b.quick {
		bigSize, sharedSize, manySize = 64<<20, 64<<20, 16<<20
	}
	var perr error
	b.phase("setup: push blobs", func() {
		push := func(name string, size int64, keep string) blob {
			if perr != nil {
				return blob{}
			}
			b.logf("pushing %s (%s)", name, sizeName(size))
			bl, err := makeBlob(ctx, reg.base, blobRepo, name, size, keep)
			perr = err
			return bl
		}
		b.big = push("big", bigSize, filepath.Join(work, "big.local"))
		if on("shared") {
			b.shared = push("shared", sharedSize, "")
		}
		if on("many") {
			for i := 0; i < 16; i++ {
				b.many = append(b.many, push(fmt.Sprintf("many-%02d", i), manySize, ""))
			}
		}
		if on("rss") {
			b.huge = push("huge", hugeSize, "")
		}
		if perr == nil {
			perr = b.tagBlobs(ctx)
		}
	})
	return perr
}

// tagBlobs pushes one manifest listing every blob by name as tag "all":
// a repository without tags is unknown to the registry.
func (b *bench) tagBlobs(ctx context.Context) error {
	cfg := []byte("{}")
	cfgHex, err := pushSmallBlob(ctx, b.reg.base, blobRepo, cfg)
	if err != nil {
		return err
	}
	m := ociManifest{SchemaVersion: 2, MediaType: manifestType,
		Config: descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: "sha256:" + cfgHex, Size: int64(len(cfg))}}
	for _, bl := range append([]blob{b.big, b.shared, b.huge}, b.many...) {
		if bl.Hex != "" {
			m.Layers = append(m.Layers, descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: "sha256:" + bl.Hex,
				Size: bl.Size, Annotations: map[string]string{"org.opencontainers.image.title": bl.Name}})
		}
	}
	_, err = pushManifest(ctx, b.reg.base, blobRepo, "all", m)
	return err
}

// tools installs the Debian packages and crane when missing and builds
// hashfs. A hashfs that does not build is reported in every hashfs row.
func (b *bench) tools(ctx context.Context) {
	if os.Geteuid() == 0 {
		cmd := exec.CommandContext(ctx, filepath.Join(b.root, "scripts/install-deps.sh"), "docker-registry", "httpdirfs", "curl", "openssl", "fuse3")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			b.warnOnce("install-deps.sh: %v", err)
		}
	}
	b.crane, b.craneErr = findCrane(ctx)
	if b.craneErr != nil {
		b.warnOnce("crane unavailable: %v", b.craneErr)
	}
	b.hashfsBin = filepath.Join(b.work, "hashfs")
	b.commit = gitDescribe(b.root) // before the build: the tree may move while the benchmark runs
	b.logf("building hashfs %s", b.commit)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.hashfsBin, "./cmd/hashfs")
	cmd.Dir = b.root
	if outb, err := cmd.CombinedOutput(); err != nil {
		b.hashfsErr = fmt.Errorf("go build ./cmd/hashfs: %v: %s", err, strings.TrimSpace(string(outb)))
		b.warnOnce("%v", b.hashfsErr)
	}
}

// findCrane returns crane from PATH or GOPATH/bin, installing the pinned
// version with `go install` when it is in neither.
func findCrane(ctx context.Context) (string, error) {
	if p, err := exec.LookPath("crane"); err == nil {
		return p, nil
	}
	gopath, err := exec.CommandContext(ctx, "go", "env", "GOPATH").Output()
	if err != nil {
		return "", err
	}
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "crane")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/google/go-containerregistry/cmd/crane@v0.22.1")
	cmd.Dir = os.TempDir()
	if outb, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install crane: %v: %s", err, strings.TrimSpace(string(outb)))
	}
	return p, nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory: run from the repository")
		}
		dir = parent
	}
}

func (b *bench) manySize() int64 {
	if len(b.many) == 0 {
		return 0
	}
	return b.many[0].Size
}
