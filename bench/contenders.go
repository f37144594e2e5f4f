package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const blobRepo = "bench/blobs"

// hfOpts are the hashfs flags a case varies.
type hfOpts struct {
	Chunk    int64
	Parallel int
	Verify   string
}

func sizeFlag(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

func (o hfOpts) String() string {
	return fmt.Sprintf("--verify %s --chunk-size %s --parallel %d", o.Verify, sizeFlag(o.Chunk), o.Parallel)
}

func (o hfOpts) with(verify string) hfOpts { o.Verify = verify; return o }

func (b *bench) blobURL(prox *proxy, bl blob) string {
	return prox.url() + "/v2/" + blobRepo + "/blobs/sha256:" + bl.Hex
}

func (b *bench) newDir(prefix string) string {
	b.seq++
	d := filepath.Join(b.work, fmt.Sprintf("%s-%d", prefix, b.seq))
	_ = os.MkdirAll(d, 0o700)
	return d
}

// curl: one HTTP stream of the blob URL.
func (b *bench) readCurl(ctx context.Context, caseName string, prox *proxy, bl blob) measurement {
	m := measurement{Case: caseName, Contender: "curl", Profile: prox.prof.Name, Bytes: bl.Size}
	b.cold(&m)
	b.timed(ctx, &m, prox, nil, [][]string{{"curl", "-sS", "-f", "-o", "/dev/null", b.blobURL(prox, bl)}})
	return b.record(m)
}

// crane blob: go-containerregistry's client, one stream, digest checked.
func (b *bench) readCrane(ctx context.Context, caseName string, prox *proxy, bl blob) measurement {
	m := measurement{Case: caseName, Contender: "crane", Profile: prox.prof.Name, Bytes: bl.Size}
	if b.crane == "" {
		m.fail("crane not available: %v", b.craneErr)
		return b.record(m)
	}
	ref := prox.addr + "/" + blobRepo + "@sha256:" + bl.Hex
	b.cold(&m)
	b.timed(ctx, &m, prox, nil, [][]string{{b.crane, "blob", "--insecure", ref}})
	return b.record(m)
}

// download then verify: what a script, or R's contentid, does to get
// bytes it can trust without a verifying filesystem. curl stores the
// blob in a file on the cache's disk and openssl (libcrypto, as
// contentid's openssl package uses) hashes it; a digest that does not
// match fails the command, as contentid::resolve fails.
func (b *bench) readDownloadVerify(ctx context.Context, caseName string, prox *proxy, bl blob) measurement {
	m := measurement{Case: caseName, Contender: "curl+openssl", Profile: prox.prof.Name, Bytes: bl.Size,
		Flags: "curl -o FILE, then openssl dgst -sha256 FILE"}
	f := filepath.Join(b.work, "download-verify")
	defer os.Remove(f)
	const script = `curl -sSf -o "$1" "$2" && test "$(openssl dgst -sha256 -r "$1" | cut -d' ' -f1)" = "$3"`
	b.cold(&m)
	b.timed(ctx, &m, prox, nil, [][]string{{"sh", "-c", script, "sh", f, b.blobURL(prox, bl), bl.Hex}})
	return b.record(m)
}

// httpdirfs --cache --single-file-mode on the blob URL, read with cat.
// Segments are 9 MiB, not the default 8: httpdirfs 1.2.5 asks for the
// range starting at the end of a file whose size is a multiple of its
// segment, docker-registry answers 416 without Accept-Ranges, and
// httpdirfs exits ("does not support HTTP range requests") even with
// --no-range-check. 9 MiB divides none of the blob sizes and makes each
// request slightly larger, which if anything favours httpdirfs.
func (b *bench) readHttpdirfs(ctx context.Context, caseName string, prox *proxy, bl blob) measurement {
	m := measurement{Case: caseName, Contender: "httpdirfs", Profile: prox.prof.Name, Bytes: bl.Size,
		Flags: "--cache --single-file-mode --no-range-check --dl-seg-size 9"}
	dir := b.newDir("httpdirfs")
	defer os.RemoveAll(dir)
	mnt := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(filepath.Join(dir, "cache"), 0o700); err != nil {
		m.fail("%v", err)
		return b.record(m)
	}
	d, err := startDaemon(ctx, "httpdirfs", mnt, filepath.Join(b.work, fmt.Sprintf("httpdirfs-%d.log", b.seq)), []string{
		"httpdirfs", "-f", "--cache", "--dl-seg-size", "9", "--cache-location", filepath.Join(dir, "cache"),
		"--single-file-mode", "--no-range-check", b.blobURL(prox, bl), mnt})
	if err != nil {
		m.fail("%v", err)
		return b.record(m)
	}
	defer d.stop()
	ents, err := os.ReadDir(mnt)
	if err != nil || len(ents) != 1 {
		m.fail("httpdirfs shows %d entries (%v)", len(ents), err)
		return b.record(m)
	}
	b.cold(&m)
	b.timed(ctx, &m, prox, d, [][]string{{"cat", filepath.Join(mnt, ents[0].Name())}})
	return b.record(m)
}

// hashfsMount mounts repo through prox with a cache dir (a fresh one when
// cacheDir is empty). The caller stops the daemon and removes the cache.
func (b *bench) hashfsMount(ctx context.Context, prox *proxy, repo string, o hfOpts, cacheDir string, extra ...string) (*daemon, string, error) {
	if b.hashfsErr != nil {
		return nil, "", fmt.Errorf("hashfs unavailable: %w", b.hashfsErr)
	}
	dir := b.newDir("hashfs")
	if cacheDir == "" {
		cacheDir = filepath.Join(dir, "cache")
	}
	mnt := filepath.Join(dir, "mnt")
	argv := append([]string{b.hashfsBin, "mount", "--cache-dir", cacheDir,
		"--verify", o.Verify, "--chunk-size", sizeFlag(o.Chunk), "--parallel", fmt.Sprint(o.Parallel)}, extra...)
	argv = append(argv, strings.TrimPrefix(prox.url(), "http://")+"/"+repo, mnt)
	d, err := startDaemon(ctx, "hashfs", mnt, filepath.Join(b.work, fmt.Sprintf("hashfs-%d.log", b.seq)), argv)
	if err != nil {
		return nil, "", err
	}
	return d, mnt, nil
}

// readHashfs mounts with a fresh cache (or keepCache), drops the page
// cache and times readers cat-ing the given blobs (one cat per entry).
func (b *bench) readHashfs(ctx context.Context, caseName string, prox *proxy, o hfOpts, keepCache string, bls ...blob) measurement {
	m := measurement{Case: caseName, Contender: "hashfs", Profile: prox.prof.Name, Flags: o.String()}
	for _, bl := range bls {
		m.Bytes += bl.Size
	}
	d, mnt, err := b.hashfsMount(ctx, prox, blobRepo, o, keepCache)
	if err != nil {
		m.fail("%v", err)
		return b.record(m)
	}
	defer func() {
		d.stop()
		os.RemoveAll(filepath.Dir(d.dir)) // holds the cache only when it is fresh
	}()
	argvs := make([][]string, len(bls))
	for i, bl := range bls {
		argvs[i] = []string{"cat", filepath.Join(mnt, "sha256", bl.Hex)}
	}
	if len(bls) == 1 {
		m.probe = argvs[0][1]
	}
	b.cold(&m)
	b.timed(ctx, &m, prox, d, argvs)
	if ra, err := getReadahead(mnt); err == nil { // after the read: hashfs sets it just after mounting
		m.extra("read_ahead_kb", ra)
	}
	if hwm, err := vmHWM(d.pid()); err == nil {
		m.extra("daemon_vmhwm_bytes", hwm)
	}
	return b.record(m)
}

// readLocal times cat of a local file, cold (page cache dropped) or hot;
// passes as for catOn.
func (b *bench) readLocal(ctx context.Context, caseName, path string, size int64, dropCache bool, passes ...int) measurement {
	argv := catArgv(path, passes)
	m := measurement{Case: caseName, Contender: "local cat", Bytes: size * int64(len(argv)-1)}
	if dropCache {
		b.cold(&m)
	}
	b.timed(ctx, &m, nil, nil, [][]string{argv})
	return b.record(m)
}
