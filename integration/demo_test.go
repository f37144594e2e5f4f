package integration

import (
	"strings"
	"testing"
	"time"
)

// TestDemo runs `hashfs demo`, reads the fixture through it and stops it
// with SIGTERM.
func TestDemo(t *testing.T) {
	needFUSE(t)
	dir, cacheDir := t.TempDir(), t.TempDir()
	m := startDaemon(t, dir, cacheDir, "demo", "--cache-dir", cacheDir, dir)

	if got := sha256sum(t, m.path("sha256/"+vostokHex)); got != vostokHex {
		t.Errorf("sha256sum sha256/%s = %s", vostokHex, got)
	}
	// The hint is printed right after the mount is live.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(m.stdout(), "Try") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(m.stdout(), "Try") {
		t.Errorf("demo printed no \"Try\" hint; stdout:\n%s", m.stdout())
	}

	ok, err := m.terminate()
	if !ok || err != nil {
		t.Fatalf("demo after SIGTERM: exited=%v, %v", ok, err)
	}
	if m.mounted() {
		t.Errorf("demo exited 0 but its mount at %s is still there", dir)
	}
	if len(mountsAt(t, m.dir)) != 0 {
		t.Errorf("mounts left at %s: %v", dir, mountsAt(t, m.dir))
	}
}
