package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hashfs/hashfs/fs"
)

func newUnmountCmd() *cobra.Command {
	var lazy bool
	cmd := &cobra.Command{
		Use:   "unmount [--lazy] MOUNTPOINT",
		Short: "Unmount a hashfs mount; its daemon then exits",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			mounts, err := fs.Mounts()
			if err != nil {
				return err
			}
			if !slices.Contains(mounts, dir) {
				return fmt.Errorf("%s is not a hashfs mount", dir)
			}
			if lazy {
				return fs.Detach(dir)
			}
			if os.Geteuid() == 0 {
				err = syscall.Unmount(dir, 0)
			} else if out, ferr := exec.Command("fusermount3", "-u", dir).CombinedOutput(); ferr != nil {
				err = fmt.Errorf("fusermount3: %v: %s", ferr, out)
			}
			if err != nil {
				return fmt.Errorf("unmount %s: %w (files still open? --lazy detaches it now and unmounts when they close)", dir, err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&lazy, "lazy", false, "detach now even if files are open; the mount goes away when they close")
	return cmd
}
