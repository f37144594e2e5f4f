package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/fetch"
	"github.com/hashfs/hashfs/internal/bufpool"
	"github.com/hashfs/hashfs/manifestview"
)

func newPullCmd() *cobra.Command {
	o := &options{quiet: true}
	var bg bool
	cmd := &cobra.Command{
		Use:   "pull [flags] REPOSITORY:TAG|REPOSITORY@sha256:HEX DIR",
		Short: "Download an artifact's titled files into DIR, verified, with progress (no mount)",
		Long: `pull writes each file of an artifact (its descriptors titled with
org.opencontainers.image.title, as oras push names them) under DIR, each only
once its bytes verified against its digest; names are made safe exactly as in
the mount (hostile titles become sha256:<hex>). Progress goes to stderr.

With --background, pull resolves the reference and checks DIR, then
continues detached from the terminal and returns, printing its pid and the
log file that gets its progress lines and the outcome.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.daemon {
				return errors.New("pull has no --daemon: --background runs it detached")
			}
			if bg {
				return background(cmd.OutOrStdout(), "pull", o.logFile)
			}
			ready, failed := readyReporter()
			err := pull(cmd, o, args[0], args[1], ready)
			if err != nil {
				failed(err)
			}
			return err
		},
	}
	o.register(cmd.Flags())
	cmd.Flags().BoolVar(&bg, "background", false, "resolve the reference and check DIR, then pull detached from the terminal and return at once")
	cmd.Flags().Lookup("log-file").Usage = "with --background, append progress and the outcome to this file (default: a new file in $TMPDIR)"
	cmd.Flags().MarkHidden("daemon")
	return cmd
}

// pull writes the titled files of ref into dir. ready is called once the
// reference resolved to files and dir exists, before any blob is fetched.
func pull(cmd *cobra.Command, o *options, ref, dir string, ready func()) error {
	repo, tagOrDigest := splitRef(ref)
	logger := o.logger()
	bufs := new(bufpool.Pool) // fetched ranges, given back by the cache
	client, err := fetch.New(repo, fetch.Options{PlainHTTP: o.plainHTTP, Logger: logger, UserAgent: "hashfs", Buffers: bufs})
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	doc, err := client.Manifest(ctx, tagOrDigest)
	if err != nil {
		return err
	}
	tree, err := manifestview.Build(manifestview.Doc{Digest: doc.Digest, MediaType: doc.MediaType, Body: doc.Body})
	if err != nil {
		return err
	}
	if tree.Child("index.json") != nil {
		return fmt.Errorf("%s is an index of several manifests; pull one of them: %s@sha256:<hex> (hashfs mount shows them)", ref, repo)
	}
	files := titledFiles(tree, "")
	if len(files) == 0 {
		return fmt.Errorf("%s has no titled files", ref)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("DIR %s: %w", dir, err)
	}
	cleanup, err := o.tempCache(cmd, "hashfs-pull-")
	if err != nil {
		return err
	}
	defer cleanup()
	c, err := o.strictCache(ctx, logger, client, client.Repository(), bufs)
	if err != nil {
		return err
	}
	defer c.Close()
	var total int64
	for _, f := range files {
		total += f.desc.Size
	}
	ready()
	prog := newProgress(os.Stderr, total)
	for _, f := range files {
		if err := pullFile(cmd, c, f, dir, prog); err != nil {
			prog.finish()
			return err
		}
	}
	prog.finish()
	prog.summary(fmt.Sprintf("pull done: %d files, %s in %s", len(files), human(total), dir))
	return nil
}

type pullItem struct {
	path string
	desc manifestview.Desc
}

// titledFiles lists the files of a manifest tree that came from titles:
// not the raw documents, the config or the blobs/ directory.
func titledFiles(n *manifestview.Node, prefix string) []pullItem {
	var out []pullItem
	for _, c := range n.Children {
		p := filepath.Join(prefix, c.Name)
		switch {
		case prefix == "" && (c.Name == "blobs" || c.Name == "manifest.json" || c.Name == "config.json"):
		case c.Kind == manifestview.Dir:
			out = append(out, titledFiles(c, p)...)
		case c.Kind == manifestview.File:
			out = append(out, pullItem{p, c.Desc})
		}
	}
	return out
}

// pullFile writes one file under dir through a temp name and a rename.
func pullFile(cmd *cobra.Command, c *cache.Cache, f pullItem, dir string, prog *progress) error {
	dst := filepath.Join(dir, f.path)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".hashfs-pull-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = copyVerified(cmd.Context(), c, f.desc.Digest, f.desc.Size, tmp, prog.add)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s (%s): %w", f.path, f.desc.Digest, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// splitRef splits REPOSITORY:TAG or REPOSITORY@DIGEST; no tag means latest.
func splitRef(s string) (repo, ref string) {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return s[:i], s[i+1:]
	}
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		return s[:i], s[i+1:]
	}
	return s, "latest"
}
