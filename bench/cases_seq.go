package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
)

// sweepPoint is one chunk size × parallelism cell of the sweep.
type sweepPoint struct {
	Opts hfOpts        `json:"opts"`
	Runs []measurement `json:"runs"`
	MBps float64       `json:"mean_mb_per_s"` // mean over the runs that worked
}

// caseSweep reads the cold big blob on wan with chunk 1/4 MiB × parallel
// 8/16, in rounds that visit every cell once (so drift from other load
// hits all cells alike), and says how hashfs's settings (its defaults,
// unless -chunk-size/-parallel say otherwise) did against the other
// cells. Every later case runs with those settings, so the report
// measures what a user of the defaults gets.
func (b *bench) caseSweep(ctx context.Context) {
	rounds := 2
	if b.quick {
		rounds = 1
	}
	b.logf("sweep: chunk size × parallel, cold %s, wan, strict, %d rounds", sizeName(b.big.Size), rounds)
	for _, chunk := range []int64{1 << 20, 4 << 20} {
		for _, par := range []int{8, 16} {
			b.sweep = append(b.sweep, sweepPoint{Opts: hfOpts{Chunk: chunk, Parallel: par, Verify: "strict"}})
		}
	}
	for r := 0; r < rounds; r++ {
		for i := range b.sweep {
			m := b.readHashfs(ctx, "sweep "+b.sweep[i].Opts.String(), b.wan, b.sweep[i].Opts, "", b.big)
			b.sweep[i].Runs = append(b.sweep[i].Runs, m)
		}
	}
	best := sweepPoint{}
	for i := range b.sweep {
		p := &b.sweep[i]
		n := 0
		for _, m := range p.Runs {
			if m.ok() {
				p.MBps += m.MBps
				n++
			}
		}
		if n > 0 {
			p.MBps /= float64(n)
		}
		if p.MBps > best.MBps {
			best = *p
		}
	}
	if best.MBps == 0 {
		b.warnOnce("sweep produced no figure; later cases use %s", b.chosen)
		return
	}
	b.chosenWhy = b.sweepVerdict(best)
	b.logf("  %s", b.chosenWhy)
}

// sweepVerdict compares hashfs's settings (b.chosen) with the best cell
// of the sweep, from the measured means.
func (b *bench) sweepVerdict(best sweepPoint) string {
	var mine *sweepPoint
	for i := range b.sweep {
		if b.sweep[i].Opts == b.chosen {
			mine = &b.sweep[i]
		}
	}
	if mine == nil || mine.MBps == 0 {
		return fmt.Sprintf("`%s` was not measured by the sweep", b.chosen)
	}
	s := fmt.Sprintf("`%s` reached %.0f MB/s, %.0f%% of the best cell (`%s`, %.0f MB/s)", b.chosen, mine.MBps,
		100*mine.MBps/best.MBps, best.Opts, best.MBps)
	if c, cb := lastCPU(*mine), lastCPU(best); best.Opts != b.chosen && c > 0 && cb > 0 {
		s += fmt.Sprintf("; hashfs used %.1f CPU-s for it against %.1f", c, cb)
	}
	var faster []sweepPoint
	sameChunk := false
	for _, p := range b.sweep {
		if p.MBps > 1.1*mine.MBps {
			faster = append(faster, p)
			sameChunk = sameChunk || p.Opts.Chunk <= b.chosen.Chunk
		}
	}
	switch {
	case len(faster) == 0:
		return s + ". No cell was more than 10% faster, so these settings stand"
	case sameChunk:
		return s + fmt.Sprintf(". A cell with a chunk no larger was more than 10%% faster: the defaults should be revisited (`%s`)", faster[0].Opts)
	}
	bound := func(chunk int64) float64 { return 2 * (40 + float64(chunk)/25e6*1e3) }
	top := fastestOf(faster).Opts
	return s + fmt.Sprintf(". Only larger chunks were more than 10%% faster, and not for their size: every cell asks for "+
		"spans of up to 4 MiB, but a verification holds a window of 2 × --parallel chunks (within 2 × --parallel × 4 MiB, "+
		"`cache/span.go`), so `%s` keeps up to %s of the blob in flight against %s with hashfs's settings, and more requests "+
		"at once (the ceiling column). That window is the daemon's memory: hashfs keeps it at %s, within the 100 MiB RSS "+
		"target (the RSS row), and gives up %.0f%% on a strict cold sequential read on `wan`, which `%s` wins back for bulk "+
		"pulls with more memory. Larger chunks cost lazy readers too: a lazy read fetches whole chunks, so a %s chunk "+
		"fetches %d× the bytes of a %s one for a small or random read and raises its latency bound from %.0f ms to %.0f ms; "+
		"the random-read rows below are measured with %s chunks",
		top, sizeName(windowBytes(top)), sizeName(windowBytes(b.chosen)), sizeName(windowBytes(b.chosen)),
		100*(1-mine.MBps/best.MBps), top,
		sizeName(faster[0].Opts.Chunk), faster[0].Opts.Chunk/b.chosen.Chunk, sizeName(b.chosen.Chunk), bound(b.chosen.Chunk),
		bound(faster[0].Opts.Chunk), sizeName(b.chosen.Chunk))
}

