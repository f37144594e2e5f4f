package main

import (
	"fmt"
	"strings"
)

// explain says, from the numbers of a failing row, where the time went.
func (b *bench) explain(r row) string {
	if r.h == nil {
		return joinSentences(r.why, r.Notes)
	}
	h := r.h
	if !h.ok() {
		return "It could not be measured: " + h.Error
	}
	var parts []string
	if h.CPU != nil && h.Seconds > 0 {
		d := h.CPU["hashfs"]
		sum := h.CPU["readers"] + d + h.CPU["registry"] + h.CPU["proxy"]
		busy := sum / (2 * h.Seconds)
		parts = append(parts, fmt.Sprintf("During the read the two cores were %.0f%% busy (hashfs %.1f s, registry %.1f s, "+
			"proxy %.1f s, readers %.1f s of CPU in %.1f s wall)", 100*busy, d, h.CPU["registry"], h.CPU["proxy"], h.CPU["readers"], h.Seconds))
		if all := h.CPU["machine"]; all > sum+0.1*h.Seconds {
			parts = append(parts, fmt.Sprintf("all processes together kept the cores %.0f%% busy: %.1f CPU-s went to other "+
				"work on this shared machine", 100*all/(2*h.Seconds), all-sum))
			busy = all / (2 * h.Seconds)
		}
		switch {
		case d < 0.05*h.Seconds && strings.HasPrefix(h.Case, "hot"):
			parts = append(parts, "hashfs itself did no work: the kernel served every byte from the page cache of the cache's "+
				"file (FUSE passthrough), so the gap is the kernel's read path through the FUSE file (and timing noise: the "+
				"whole read takes a fraction of a second)")
		case strings.Contains(r.Case, "page cache dropped") && d > 0.2*h.Seconds:
			parts = append(parts, fmt.Sprintf("the fresh daemon found no stamp it could trust (cache/stamp.go: the file's inode, "+
				"size and ctime, recorded after an fsync once a daemon had hashed every byte) or ran with --recheck, so the first "+
				"open hashed the cached blob once against its chunk table, %.2f CPU-s on both cores, before handing the kernel "+
				"the file, which cat then read directly (FUSE passthrough)", d))
			if r.p != nil && r.p.ok() && r.p.Seconds > 0 {
				// Even with both cores on it and nothing else, that pass
				// takes d/2 seconds; the target allows local/0.9 in all.
				allowed := r.p.Seconds / 0.9
				if d/2 >= allowed {
					parts = append(parts, fmt.Sprintf("that pass alone needs at least %.2f s of the two cores, and the target "+
						"allows %.2f s in all (the local read took %.2f s), so a read that re-hashes cannot pass on this 2-core "+
						"machine", d/2, allowed, r.p.Seconds))
				} else {
					parts = append(parts, fmt.Sprintf("that pass could take %.2f s on both cores against the %.2f s the target "+
						"allows in all, so it did not keep both cores busy", d/2, allowed))
				}
			}
		case busy >= 0.8:
			parts = append(parts, "so the CPU of this 2-core VM is the limit: the registry and the shaping proxy (and any other "+
				"work), which a real deployment would not run on the reading host, take their share of the same two cores")
		case d/h.Seconds >= 0.8:
			parts = append(parts, "hashfs used about a full core: its per-byte work (sha256, FUSE copies, cache file I/O) is the limit")
		default:
			parts = append(parts, "the CPU was not saturated, so the time goes to waiting: request latency, FUSE round trips or the disk")
		}
	}
	if f := b.coldFloor(r); f != "" {
		parts = append(parts, f)
	}
	if r.p != nil && r.p.ok() && r.p.Contender == "curl" && strings.Contains(h.Flags, "strict") {
		// Peers that end with checked bytes too, against the same curl.
		for _, pc := range []struct{ who, what, miss, meet string }{
			{"curl+openssl", "getting the same checked bytes without hashfs, by storing the blob with curl and hashing the file with openssl,",
				"so on this VM keeping and checking the bytes the plain way misses the target too",
				"so the plain way meets the target where hashfs does not"},
			{"crane", "crane blob, which does only the work of a strict read's first phase (one stream, hashed as it arrives, " +
				"nothing kept, nothing served),",
				"so on this VM even a client that checks the digest and does nothing else misses the target",
				"so a client that checks the digest and does nothing else meets the target here"},
		} {
			m := b.measured(h.Case, pc.who)
			if m == nil {
				continue
			}
			verdict := pc.miss
			if r.min > 0 && m.MBps >= r.min*r.p.MBps {
				verdict = pc.meet
			}
			parts = append(parts, fmt.Sprintf("%s ran at %.0f MB/s in this run (%.2f× curl; hashfs %.2f× that), %s",
				pc.what, m.MBps, m.MBps/r.p.MBps, h.MBps/m.MBps, verdict))
		}
	}
	if fb, ok := h.Extra["first_byte_s"].(float64); ok && fb > 0.5*h.Seconds && strings.Contains(h.Flags, "strict") {
		parts = append(parts, fmt.Sprintf("the first 4 KiB arrived only after %.1f s of %.1f s: with --verify strict no byte is served "+
			"before the whole blob is fetched, hashed once and written to the cache, and then the reader reads the cache's file "+
			"through FUSE passthrough, so a cold read is two phases in a row, not one stream", fb, h.Seconds))
	}
	if r.p != nil && r.p.ok() && r.p.Contender == "local cat" && r.p.CPU != nil {
		parts = append(parts, fmt.Sprintf("the local peer needs only %.1f CPU-s for the same bytes", r.p.CPU["readers"]))
	}
	if ra, ok := h.Extra["read_ahead_kb"]; ok {
		parts = append(parts, fmt.Sprintf("the mount's readahead was %v KiB", ra))
	}
	if r.p != nil && r.p.ok() && r.p.Contender == "local cat" && r.p.MBps > 1500 && strings.Contains(r.Case, "page cache dropped") {
		parts = append(parts, fmt.Sprintf("the local file is read at %.1f GB/s even with the page cache dropped, so this VM's disk "+
			"is served from the host's memory and the target compares a FUSE round trip per request with memory bandwidth", r.p.MBps/1000))
	}
	if best := b.bestReadahead(); best != nil && strings.HasPrefix(r.Case, "warm") && !b.raPassthrough() {
		parts = append(parts, fmt.Sprintf("with read_ahead_kb = %d the same warm read ran at %.0f MB/s (see the readahead table)", best.KB, best.M.MBps))
	}
	out := joinSentences(strings.Join(parts, "; ")+".", r.why)
	if out == "" {
		return r.Notes
	}
	return out
}

