package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// row is one line of the report's table.
type row struct {
	Case   string `json:"case"`
	Hashfs string `json:"hashfs"`
	Peer   string `json:"peer"`
	Ratio  string `json:"ratio"`
	Target string `json:"target"`
	Pass   string `json:"pass"` // yes, NO, info, n/a
	Notes  string `json:"notes,omitempty"`

	h, p *measurement // what the row was computed from, for explain
	min  float64      // the target ratio, if the row has one
	why  string       // a case's own explanation, used when the row fails
}

func passFail(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func joinNotes(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func mbps(m measurement) string {
	if !m.ok() {
		return "—"
	}
	return fmt.Sprintf("%.1f MB/s", m.MBps)
}

// ratioRow compares the throughput of h with peer p; min 0 is a row for
// information only.
func ratioRow(name string, h, p measurement, min float64, target string) row {
	r := row{Case: name, Hashfs: mbps(h), Peer: peerLabel(p), Target: target, Ratio: "—", h: &h, p: &p, min: min}
	switch {
	case !h.ok():
		r.Pass, r.Notes = "NO", "hashfs not measured: "+h.Error
	case !p.ok():
		r.Pass, r.Notes = "n/a", "peer not measured: "+p.Error
	default:
		ratio := h.MBps / p.MBps
		r.Ratio = fmt.Sprintf("%.2f×", ratio)
		if min == 0 {
			r.Pass = "info"
		} else {
			r.Pass = passFail(ratio >= min)
		}
		if c := h.CPU["hashfs"]; c > 0 {
			r.Notes = fmt.Sprintf("hashfs CPU %.0f%% of one core", 100*c/h.Seconds)
		}
		if fb, ok := h.Extra["first_byte_s"].(float64); ok {
			r.Notes = joinNotes(r.Notes, fmt.Sprintf("first 4 KiB after %.2f s", fb))
		}
	}
	return r
}

func peerLabel(p measurement) string {
	if !p.ok() {
		return p.Contender + " —"
	}
	return fmt.Sprintf("%s %.1f MB/s", p.Contender, p.MBps)
}

type reportJSON struct {
	Meta         map[string]any   `json:"meta"`
	Chosen       hfOpts           `json:"chosen"`
	Rows         []row            `json:"rows"`
	Sweep        []sweepPoint     `json:"sweep"`
	Readahead    []readaheadPoint `json:"readahead_sweep"`
	Measurements []measurement    `json:"measurements"`
	Warnings     []string         `json:"warnings"`
}

func (b *bench) writeReport(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	meta := b.meta()
	js, err := json.MarshalIndent(reportJSON{Meta: meta, Chosen: b.chosen, Rows: b.rows, Sweep: b.sweep,
		Readahead: b.raSweep, Measurements: b.ms, Warnings: b.warnings}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "REPORT.md"), []byte(b.markdown(meta)), 0o644)
}

func (b *bench) markdown(meta map[string]any) string {
	var s strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&s, format, args...) }
	w("# hashfs benchmark report\n\n")
	if b.quick {
		w("**Quick mode (-quick): smoke-test sizes, not the benchmark.**\n\n")
	}
	w("Produced by `make bench` (`go run ./bench`) on %s in %s. Measured on a %v-core VM with %v of memory "+
		"(kernel %v, %v), shared with other work, so figures move by ±10–20%% between runs. ",
		meta["date"], meta["duration"], meta["cpus"], meta["memory"], meta["kernel"], meta["cpu_model"])
	if r, _ := meta["host_reclaim"].(string); r != "" {
		w("The host takes memory back from this VM (%s): a page it took back faults in the host when it is next "+
			"written, so new page cache and heap cost more than on a dedicated machine, and more in some runs than in others. ", r)
	}
	w("hashfs %v; peers: %v.\n\n", meta["hashfs_commit"], meta["peers"])
	w("Registry: Debian `docker-registry` on 127.0.0.1 behind the benchmark's shaping proxy (`bench/proxy.go`): "+
		"`loopback` = no shaping, `wan` = +40 ms per request and 25 MB/s (25×10⁶ B/s) per client connection. "+
		"Throughput is MB/s = 10⁶ bytes per wall second of the reading command(s) (`cat FILE > /dev/null`, "+
		"`curl -o /dev/null`, `crane blob > /dev/null`; for download then verify, `curl -o FILE` and then "+
		"`openssl dgst -sha256 FILE` compared with the digest, on the disk that holds hashfs's cache). Cold = fresh hashfs/httpdirfs cache and mount, page cache dropped. "+
		"Blobs: %s (sequential, random), %s (16 readers of one), 16 × %s, %s (RSS). hashfs flags for every row unless said: `%s`.\n\n",
		sizeName(b.big.Size), sizeName(b.shared.Size), sizeName(b.manySize()), sizeName(b.huge.Size), b.chosen)
	for _, warn := range b.warnings {
		w("> warning: %s\n\n", warn)
	}
	w("| case | hashfs | peer | ratio | target | pass | notes |\n|---|---|---|---|---|---|---|\n")
	for _, r := range b.rows {
		w("| %s | %s | %s | %s | %s | %s | %s |\n", cell(r.Case), cell(r.Hashfs), cell(r.Peer), cell(r.Ratio),
			cell(r.Target), cell(r.Pass), cell(r.Notes))
	}
	pass, fail := 0, 0
	for _, r := range b.rows {
		switch r.Pass {
		case "yes":
			pass++
		case "NO", "FAIL":
			fail++
		}
	}
	w("\n%d rows with a target pass, %d do not.\n", pass, fail)
	if why := b.failureAnalysis(); why != "" {
		w("\n## Rows that do not pass: why\n\n%s", why)
	}
	b.writeSweep(w)
	b.writeCPU(w)
	w("\n## Raw numbers\n\n`bench/report.json` has every measurement: bytes, seconds, registry requests and bytes " +
		"as the proxy counted them, CPU seconds of reader, daemon, registry and proxy, VmHWM and readahead.\n")
	return s.String()
}

