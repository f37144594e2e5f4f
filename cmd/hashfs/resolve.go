package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hashfs/hashfs/fs"
	"github.com/hashfs/hashfs/internal/digest"
)

func newResolveCmd() *cobra.Command {
	var mnt string
	cmd := &cobra.Command{
		Use:   "resolve [--mount MOUNTPOINT] ID",
		Short: "Print the path of a content id in a hashfs mount",
		Long: `resolve prints MOUNTPOINT/sha256/<hex> for ID (hash://sha256/<hex>,
sha256:<hex>, <hex> or sha256-<base64>) once the mount has found it. Without
--mount it tries every hashfs mount of this machine. It exits non-zero if no
mount has the id.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := digest.ParseID(args[0])
			if err != nil {
				return err
			}
			mounts := []string{mnt}
			if mnt == "" {
				if mounts, err = fs.Mounts(); err != nil {
					return err
				}
				if len(mounts) == 0 {
					return fmt.Errorf("no hashfs mount on this machine; start one with hashfs mount, or give --mount")
				}
			}
			for _, m := range mounts {
				p := filepath.Join(m, "sha256", d.Hex())
				if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
					fmt.Fprintln(cmd.OutOrStdout(), p)
					return nil
				}
			}
			return fmt.Errorf("%s: not found in %v", d, mounts)
		},
	}
	cmd.Flags().StringVar(&mnt, "mount", "", "the hashfs mount to look in (default: every hashfs mount)")
	return cmd
}