func joinSentences(a, b string) string {
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	switch {
	case a == "" || a == ".":
		return b
	case b == "":
		return a
	}
	return a + " " + b
}

// raPassthrough reports whether the readahead sweep's reads never
// reached the daemon (FUSE passthrough): the mount's readahead then does
// not apply, the backing file's device readahead does.
func (b *bench) raPassthrough() bool {
	for _, p := range b.raSweep {
		if !p.M.ok() || p.M.CPU["hashfs"] > 0.05 {
			return false
		}
	}
	return len(b.raSweep) > 0
}

func (b *bench) bestReadahead() *readaheadPoint {
	var top float64
	for _, p := range b.raSweep {
		if p.M.ok() && p.M.MBps > top {
			top = p.M.MBps
		}
	}
	for i := range b.raSweep { // ascending: the smallest within 5% of the top
		if p := &b.raSweep[i]; p.M.ok() && p.M.MBps >= 0.95*top {
			return p
		}
	}
	return nil
}

// coldFloor compares the work a cold strict read cannot skip (floorWork,
// plus the registry and proxy CPU of curl's single stream) with what
// the row's target allows, or returns "" without those figures.
func (b *bench) coldFloor(r row) string {
	h, p := r.h, r.p
	hc, ok1 := h.Extra["floor_hash_cpu_s"].(float64)
	wc, ok2 := h.Extra["floor_pagecache_write_cpu_s"].(float64)
	if !ok1 || !ok2 || p == nil || !p.ok() || p.CPU == nil || r.min <= 0 {
		return ""
	}
	send := p.CPU["registry"] + p.CPU["proxy"]
	floor := send + hc + wc
	allowed := p.Seconds / r.min
	used := h.CPU["readers"] + h.CPU["hashfs"] + h.CPU["registry"] + h.CPU["proxy"]
	s := fmt.Sprintf("the work no design can skip is the registry and the proxy sending the blob as they did for %s "+
		"(%.2f CPU-s), hashing it once (%.2f CPU-s on one thread, measured by the benchmark) and writing it into the "+
		"page cache once for the reader (%.2f CPU-s for dd of as many bytes right after dropping the page cache)",
		p.Contender, send, hc, wc)
	s += fmt.Sprintf(": %.2f CPU-s, at least %.2f s on two cores, against %.2f s the target allows", floor, floor/2, allowed)
	if floor/2 >= allowed {
		return s + ", so this row cannot pass on this 2-core machine"
	}
	s += fmt.Sprintf("; the read used %.2f CPU-s in all, %.2f more than that floor (the registry's cost per "+
		"request, cache writes, FUSE, scheduling), and the target leaves room for %.2f", used, used-floor, 2*allowed-floor)
	if late, ok := h.Extra["pagecache_write_3s_after_drop_cpu_s"].(float64); ok && late > 2*wc && balloonReportsFreePages() {
		s += fmt.Sprintf("; the same dd 3 s after the drop, when most of a cold read's cache writes happen, took %.2f "+
			"CPU-s: this VM's virtio balloon reports free pages to the host, so each page the dropped cache gave back "+
			"faults in the host when it is written again", late)
	}
	return s
}

// measured returns the median of the successful measurements of
// contender in case caseName, if there is one.
func (b *bench) measured(caseName, contender string) *measurement {
	var ms []measurement
	for _, m := range b.ms {
		if m.Case == caseName && m.Contender == contender && m.ok() {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return nil
	}
	m := median(ms)
	return &m
}