func cell(s string) string {
	if s == "" {
		return "—"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

func (b *bench) writeSweep(w func(string, ...any)) {
	if len(b.sweep) > 0 {
		w("\n## Choosing --chunk-size and --parallel\n\nCold %s, `wan`, `--verify strict`, fresh cache each run; "+
			"the rounds visit every cell in turn. A verification fetches its first span alone; on a link as slow per request "+
			"as `wan` (under 50 MB/s for that span) it keeps spans of up to 4 MiB of chunks, at most "+
			"min(parallel, 2 × parallel chunks / chunks per span) at once (`cache/spansize.go`); the ceiling is what the shaping "+
			"allows: requests at once × span / (40 ms + span at 25 MB/s).\n\n",
			sizeName(b.big.Size))
		w("| chunk | parallel | mean MB/s | runs MB/s | ceiling MB/s | blob GETs | hashfs CPU s | registry CPU s | proxy CPU s |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, p := range b.sweep {
			var runs []string
			var last *measurement
			for i := range p.Runs {
				runs = append(runs, mbpsShort(p.Runs[i]))
				if p.Runs[i].ok() {
					last = &p.Runs[i]
				}
			}
			span, conc := verifyRequests(p.Opts)
			ceiling := float64(conc) * perConn(span)
			if last == nil {
				w("| %s | %d | — | %s | %.0f | — | — | — | — |\n", sizeName(p.Opts.Chunk), p.Opts.Parallel, strings.Join(runs, ", "), ceiling)
				continue
			}
			w("| %s | %d | %.1f | %s | %.0f | %d | %.2f | %.2f | %.2f |\n", sizeName(p.Opts.Chunk), p.Opts.Parallel, p.MBps,
				strings.Join(runs, ", "), ceiling, last.Registry.BlobGets, last.CPU["hashfs"], last.CPU["registry"], last.CPU["proxy"])
		}
		who := "`" + b.chosen.String() + "`"
		if b.chosen == defaultOpts() {
			who = "hashfs's defaults"
		}
		w("\nEvery other hashfs row runs with %s. %s. ", who, b.chosenWhy)
		w("On `wan` one connection moves one request per 40 ms + size/25 MB/s, i.e. at most %.1f MB/s with 1 MiB "+
			"and %.1f MB/s with 4 MiB requests, so the ceiling grows with both request size and the number at once (a "+
			"lazy reader of 1 MiB chunks reading ahead in runs of 4 MiB gets the second figure per connection); where a "+
			"cell stays well below its ceiling, the two cores (hashing and cache writes in hashfs, plus the proxy and the "+
			"registry) are the limit, and more connections only add contention. CPU columns are from the last run.\n",
			perConn(1<<20), perConn(4<<20))
	}
	if len(b.raSweep) > 0 {
		w("\n## Choosing readahead\n\nWarm %s (in the hashfs cache, page cache dropped), loopback; the mount's "+
			"`/sys/class/bdi/<dev>/read_ahead_kb` set by the benchmark. hashfs itself left it at %d KiB.\n\n", sizeName(b.big.Size), b.defaultRA)
		w("| read_ahead_kb | MB/s | hashfs CPU s |\n|---|---|---|\n")
		for _, p := range b.raSweep {
			mark := ""
			if p.Default {
				mark = " (hashfs's)"
			}
			w("| %d%s | %s | %.2f |\n", p.KB, mark, mbps(p.M), p.M.CPU["hashfs"])
		}
		if b.raPassthrough() {
			w("\nThe daemon did no work in any of these reads: the kernel read the cache's file directly (FUSE passthrough), " +
				"so the mount's read_ahead_kb does not apply (the cache disk's does) and the differences are noise. " +
				"It still applies to reads that go through the daemon (lazy blobs before they verify, or without passthrough).\n")
		} else if best := b.bestReadahead(); best != nil {
			w("\nChosen: %d KiB (%.0f MB/s), the smallest value within 5%% of the fastest. ", best.KB, best.M.MBps)
			def := b.raPoint(b.defaultRA)
			if def != nil && def.M.ok() && best.M.MBps > 1.1*def.M.MBps {
				w("That is %.0f%% faster than the %d KiB hashfs runs with now. A new FUSE mount starts at 128 KiB whatever "+
					"max_readahead says, so the value that counts is what hashfs writes to the mount's read_ahead_kb after "+
					"mounting (as root): %d KiB would make the kernel send fewer, larger READs.\n",
					100*(best.M.MBps/def.M.MBps-1), b.defaultRA, best.KB)
			} else {
				w("Within 10%% of the value hashfs gets now (%d KiB): readahead is not what limits a warm read here.\n", b.defaultRA)
			}
		}
	}
	if b.lazySeq.ok() {
		lfb, _ := b.lazySeq.Extra["first_byte_s"].(float64)
		sfb, _ := b.strictSeq.Extra["first_byte_s"].(float64)
		w("\nIn the daemon, lazy reads fetch only the chunks they touch, so a sequential reader gets an adaptive "+
			"readahead (`cache/readahead.go`, as mountpoint-s3 does): each read that starts where the previous one ended "+
			"doubles the chunks fetched ahead of it, up to 2 × `--parallel`, asked for in runs of up to 4 MiB; any seek resets it to none, which keeps random "+
			"readers at one chunk per chunk touched (the random-read rows). Cold sequential %s on `wan`, lazy: %s, first "+
			"4 KiB after %.2f s (strict: %s, first 4 KiB after %.2f s). Without it a lazy reader has about one chunk in "+
			"flight, so on `wan` it runs near one connection's 25 MB/s.\n",
			sizeName(b.big.Size), mbps(b.lazySeq), lfb, mbps(b.strictSeq), sfb)
	}
}

func mbpsShort(m measurement) string {
	if !m.ok() {
		return "error"
	}
	return fmt.Sprintf("%.1f", m.MBps)
}

func (b *bench) raPoint(kb int) *readaheadPoint {
	for i := range b.raSweep {
		if b.raSweep[i].KB == kb {
			return &b.raSweep[i]
		}
	}
	return nil
}

// verifyRequests mirrors cache.spanChunks and the verification window
// on a link that is slow per request, as wan is (cache/spansize.go):
// the size of one range request of a verification and how many run at once.
func verifyRequests(o hfOpts) (span int64, conc int) {
	w := int64(2 * o.Parallel)
	per := max(1, min((4<<20)/o.Chunk, w/8))
	return per * o.Chunk, int(min(int64(o.Parallel), w/per))
}

func perConn(chunk int64) float64 {
	return float64(chunk) / 1e6 / (wan.Latency.Seconds() + float64(chunk)/wan.Rate)
}

// writeCPU lists where the CPU went in each hashfs measurement: on two
// cores, a sum near 2 × wall means the machine, not hashfs's design, is
// the limit.
func (b *bench) writeCPU(w func(string, ...any)) {
	w("\n## Where the time goes\n\nCPU seconds used during each timed read (2 cores = 2 CPU-seconds per wall second; " +
		"busy = all four together as a share of both cores; machine = every process on the machine, other work on this " +
		"shared VM included). `go run ./bench -cases cold -perf` adds a perf profile of the " +
		"daemon for each read.\n\n")
	w("| case | contender | profile | MB/s | wall s | reader | daemon | registry | proxy | busy | machine |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range b.ms {
		if !m.ok() || m.CPU == nil {
			continue
		}
		dcpu := m.CPU["hashfs"] + m.CPU["httpdirfs"]
		sum := m.CPU["readers"] + dcpu + m.CPU["registry"] + m.CPU["proxy"]
		w("| %s | %s | %s | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f%% | %.0f%% |\n", cell(m.Case), m.Contender, m.Profile, m.MBps, m.Seconds,
			m.CPU["readers"], dcpu, m.CPU["registry"], m.CPU["proxy"], 100*sum/(2*m.Seconds), 100*m.CPU["machine"]/(2*m.Seconds))
	}
}

// failureAnalysis explains each failing row from its numbers.
func (b *bench) failureAnalysis() string {
	var s strings.Builder
	for _, r := range b.rows {
		if r.Pass != "NO" && r.Pass != "FAIL" {
			continue
		}
		fmt.Fprintf(&s, "- **%s**: measured %s against %s (%s). %s\n", r.Case, cell(r.Hashfs), cell(r.Peer), r.Target, b.explain(r))
	}
	return s.String()
}

func (b *bench) meta() map[string]any {
	m := map[string]any{
		"date":          b.start.UTC().Format(time.RFC3339),
		"duration":      time.Since(b.start).Round(time.Second).String(),
		"quick":         b.quick,
		"cpus":          cpuCount(),
		"memory":        memTotal(),
		"kernel":        kernelRelease(),
		"cpu_model":     cpuModel(),
		"host_reclaim":  hostReclaim(),
		"hashfs_commit": b.commit,
		"peers":         b.peerVersions(),
		"blob_sizes":    map[string]int64{"big": b.big.Size, "shared": b.shared.Size, "many_each": b.manySize(), "huge": b.huge.Size},
	}
	keys := make([]string, 0, len(b.timings))
	for k := range b.timings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t := map[string]string{}
	for _, k := range keys {
		t[k] = b.timings[k].Round(time.Second).String()
	}
	m["phase_durations"] = t
	return m
}
