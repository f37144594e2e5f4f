package main

import (
	"os"

	"github.com/spf13/cobra"
)

func newMountCmd() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "mount [flags] SOURCE... MOUNTPOINT",
		Short: "Mount registry repositories, whole registries or OCI layouts read-only and stay in the foreground",
		Long: `Mount SOURCE at MOUNTPOINT. A SOURCE is a repository (as crane and oras
write it: ghcr.io/ns/repo, 127.0.0.1:5000/ns/repo, library/busybox for
Docker Hub), a whole registry (ghcr.io, 127.0.0.1:5000), or a local OCI
image layout (oci:/path/to/layout).

One repository or layout is shown at the root: sha256/, tags/, manifests/.
With several sources, or a whole registry, the root has one sha256/ that
finds a digest in any of them (asked in parallel; a source that is down or
serves bytes that do not verify is skipped for the next), and each
repository has its own subtree <registry>/<repo path>/ (oci/<dir>/ for a
layout) with sha256/, tags/ and manifests/. Below a whole registry any
repository can be looked up by path; ls lists the registry's _catalog
where it offers one. Blobs whose descriptors list "urls" are fetched from
those URLs too, verified like any other. Mirrors of a registry listed in
containerd's hosts.toml (--hosts-dir) are tried before the registry.

hashfs stays in the foreground until the mount is unmounted (umount,
fusermount3 -u) or it receives SIGINT/SIGTERM, which unmount cleanly.
Loopback registries use plain HTTP automatically. Credentials come from
the Docker config, credential helpers and podman's auth.json; anonymous
pulls use the registry's bearer-token flow.`,
		Example: `  hashfs mount ghcr.io/ns/repo /mnt/data
  hashfs mount --verify lazy --cache-max-size 20GiB 127.0.0.1:5000/lab/data /mnt/data
  hashfs mount ghcr.io/lab/raw ghcr.io/lab/derived oci:/srv/layouts/refs /mnt/data
  hashfs mount 127.0.0.1:5000 /mnt/registry`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.daemon {
				return daemonize(withoutDaemonFlag(os.Args[1:]), o.logFile)
			}
			ready, failed := readyReporter()
			err := serve(cmd.Context(), o, args[:len(args)-1], args[len(args)-1], ready)
			if err != nil {
				failed(err)
			}
			return err
		},
	}
	o.register(cmd.Flags())
	return cmd
}