// lastCPU is the daemon's CPU seconds in the last run of p that worked.
func lastCPU(p sweepPoint) float64 {
	for i := len(p.Runs) - 1; i >= 0; i-- {
		if p.Runs[i].ok() && p.Runs[i].CPU != nil {
			return p.Runs[i].CPU["hashfs"]
		}
	}
	return 0
}

// fastestOf returns the cell with the fewest connections among those
// within 10% of the fastest of ps (ps not empty).
func fastestOf(ps []sweepPoint) sweepPoint {
	top := ps[0]
	for _, p := range ps {
		if p.MBps > top.MBps {
			top = p
		}
	}
	pick := top
	for _, p := range ps {
		if p.MBps >= 0.9*top.MBps && p.Opts.Parallel < pick.Opts.Parallel {
			pick = p
		}
	}
	return pick
}

// caseCold reads the cold big blob with every contender on both profiles.
// The loopback hashfs read keeps its cache for the warm case.
func (b *bench) caseCold(ctx context.Context) {
	for _, prox := range []*proxy{b.wan, b.loop} {
		if !b.profiles[prox.prof.Name] {
			continue
		}
		name := fmt.Sprintf("cold sequential %s, %s", sizeName(b.big.Size), prox.prof.Name)
		b.logf("%s", name)
		skipped := func(who string) measurement {
			return measurement{Case: name, Contender: who, Profile: prox.prof.Name, Error: "not measured (-peers)"}
		}
		// On loopback a read takes a second or two and one run of curl
		// ranged 0.9-1.4 GB/s between runs: the rows there compare the
		// medians of coldRounds rounds, each contender once per round.
		rounds := 1
		if prox == b.loop {
			rounds = coldRounds
		}
		var curls, cranes, dvs, hs []measurement
		for round := range rounds {
			if b.peers["curl"] {
				curls = append(curls, b.readCurl(ctx, name, prox, b.big))
			}
			if b.peers["crane"] {
				cranes = append(cranes, b.readCrane(ctx, name, prox, b.big))
			}
			if b.peers["curl+openssl"] {
				dvs = append(dvs, b.readDownloadVerify(ctx, name, prox, b.big))
			}
			keep := ""
			if prox == b.loop && round == rounds-1 {
				keep = b.warmCache // the warm case's cache: the last round's
			}
			hs = append(hs, b.readHashfs(ctx, name, prox, b.chosen, keep, b.big))
		}
		curl, crane, dv := skipped("curl"), skipped("crane"), skipped("curl+openssl")
		if len(curls) > 0 {
			curl = median(curls)
		}
		if len(cranes) > 0 {
			crane = median(cranes)
		}
		if len(dvs) > 0 {
			dv = median(dvs)
		}
		hd := skipped("httpdirfs")
		if b.peers["httpdirfs"] {
			hd = b.readHttpdirfs(ctx, name, prox, b.big)
		}
		h := median(hs)
		if last := hs[len(hs)-1]; prox == b.loop && last.ok() {
			b.warmReady = true
			if hc, wc, late, err := b.floorWork(ctx, b.big.Size); err == nil {
				h.extra("floor_hash_cpu_s", round3(hc))
				h.extra("floor_pagecache_write_cpu_s", round3(wc))
				h.extra("pagecache_write_3s_after_drop_cpu_s", round3(late))
			} else {
				b.warnOnce("could not measure the floor of a cold read: %v", err)
			}
		}
		minCurl, tgt := 3.0, "≥ 3× curl"
		if prox == b.loop {
			minCurl, tgt = 0.8, "≥ 0.8× curl"
		}
		rows := []row{
			ratioRow(name+", strict, vs curl", h, curl, minCurl, tgt),
			ratioRow(name+", strict, vs httpdirfs", h, hd, 2, "≥ 2× httpdirfs"),
			ratioRow(name+", strict, vs crane blob", h, crane, 0, "— (for information)"),
			ratioRow(name+", strict, vs download then verify (curl -o, openssl sha256)", h, dv, 0, "— (for information)"),
		}
		if rounds > 1 {
			// In the order of rows; httpdirfs reads once.
			for i, peer := range [][]measurement{curls, nil, cranes, dvs} {
				alone := "the peer: not measured"
				if i == 1 {
					alone = "httpdirfs: one run"
				}
				rows[i].Notes = joinNotes(rows[i].Notes, roundsNote(hs, peer, alone))
			}
		}
		b.rows = append(b.rows, rows...)
		// Lazy serves chunks as they arrive: a sequential reader is kept
		// ahead by the adaptive readahead (cache/readahead.go: doubling
		// up to 2 × --parallel chunks in runs of up to 4 MiB, reset by a
		// seek).
		hl := b.readHashfs(ctx, name, prox, b.chosen.with("lazy"), "", b.big)
		if prox == b.wan {
			b.lazySeq, b.strictSeq = hl, h
		}
		b.rows = append(b.rows, ratioRow(name+", lazy (adaptive readahead), vs curl", hl, curl, 0, "— (for information)"))
	}
}

