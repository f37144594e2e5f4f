package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// ignoredMountOptions are mount(8) options that mean nothing to hashfs
// (it is always read-only, nosuid and nodev) or are for mount(8) itself.
var ignoredMountOptions = map[string]bool{
	"ro": true, "rw": true, "dev": true, "nodev": true, "suid": true, "nosuid": true,
	"exec": true, "noexec": true, "auto": true, "noauto": true, "user": true, "users": true,
	"nouser": true, "nofail": true, "_netdev": true, "defaults": true, "atime": true,
	"noatime": true, "relatime": true, "sync": true, "async": true, "dirsync": true,
	"default_permissions": true,
}

// fstabArgs turns "hashfs SOURCE MOUNTPOINT -o opt,key=value" (how
// mount.fuse3 runs a fuse.hashfs fstab entry) into the arguments of
// "hashfs mount": every mount flag is accepted as an option, with _ or -.
func fstabArgs(mountCmd *cobra.Command, source, mountpoint, opts string) ([]string, error) {
	args := []string{"mount"}
	for _, o := range strings.Split(opts, ",") {
		if o == "" || ignoredMountOptions[o] || strings.HasPrefix(o, "x-") || strings.HasPrefix(o, "comment=") {
			continue
		}
		key, val, hasVal := strings.Cut(o, "=")
		name := strings.ReplaceAll(key, "_", "-")
		f := mountCmd.Flags().Lookup(name)
		if f == nil || name == "daemon" {
			return nil, fmt.Errorf("mount option %q: hashfs has no --%s flag", o, name)
		}
		if !hasVal {
			if f.Value.Type() != "bool" {
				return nil, fmt.Errorf("mount option %q needs a value (%s=...)", o, key)
			}
			val = "true"
		}
		args = append(args, "--"+name+"="+val)
	}
	return append(args, source, mountpoint), nil
}

// logFileArg finds --log-file=PATH among args.
func logFileArg(args []string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--log-file="); ok {
			return v
		}
	}
	return ""
}
