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
	var bg bool
	var logFile string
	cmd := &cobra.Command{
		Use:   "prefetch [--jobs N] [--background [--log-file FILE]] PATH...",
		Short: "Fetch and verify files or whole trees of a mount into its cache, with progress",
		Long: `prefetch reads every regular file under each PATH (files or directories of a
hashfs mount) through the mount, so their blobs are fetched, verified and
cached before a program needs them. Progress (bytes, rate, ETA) goes to
stderr: a bar on a terminal, plain lines otherwise. Symlinks are not
followed, so a tags/ or index tree is not walked twice.

With --background, prefetch checks the PATHs, then continues detached from
the terminal and returns, printing its pid and the log file that gets its
progress lines and the outcome.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if bg {
				return background(cmd.OutOrStdout(), "prefetch", logFile)
			}
			ready, failed := readyReporter()
			files, total, err := filesUnder(args)
			if err != nil {
				failed(err)
				return err
			}
			ready()
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
			prog.summary(fmt.Sprintf("prefetch done: %d files, %s", len(files), human(total)))
			return nil
		},
	}
	cmd.Flags().IntVar(&jobs, "jobs", 4, "files fetched at once")
	cmd.Flags().BoolVar(&bg, "background", false, "check the PATHs, then prefetch detached from the terminal and return at once")
	cmd.Flags().StringVar(&logFile, "log-file", "", "with --background, append progress and the outcome to this file (default: a new file in $TMPDIR)")
	return cmd
}

// derivedDir reports the directories of a manifest's tree that show the
// inside of its blobs rather than blobs.
func derivedDir(name string) bool { return name == "layers" || name == "rootfs" }

// filesUnder lists the regular files under each root, and their total
// size, leaving out the derived directories below it (a root that is one
// is walked: prefetch of layers/0 reads it).

func filesUnder(roots []string) (files []string, total int64, err error) {
	for _, root := range roots {
		// A PATH may itself be a symlink, such as tags/v1: follow that one.
		root, err := filepath.EvalSymlinks(root)
		if err != nil {
			return nil, 0, err
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			// The files inside layers (layers/, rootfs/) are views of the
			// layer blobs, which the walk reads anyway: decompressing them
			// again would fetch nothing more.
			if d.IsDir() && p != root && derivedDir(d.Name()) {
				return filepath.SkipDir
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
			return nil, 0, err
		}
	}
	return files, total, nil
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