// coldRounds is how many times each contender reads the cold blob on
// loopback.
const coldRounds = 3

// roundsNote says which figures of a row compare rounds of hs with
// those of peer and what each run measured; alone says what the peer
// did when it has no rounds.
func roundsNote(hs, peer []measurement, alone string) string {
	if len(peer) == 0 {
		return fmt.Sprintf("hashfs: median of %d rounds (%s MB/s); %s", len(hs), runsMBps(hs), alone)
	}
	return fmt.Sprintf("medians of %d rounds, alternating: hashfs %s MB/s; %s %s MB/s", len(hs), runsMBps(hs),
		peer[0].Contender, runsMBps(peer))
}

// runsMBps lists the throughput of each run, "-" for one that failed.
func runsMBps(ms []measurement) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = "-"
		if m.ok() {
			parts[i] = fmt.Sprintf("%.0f", m.MBps)
		}
	}
	return strings.Join(parts, ", ")
}

// caseWarmHot reads the big blob from a populated hashfs cache with the
// page cache dropped (warm) and from the page cache (hot), against cat of
// a local copy. Warm is measured on fresh mounts (which find the blob's
// file stamped when the last daemon verified it, cache/stamp.go), on
// fresh mounts with --recheck (each chunk is hashed against its trusted
// table once per process) and once more on the same mount; the last
// mount also runs the readahead sweep.
func (b *bench) caseWarmHot(ctx context.Context) {
	name := "warm read " + sizeName(b.big.Size)
	b.logf("%s / hot read", name)
	if !b.warmReady {
		m := b.readHashfs(ctx, "warm setup (cold read)", b.loop, b.chosen, b.warmCache, b.big)
		b.warmReady = m.ok()
	}
	var warmSame, local, hot, localHot []measurement
	var last *daemon
	var lastMnt string
	defer func() { last.stop() }()
	// fresh reads the blob on 3 fresh mounts, each followed by the local read.
	fresh := func(label string, extra ...string) (ms []measurement) {
		for i := 0; i < 3; i++ {
			last.stop()
			d, mnt, err := b.hashfsMount(ctx, b.loop, blobRepo, b.chosen, b.warmCache, extra...)
			if err != nil {
				m := measurement{Case: label, Contender: "hashfs", Profile: "loopback"}
				m.fail("%v", err)
				return append(ms, b.record(m))
			}
			last, lastMnt = d, mnt
			ms = append(ms, b.catOn(ctx, label, d, filepath.Join(mnt, "sha256", b.big.Hex), b.big.Size, true))
			local = append(local, b.readLocal(ctx, name, b.big.Local, b.big.Size, true))
		}
		return ms
	}
	recheck := fresh(name+", --recheck", "--recheck")
	warm := fresh(name)
	var hotPath string
	if last != nil && last.alive() {
		path := filepath.Join(lastMnt, "sha256", b.big.Hex)
		hotPath = path
		warmSame = append(warmSame, b.catOn(ctx, name+", same mount", last, path, b.big.Size, true))
		b.readaheadSweep(ctx, last, lastMnt, path)
		// Hot: fill both page caches, then alternate so drift hits both.
		// One cat of 1 GiB from the page cache takes about 70 ms, so
		// each timed command reads the file hotPasses times: process
		// start and timer jitter would otherwise be several percent.
		b.catOn(ctx, "hot read (fill)", last, path, b.big.Size, false)
		b.readLocal(ctx, "hot read (fill)", b.big.Local, b.big.Size, false)
		for i := 0; i < hotRounds; i++ {
			hot = append(hot, b.catOn(ctx, "hot read "+sizeName(b.big.Size), last, path, b.big.Size, false, hotPasses))
			localHot = append(localHot, b.readLocal(ctx, "hot read "+sizeName(b.big.Size), b.big.Local, b.big.Size, false, hotPasses))
		}
	}
	w := median(warm)
	r := ratioRow(name+" (hashfs cache, page cache dropped, fresh mount)", w, median(local), 0.9, "≥ 0.9× local cat")
	if w.Registry != nil && w.Registry.BlobBytes > 0 {
		r.Notes = joinNotes(r.Notes, fmt.Sprintf("fetched %s from the registry: not a warm read", sizeName(w.Registry.BlobBytes)))
	}
	r.Notes = joinNotes(r.Notes, "median of 3")
	b.rows = append(b.rows, r)
	rr := ratioRow(name+" (fresh mount with --recheck: every cached byte hashed again first)", median(recheck), median(local), 0, "— (for information)")
	rr.Notes = joinNotes(rr.Notes, "median of 3")
	b.rows = append(b.rows, rr)
	if len(warmSame) > 0 {
		b.rows = append(b.rows, ratioRow(name+" (same mount again: chunks already checked)", median(warmSame), median(local), 0, "— (for information)"))
	}
	hr := ratioRow("hot read "+sizeName(b.big.Size)+" (page cache)", median(hot), median(localHot), 0.95, "≥ 0.95× local cat")
	hr.Notes = joinNotes(hr.Notes, fmt.Sprintf("median of %d, alternating with the local reads; each reads the file %d times in one cat", hotRounds, hotPasses))
	if hb, lb := blksize(hotPath), blksize(b.big.Local); hb > 0 && lb > 0 {
		// cat's buffer is max(128 KiB, st_blksize): say what each read.
		hr.Notes = joinNotes(hr.Notes, fmt.Sprintf("st_blksize %d KiB on hashfs (the chunk size), %d KiB on the local file, so cat reads "+
			"in %d KiB and %d KiB requests", hb>>10, lb>>10, max(128<<10, hb)>>10, max(128<<10, lb)>>10))
	}
	b.rows = append(b.rows, hr)
}

