package cache

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// adoptChunkSize returns the chunk size the cache in dir was made with,
// recorded in <dir>/chunk-size, so that a daemon started with another
// --chunk-size keeps using what is cached instead of discarding it.
// A new cache records want.
func adoptChunkSize(dir string, want int64, log *slog.Logger) (int64, error) {
	p := filepath.Join(dir, "chunk-size")
	b, err := os.ReadFile(p)
	if err == nil {
		if have, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); perr == nil && validChunkSize(have) {
			if have != want {
				log.Warn("the cache directory was made with another chunk size; using it", "dir", dir,
					"chunk_size", have, "asked", want)
			}
			return have, nil
		}
		log.Warn("unreadable chunk-size file in the cache directory; starting the cache afresh", "file", p)
	} else if !os.IsNotExist(err) {
		return 0, fmt.Errorf("cache: %w", err)
	}
	if err := os.WriteFile(p, []byte(strconv.FormatInt(want, 10)+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("cache: %w", err)
	}
	return want, nil
}

// validChunkSize: chunks start on sha256 blocks (hashstate.go) and on
// filesystem blocks, so that punching one out frees it whole.
func validChunkSize(n int64) bool {
	return n >= minChunkSize && n <= maxChunkSize && n%(4<<10) == 0
}
