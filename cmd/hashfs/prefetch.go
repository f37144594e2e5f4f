package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/spf13/cobra"
)

func newPrefetchCmd() *cobra.Command {
	var jobs int
	cmd := &cobra.Command{
		Use:   "prefetch [--jobs N] PATH...",
		Short: "Fetch and verify files or whole trees of a mount into its cache, with progress",
		Long: `prefetch reads every regular file under each PATH (files or directories of a
hashfs mount) through the mount, so their blobs are fetched, verified and
cached before a program needs them. Progress (bytes, rate, ETA) goes to
stderr: a bar on a terminal, plain lines otherwise. Symlinks are not
followed, so a tags/ or index tree is not walked twice.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var files []string
			var total int64
			for _, root := range args {
				// A PATH may itself be a symlink, such as tags/v1: follow that one.
				root, err := filepath.EvalSymlinks(root)
				if err != nil {
					return err
				}
				err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					if d.Type().IsRegular() {
						fi, err := d.Info()
						if err != nil {
							return err
						}
						files = append(files, p)
						total += fi.Size()
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			prog := newProgress(os.Stderr, total)
			work := make(chan string)
			var mu sync.Mutex
			var errs []error
			var wg sync.WaitGroup
			for range max(jobs, 1) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 1<<20)
					for p := range work {
						if err := readThrough(p, buf, prog); err != nil {
							mu.Lock()
							errs = append(errs, fmt.Errorf("%s: %w", p, err))
							mu.Unlock()
						}
					}
				}()
			}
			for _, f := range files {
				work <- f
			}
			close(work)
			wg.Wait()
			prog.finish()
			if len(errs) > 0 {
				return fmt.Errorf("%d of %d files failed: %w", len(errs), len(files), errors.Join(errs...))
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&jobs, "jobs", 4, "files fetched at once")
	return cmd
}

// readThrough reads p to its end, counting the bytes.
func readThrough(p string, buf []byte, prog *progress) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		n, err := f.Read(buf)
		prog.add(int64(n))
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