// The hot read's repetitions: rounds alternating hashfs and local, and
// passes over the file in each timed cat.
const (
	hotRounds = 7
	hotPasses = 8
)

// catArgv is cat reading path passes times (at least once).
func catArgv(path string, passes []int) []string {
	argv := []string{"cat", path}
	if len(passes) > 0 {
		for range passes[0] - 1 {
			argv = append(argv, path)
		}
	}
	return argv
}

// catOn times one cat of path on a running hashfs mount; passes, if
// given, makes cat read it that many times.
func (b *bench) catOn(ctx context.Context, caseName string, d *daemon, path string, size int64, dropCache bool, passes ...int) measurement {
	argv := catArgv(path, passes)
	m := measurement{Case: caseName, Contender: "hashfs", Profile: "loopback", Flags: b.chosen.String(), Bytes: size * int64(len(argv)-1)}
	if dropCache {
		b.cold(&m)
	}
	b.timed(ctx, &m, b.loop, d, [][]string{argv})
	if ra, err := getReadahead(d.dir); err == nil {
		m.extra("read_ahead_kb", ra)
	}
	return b.record(m)
}

// readaheadPoint is one read_ahead_kb setting of the warm readahead sweep.
type readaheadPoint struct {
	KB      int         `json:"read_ahead_kb"`
	Default bool        `json:"default"`
	M       measurement `json:"measurement"`
}

