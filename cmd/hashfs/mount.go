package main

import (
	"os"

	"github.com/spf13/cobra"
)

func newMountCmd() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "mount [flags] REPOSITORY MOUNTPOINT",
		Short: "Mount a registry repository read-only and stay in the foreground",
		Long: `Mount REPOSITORY (as crane and oras write it: ghcr.io/ns/repo,
127.0.0.1:5000/ns/repo, library/busybox for Docker Hub) at MOUNTPOINT.

hashfs stays in the foreground until the mount is unmounted (umount,
fusermount3 -u) or it receives SIGINT/SIGTERM, which unmount cleanly.
Loopback registries use plain HTTP automatically. Credentials come from
the Docker config, credential helpers and podman's auth.json; anonymous
pulls use the registry's bearer-token flow.`,
		Example: `  hashfs mount ghcr.io/ns/repo /mnt/data
  hashfs mount --verify lazy --cache-max-size 20GiB 127.0.0.1:5000/lab/data /mnt/data`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.daemon {
				return daemonize(withoutDaemonFlag(os.Args[1:]), o.logFile)
			}
			ready, failed := readyReporter()
			err := serve(cmd.Context(), o, args[0], args[1], ready)
			if err != nil {
				failed(err)
			}
			return err
		},
	}
	o.register(cmd.Flags())
	return cmd
}
