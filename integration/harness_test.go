// Package integration runs whole scenarios through a real FUSE mount of
// the hashfs binary, against the in-process ggcr registry and Debian's
// CNCF distribution registry (docker-registry).
package integration

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// cmdTimeout bounds every external command and every read a test makes.
const cmdTimeout = 60 * time.Second

// hashfsBin is the binary built once by TestMain.
var hashfsBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "hashfs-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	hashfsBin = filepath.Join(dir, "hashfs")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", hashfsBin, "./cmd/hashfs")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: go build ./cmd/hashfs: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// moduleRoot is the directory of the go.mod this package belongs to.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// inCI reports whether missing prerequisites must fail rather than skip.
func inCI() bool { return os.Getenv("CI") == "true" }

// missing fails the test in CI and skips it elsewhere.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("prerequisite missing in CI: %s", msg)
	}
	t.Skipf("prerequisite missing: %s", msg)
}

// needFUSE makes sure this process can mount a FUSE file system.
func needFUSE(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		missing(t, "/dev/fuse: %v", err)
		return
	}
	f.Close()
	if os.Geteuid() != 0 {
		needTool(t, "fusermount3")
	}
}

// needTool makes sure an executable is on PATH (or at an absolute path).
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		missing(t, "%s: %v", name, err)
	}
}

// needPandas makes sure Debian's python3 has pandas (the PATH python3 may
// be another interpreter without it).
func needPandas(t *testing.T) {
	t.Helper()
	needTool(t, pythonBin)
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, pythonBin, "-c", "import pandas").CombinedOutput(); err != nil {
		missing(t, "%s with pandas: %v: %s", pythonBin, err, out)
	}
}

const pythonBin = "/usr/bin/python3"

// quietLogger discards the in-process registry's request log.
var quietLogger = log.New(io.Discard, "", 0)

// startGGCR serves an in-memory ggcr registry on 127.0.0.1 and returns
// its host:port. wrap, if not nil, wraps the registry handler.
func startGGCR(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(quietLogger))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// startDistribution runs Debian's docker-registry (CNCF distribution) on a
// free loopback port with its storage in a temporary directory.
func startDistribution(t *testing.T) (host, storageDir string) {
	t.Helper()
	return startDistributionWith(t, "")
}

// startDistributionWith is startDistribution with more top-level YAML
// configuration (for example a proxy: section for a pull-through cache).
func startDistributionWith(t *testing.T, extra string) (host, storageDir string) {
	t.Helper()
	needTool(t, "docker-registry")
	storageDir = t.TempDir()
	host = freeAddr(t)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, storageDir, host, extra)
	cfgPath := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "docker-registry", "serve", cfgPath)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("docker-registry: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("docker-registry log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("docker-registry exited before serving: %s", logs.String())
		default:
		}
		if resp, err := http.Get("http://" + host + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return host, storageDir
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not answer GET /v2/ with 200 within 20s: %s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// randomBytes returns n bytes from crypto/rand.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// runCmd runs an external command with the standard timeout and returns
// its standard output; a failure is fatal and shows standard error.
func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := tryCmd(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// tryCmd runs an external command with the standard timeout.
func tryCmd(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w; stderr: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// sha256sum hashes a file with the sha256sum tool and returns the hex.
func sha256sum(t *testing.T, path string) string {
	t.Helper()
	out := runCmd(t, "sha256sum", path)
	f := strings.Fields(out)
	if len(f) == 0 {
		t.Fatalf("sha256sum %s printed nothing", path)
	}
	return f[0]
}

// readFile reads a whole file with a deadline, so that a hung FUSE read
// fails the test instead of hanging the suite.
func readFile(t *testing.T, path string) ([]byte, error) {
	t.Helper()
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := os.ReadFile(path)
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-time.After(cmdTimeout):
		t.Fatalf("reading %s took longer than %v", path, cmdTimeout)
		return nil, nil
	}
}

// mustRead reads a whole file and fails the test on error.
func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := readFile(t, path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return b
}

// withTimeout runs f and fails the test if it takes longer than cmdTimeout.
func withTimeout(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(cmdTimeout):
		t.Fatalf("%s took longer than %v", what, cmdTimeout)
	}
}

// dirBytes sums the sizes of the regular files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return n
}
