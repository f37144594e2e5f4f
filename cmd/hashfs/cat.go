package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/hashfs/hashfs/cache"
	"github.com/hashfs/hashfs/fetch"
	"github.com/hashfs/hashfs/internal/bufpool"
	"github.com/hashfs/hashfs/internal/digest"
	"github.com/hashfs/hashfs/internal/hfserr"
)

func newCatCmd() *cobra.Command {
	o := &options{quiet: true}
	cmd := &cobra.Command{
		Use:   "cat [flags] ID SOURCE...",
		Short: "Write the verified bytes of a content id to stdout, with no mount",
		Long: `cat finds ID in the SOURCE repositories, in order, and writes its bytes to
standard output only once they are verified against the id (--verify strict):
a source that lacks the blob, fails, or serves bytes that do not match is
skipped for the next one. It exits non-zero when no source gives the right
bytes. ID is hash://sha256/<hex>, sha256:<hex>, <hex> or sha256-<base64>.
A SOURCE is a repository (its hosts.toml mirrors in --hosts-dir are asked
first) or a local OCI image layout, oci:/path.

Unless --cache-dir is given, the bytes pass through a private temporary
cache that is removed afterwards.`,
		Example: `  hashfs cat hash://sha256/9412325831dab22aeebdd674b6eb53ba6b7bdd04bb99a4dbb21ddff646287e37 ghcr.io/ns/data > vostok.co2`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := digest.ParseID(args[0])
			if err != nil {
				return err
			}
			cleanup, err := o.tempCache(cmd, "hashfs-cat-")
			if err != nil {
				return err
			}
			defer cleanup()
			var errs []error
			for _, src := range args[1:] {
				err := catFrom(cmd.Context(), o, d, src, cmd.OutOrStdout())
				if err == nil {
					return nil
				}
				if errors.Is(err, errOutput) {
					return err
				}
				o.logger().Warn("source did not give the blob, trying the next", "source", src, "err", err)
				errs = append(errs, fmt.Errorf("%s: %w", src, err))
			}
			return fmt.Errorf("%s: no source gave verified bytes: %w", d, errors.Join(errs...))
		},
	}
	o.register(cmd.Flags())
	return cmd
}

var errOutput = errors.New("writing output")

// catFrom copies blob d of repo to w through a strict cache: the first
// byte is written only after the whole blob verified.
func catFrom(ctx context.Context, o *options, d digest.Digest, repo string, w io.Writer) error {
	logger := o.logger()
	arg, err := parseSource(repo, o.plainHTTP)
	if err != nil {
		return err
	}
	if arg.kind == wholeRegistry {
		return fmt.Errorf("%s is a whole registry: cat needs a repository or an oci: layout: %w", repo, hfserr.ErrInvalid)
	}
	bufs := new(bufpool.Pool) // fetched ranges, given back by the cache
	p := &parts{o: o, fopts: fetch.Options{PlainHTTP: o.plainHTTP, Logger: logger, UserAgent: "hashfs",
		Endpoints: fetch.NewEndpoints(), Buffers: bufs}}
	client, err := p.open(arg)
	if err != nil {
		return err
	}
	size, err := client.StatBlob(ctx, d)
	if err != nil {
		return err
	}
	c, err := o.strictCache(ctx, logger, client, client.Name(), bufs)
	if err != nil {
		return err
	}
	defer c.Close()
	return copyVerified(ctx, c, d, size, w, nil)
}

// copyVerified writes blob d (size bytes) from c to w; c is strict, so
// the first byte is written only once the whole blob verified. onBytes,
// if set, is told of every write.
func copyVerified(ctx context.Context, c *cache.Cache, d digest.Digest, size int64, w io.Writer, onBytes func(int64)) error {
	r := c.Open(d, size)
	defer r.Close()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		n, err := r.ReadAt(ctx, buf, off)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return fmt.Errorf("%w: %v", errOutput, werr)
			}
			off += int64(n)
			if onBytes != nil {
				onBytes(int64(n))
			}
		}
		if err != nil && !(errors.Is(err, io.EOF) && off == size) {
			return err
		}
	}
	return nil
}
