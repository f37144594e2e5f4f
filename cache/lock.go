package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// lockDir takes an exclusive flock on <dir>/lock, holding the pid of the
// owner. One process owns a cache directory: Open removes the temporary
// and unverified files that a running daemon may be writing, and each
// process keeps its own budget accounting.
func lockDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, "lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cache lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			owner, _ := os.ReadFile(p)
			return nil, fmt.Errorf("cache directory %s is in use by another hashfs process (pid %s); give this one its own --cache-dir",
				dir, strings.TrimSpace(string(owner)))
		}
		return nil, fmt.Errorf("cache lock: %w", err)
	}
	f.Chmod(0o600)
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}