// readaheadSweep measures warm reads with the mount's read_ahead_kb set
// to a few values (root only), then restores the value hashfs got.
func (b *bench) readaheadSweep(ctx context.Context, d *daemon, mnt, path string) {
	def, err := getReadahead(mnt)
	if err != nil {
		b.warnOnce("readahead sweep skipped: %v", err)
		return
	}
	b.defaultRA = def
	kbs := []int{128, 1024, 4096, 16384}
	if !slices.Contains(kbs, def) {
		kbs = append(kbs, def)
		slices.Sort(kbs)
	}
	for _, kb := range kbs {
		if err := setReadahead(mnt, kb); err != nil {
			b.warnOnce("readahead sweep skipped: %v", err)
			return
		}
		m := b.catOn(ctx, fmt.Sprintf("readahead sweep %d KiB", kb), d, path, b.big.Size, true)
		b.raSweep = append(b.raSweep, readaheadPoint{KB: kb, Default: kb == def, M: m})
	}
	if err := setReadahead(mnt, def); err != nil {
		b.warnOnce("could not restore read_ahead_kb: %v", err)
	}
}

// median returns the measurement with the median throughput (errors sort
// last, so a single failure does not hide two good runs).
func median(ms []measurement) measurement {
	if len(ms) == 0 {
		return measurement{Error: "not measured"}
	}
	s := append([]measurement(nil), ms...)
	sort.SliceStable(s, func(i, j int) bool {
		if s[i].ok() != s[j].ok() {
			return s[i].ok()
		}
		return s[i].MBps > s[j].MBps
	})
	good := 0
	for _, m := range s {
		if m.ok() {
			good++
		}
	}
	if good == 0 {
		return s[0]
	}
	return s[(good-1)/2]
}

func sizeName(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func removeDir(dir string) { _ = os.RemoveAll(dir) }

// blksize is path's st_blksize, 0 if it cannot be read.
func blksize(path string) int64 {
	var st syscall.Stat_t
	if path == "" || syscall.Stat(path, &st) != nil {
		return 0
	}
	return int64(st.Blksize)
}
