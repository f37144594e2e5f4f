package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/spf13/cobra"

	"github.com/hashfs/hashfs/internal/seed"
)

func newDemoCmd() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "demo [flags] MOUNTPOINT",
		Short: "Start an embedded registry with sample data and mount it (no network needed)",
		Long: `demo starts an in-process OCI registry on 127.0.0.1, pushes sample
artifacts into it (the Vostok ice-core CO2 record as an ORAS-style
artifact, a multi-platform index and a config-carrying image), mounts the
repository at MOUNTPOINT and prints what to try. Ctrl-C unmounts.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.daemon { // the child makes its own temporary cache
				return daemonize(withoutDaemonFlag(os.Args[1:]), o.logFile)
			}
			cleanup, err := o.tempCache(cmd, "hashfs-demo-cache-")
			if err != nil {
				return err
			}
			defer cleanup()
			mnt := args[0]
			if err := os.MkdirAll(mnt, 0o755); err != nil {
				return err
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			quiet := slog.NewLogLogger(slog.DiscardHandler, slog.LevelInfo)
			go http.Serve(ln, registry.New(registry.Logger(quiet)))
			repo := ln.Addr().String() + "/demo/data"
			tags, err := seed.Push(cmd.Context(), repo)
			if err != nil {
				return fmt.Errorf("seeding the demo registry: %w", err)
			}
			ready, failed := readyReporter()
			err = serve(cmd.Context(), o, []string{repo}, mnt, func() { printTry(repo, mnt, tags); ready() })
			if err != nil {
				failed(err)
			}
			return err
		},
	}
	o.register(cmd.Flags())
	cmd.Flags().Lookup("cache-dir").DefValue = "a fresh temporary directory"
	return cmd
}

func printTry(repo, mnt string, tags map[string]digestT) {
	names := make([]string, 0, len(tags))
	for t := range tags {
		names = append(names, t)
	}
	sort.Strings(names)
	vostok := filepath.Join(mnt, "tags", "vostok", "vostok.icecore.co2")
	fmt.Printf(`hashfs demo: %s is mounted at %s (tags: %v)
Try, in another shell:
  ls -l %s/tags/
  cat %s | head -25
  sha256sum %s/sha256/9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37
  getfattr -d %s
  ls -l %s/manifests/%s/
  Rscript -e 'x <- read.table("%s", skip=20, sep="\t", col.names=c("depth","age_ice","age_gas","co2")); print(summary(x))'
  python3 -c 'import pandas as pd; print(pd.read_csv("%s", sep="\t", skiprows=20, header=None).shape)'
Press Ctrl-C to unmount.
`, repo, mnt, names, mnt, vostok, mnt, vostok, mnt, tags["multi"].String(), vostok, vostok)
}
