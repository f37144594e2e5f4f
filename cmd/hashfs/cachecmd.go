package main

import (
	"context"
	"fmt"
	"math"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
	"github.com/hashfs/hashfs/internal/units"
)

func newCacheCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "cache ls|verify|prune",
		Short: "Inspect, re-verify or shrink a cache directory (not while a daemon uses it)",
	}
	cmd.PersistentFlags().StringVar(&dir, "cache-dir", defaultCacheDir(), "the cache directory")
	// withCache opens the cache for one subcommand and closes it after.
	withCache := func(run func(cmd *cobra.Command, c *cache.Cache) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			// No budget here: opening must not evict what a daemon's larger budget kept.
			c, err := cache.Open(cmd.Context(), noSource{}, cache.Options{Dir: dir, MaxSize: math.MaxInt64 / 4, Logger: quietLogger()})
			if err != nil {
				return err
			}
			defer c.Close()
			return run(cmd, c)
		}
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the verified blobs: digest, size, bytes cached",
		Args:  cobra.NoArgs,
		RunE: withCache(func(cmd *cobra.Command, c *cache.Cache) error {
			blobs, err := c.Blobs()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "DIGEST\tSIZE\tCACHED")
			for _, b := range blobs {
				fmt.Fprintf(w, "%s\t%d\t%d\n", b.Digest, b.Size, b.CachedBytes)
			}
			fmt.Fprintf(w, "total\t%d blobs\t%d\n", len(blobs), c.Usage())
			return w.Flush()
		}),
	}
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Read every cached chunk back and check it against its blob's verified table; remove bad ones",
		Args:  cobra.NoArgs,
		RunE: withCache(func(cmd *cobra.Command, c *cache.Cache) error {
			r, err := c.VerifyAll(cmd.Context())
			fmt.Fprintf(cmd.OutOrStdout(), "%d chunks checked, %d did not match and were removed\n", r.Checked, r.Bad)
			if r.WentWith > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%d more chunks were removed unchecked with them: a whole blob's file goes whole\n", r.WentWith)
			}
			if err == nil && r.Bad > 0 {
				err = fmt.Errorf("%d cached chunks were corrupt (removed; they will be fetched again)", r.Bad)
			}
			return err
		}),
	}
	var max units.Size
	prune := &cobra.Command{
		Use:   "prune --max-size SIZE",
		Short: "Evict least recently used chunks until the cache holds at most SIZE",
		Args:  cobra.NoArgs,
		RunE: withCache(func(cmd *cobra.Command, c *cache.Cache) error {
			freed := c.Prune(int64(max))
			fmt.Fprintf(cmd.OutOrStdout(), "freed %d bytes; %d bytes of chunks remain\n", freed, c.Usage())
			return nil
		}),
	}
	prune.Flags().Var(&max, "max-size", "size to shrink the chunk data to, e.g. 1GiB (0 empties it)")
	prune.MarkFlagRequired("max-size")
	cmd.AddCommand(ls, verify, prune)
	return cmd
}

// noSource fetches nothing: the cache commands only look at the disk.
type noSource struct{}

func (noSource) FetchRange(context.Context, digest.Digest, int64, int64) ([]byte, error) {
	return nil, fmt.Errorf("no registry in cache commands: %w", hfserr.ErrUnavailable)
}
