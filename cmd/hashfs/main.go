// Command hashfs mounts an OCI registry repository as a read-only,
// content-addressed directory. This package holds flags, signals and
// wiring only.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "hashfs:", err)
		os.Exit(1)
	}
}

// newRootCmd is the whole command line.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "hashfs",
		Short: "Mount an OCI registry repository as a read-only, verified directory",
		Long: `hashfs mounts a repository of any OCI registry (ghcr.io, Docker Hub, ECR,
Harbor, zot, the CNCF registry) as a read-only directory:

  MOUNTPOINT/sha256/<hex>            any blob or manifest, by digest
  MOUNTPOINT/sha256/<ab>/<cd>/<hex>  the same, in the contentid layout
  MOUNTPOINT/tags/<tag>              symlink to ../manifests/sha256:<hex>
  MOUNTPOINT/manifests/sha256:<hex>/ one manifest as a directory

Blob bytes are range-fetched lazily through an on-disk chunk cache, and a
reader is never given bytes that do not belong to the digest it asked for.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// "hashfs SOURCE MOUNTPOINT -o OPTIONS" is how mount.fuse3 runs an
		// fstab entry of type fuse.hashfs; it returns once mounted.
		Args: cobra.ArbitraryArgs,
	}
	mountCmd := newMountCmd()
	var fstabOpts string
	root.Flags().StringVarP(&fstabOpts, "options", "o", "", "mount(8) options when run as an fstab helper: ro,cache_dir=/var/cache/hashfs,verify=lazy,... (every mount flag)")
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		if len(args) != 2 {
			return fmt.Errorf("unknown command %q; see hashfs --help", args[0])
		}
		margs, err := fstabArgs(mountCmd, args[0], args[1], fstabOpts)
		if err != nil {
			return err
		}
		return daemonize(margs, logFileArg(margs))
	}
	root.AddCommand(mountCmd, newDemoCmd(), newCatCmd(), newResolveCmd(), newUnmountCmd(), newCacheCmd(), newStatusCmd(), newPrefetchCmd(), newPullCmd())
	return root
}
