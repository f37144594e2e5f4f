package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/fetch"
	"github.com/hashfs/hashfs/fs"
)

// daemonStatus is what a daemon reports about itself, through the root
// xattr user.hashfs.status and (as metrics) on --metrics-addr.
type daemonStatus struct {
	Repository string       `json:"repository"`
	Mountpoint string       `json:"mountpoint"`
	Verify     string       `json:"verify"`
	PID        int          `json:"pid"`
	Started    time.Time    `json:"started"`
	CacheDir   string       `json:"cache_dir"`
	Cache      cache.Stats  `json:"cache"`
	Registry   fetch.Stats  `json:"registry"` // summed over Sources
	Sources    []sourceStat `json:"sources"`
	// BlobSources are the fetch.Set's view: which sources found, lacked,
	// served or were rejected for blobs (bytes that did not verify).
	BlobSources    []fetch.SourceStats `json:"blob_sources"`
	Errors         int64               `json:"errors"`
	RecentFailures []fs.Failure        `json:"recent_failures"`
}

// statusSource gathers a daemon's status from its parts.
type statusSource struct {
	repo, mountpoint, cacheDir string
	started                    time.Time
	parts                      *parts
	cache                      *cache.Cache
	root                       *fs.Root
}

func (s *statusSource) status() daemonStatus {
	errs, recent := s.root.Failures()
	st := daemonStatus{
		Repository: s.repo, Mountpoint: s.mountpoint, Verify: s.cache.Mode().String(), PID: os.Getpid(),
		Started: s.started, CacheDir: s.cacheDir, Cache: s.cache.Stats(), Sources: s.parts.stats(),
		BlobSources: s.parts.set.Stats(),
		Errors:      errs, RecentFailures: recent,
	}
	for _, src := range st.Sources {
		st.Registry.Add(src.Stats)
	}
	return st
}

// sourceStat is one endpoint's request counts: a registry, a mirror of
// it, or a layout.
type sourceStat struct {
	Name  string      `json:"name"`
	Stats fetch.Stats `json:"stats"`
}

// stats lists every endpoint of every member, mirrors first.
func (p *parts) stats() []sourceStat {
	var out []sourceStat
	for _, m := range p.all() {
		switch fr := m.fr.(type) {
		case interface{ Endpoints() []fetch.EndpointStats }:
			for _, e := range fr.Endpoints() {
				out = append(out, sourceStat{Name: e.Name, Stats: e.Stats})
			}
		case interface{ Stats() fetch.Stats }:
			out = append(out, sourceStat{Name: m.fr.Name(), Stats: fr.Stats()})
		case nil:
		default:
			out = append(out, sourceStat{Name: m.fr.Name()})
		}
	}
	return out
}

func (s *statusSource) json() ([]byte, error) { return json.Marshal(s.status()) }

func newStatusCmd() *cobra.Command {
	var raw bool
	cmd := &cobra.Command{
		Use:   "status [--json] MOUNTPOINT",
		Short: "Show a mount's repository, cache use, verification and registry counts, and recent failures",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			buf := make([]byte, 64<<10)
			n, err := unix.Getxattr(args[0], "user.hashfs.status", buf)
			if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
				return fmt.Errorf("%s is not a hashfs mount", args[0])
			}
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if raw {
				_, err := cmd.OutOrStdout().Write(append(buf[:n], '\n'))
				return err
			}
			var st daemonStatus
			if err := json.Unmarshal(buf[:n], &st); err != nil {
				return fmt.Errorf("%s: unreadable status: %w", args[0], err)
			}
			printStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&raw, "json", false, "print the status as JSON")
	return cmd
}

func printStatus(w io.Writer, st daemonStatus) {
	pct := 0.0
	if st.Cache.Max > 0 {
		pct = 100 * float64(st.Cache.Usage) / float64(st.Cache.Max)
	}
	fmt.Fprintf(w, "mountpoint:  %s (pid %d, up %s)\n", st.Mountpoint, st.PID, time.Since(st.Started).Round(time.Second))
	fmt.Fprintf(w, "source:      %s\n", st.Repository)
	fmt.Fprintf(w, "verify:      %s\n", st.Verify)
	fmt.Fprintf(w, "cache:       %s: %d of %d bytes (%.1f%%), %d blobs verified, %d quarantined\n",
		st.CacheDir, st.Cache.Usage, st.Cache.Max, pct, st.Cache.VerifiedBlobs, st.Cache.Quarantined)
	fmt.Fprintf(w, "registry:    %d requests, %d blob bytes, %d retries, %d gave up, %d not tried (unreachable)\n",
		st.Registry.Requests, st.Registry.BlobBytes, st.Registry.Retries, st.Registry.Failures, st.Registry.Skipped)
	if len(st.Sources) > 1 {
		for _, src := range st.Sources {
			fmt.Fprintf(w, "  %s: %d requests, %d blob bytes, %d retries, %d gave up, %d not tried\n",
				src.Name, src.Stats.Requests, src.Stats.BlobBytes, src.Stats.Retries, src.Stats.Failures, src.Stats.Skipped)
		}
	}
	fmt.Fprintf(w, "errors:      %d\n", st.Errors)
	for _, f := range st.RecentFailures {
		fmt.Fprintf(w, "  %s %s %s: %s (%s)\n", f.Time.Format(time.RFC3339), f.Op, f.Digest, f.Errno, f.Err)
	}
}
