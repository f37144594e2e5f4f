package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// registry is the Debian CNCF distribution registry (docker-registry)
// serving a fresh storage directory on a free 127.0.0.1 port.
type registry struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:PORT
	done chan struct{}
}

const registryConfig = `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
`

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startRegistry(ctx context.Context, dir string) (*registry, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, fmt.Errorf("docker-registry not installed: %w", err)
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o700); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(registryConfig, filepath.Join(dir, "storage"), addr)), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &registry{cmd: cmd, base: "http://" + addr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(r.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(r.base + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("docker-registry exited at start; see %s", logf.Name())
		case <-ctx.Done():
			r.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	r.stop()
	return nil, fmt.Errorf("docker-registry did not answer on %s", addr)
}

func (r *registry) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// pushBlob streams size bytes from body into repo with a chunked upload
// (POST, one PATCH, PUT ?digest=) and returns the sha256 hex. The digest
// is computed while streaming, so no blob is held in memory.
func pushBlob(ctx context.Context, base, repo string, body io.Reader, size int64) (string, error) {
	loc, err := startUpload(ctx, base, repo)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, loc, io.TeeReader(body, h))
	if err != nil {
		return "", err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("PATCH upload: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("PATCH upload: %s", resp.Status)
	}
	loc, err = resolve(base, resp.Header.Get("Location"))
	if err != nil {
		return "", err
	}
	hexd := hex.EncodeToString(h.Sum(nil))
	return hexd, finishUpload(ctx, loc, hexd, nil)
}

// pushSmallBlob uploads b in one PUT.
func pushSmallBlob(ctx context.Context, base, repo string, b []byte) (string, error) {
	loc, err := startUpload(ctx, base, repo)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	hexd := hex.EncodeToString(sum[:])
	return hexd, finishUpload(ctx, loc, hexd, b)
}

func startUpload(ctx context.Context, base, repo string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("start upload: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("start upload: %s", resp.Status)
	}
	return resolve(base, resp.Header.Get("Location"))
}

func finishUpload(ctx context.Context, loc, hexd string, body []byte) error {
	u, err := url.Parse(loc)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", "sha256:"+hexd)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("finish upload: %w", err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("finish upload: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

func resolve(base, loc string) (string, error) {
	if loc == "" {
		return "", fmt.Errorf("registry sent no Location")
	}
	b, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	l, err := url.Parse(loc)
	if err != nil {
		return "", err
	}
	return b.ResolveReference(l).String(), nil
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ociManifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        descriptor        `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

const manifestType = "application/vnd.oci.image.manifest.v1+json"

// pushManifest PUTs m under tag and returns its sha256 hex.
func pushManifest(ctx context.Context, base, repo, tag string, m ociManifest) (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", manifestType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("put manifest %s: %s: %s", tag, resp.Status, strings.TrimSpace(string(msg)))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
