package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// measurement is one timed read by one contender: the raw numbers behind
// a row of the report.
type measurement struct {
	Case      string             `json:"case"`
	Contender string             `json:"contender"`
	Profile   string             `json:"profile,omitempty"`
	Flags     string             `json:"flags,omitempty"`
	Bytes     int64              `json:"bytes"`
	Seconds   float64            `json:"seconds"`
	MBps      float64            `json:"mb_per_s"` // 10^6 bytes per wall second of the reading command(s)
	Registry  *proxyStats        `json:"registry,omitempty"`
	CPU       map[string]float64 `json:"cpu_seconds,omitempty"`
	Extra     map[string]any     `json:"extra,omitempty"`
	Error     string             `json:"error,omitempty"`

	probe string // a file to time the first 4 KiB of, next to the readers
}

func (m *measurement) ok() bool { return m.Error == "" && m.Seconds > 0 }

func (m *measurement) fail(format string, args ...any) {
	if m.Error == "" {
		m.Error = fmt.Sprintf(format, args...)
	}
}

func (m *measurement) extra(k string, v any) {
	if m.Extra == nil {
		m.Extra = map[string]any{}
	}
	m.Extra[k] = v
}

// cmdTimeout bounds any one reading command; the slowest expected one is
// a single 25 MB/s stream of 1 GiB (43 s).
const cmdTimeout = 10 * time.Minute

// runAll starts every argv at once with stdout to /dev/null and waits for
// all of them. It returns the wall time from the first start to the last
// exit and the readers' CPU seconds.
func runAll(ctx context.Context, argvs [][]string) (time.Duration, float64, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, 0, err
	}
	defer null.Close()
	cmds := make([]*exec.Cmd, len(argvs))
	errs := make([]*bytes.Buffer, len(argvs))
	for i, argv := range argvs {
		cmds[i] = exec.CommandContext(ctx, argv[0], argv[1:]...)
		errs[i] = &bytes.Buffer{}
		cmds[i].Stdout, cmds[i].Stderr = null, errs[i]
	}
	start := time.Now()
	for i, c := range cmds {
		if err := c.Start(); err != nil {
			for _, s := range cmds[:i] {
				_ = s.Process.Kill()
				_ = s.Wait()
			}
			return 0, 0, err
		}
	}
	var first error
	var cpu float64
	for i, c := range cmds {
		err := c.Wait()
		if c.ProcessState != nil {
			cpu += (c.ProcessState.UserTime() + c.ProcessState.SystemTime()).Seconds()
		}
		if err != nil && first == nil {
			first = fmt.Errorf("%s: %v: %s", strings.Join(argvs[i], " "), err, strings.TrimSpace(errs[i].String()))
		}
	}
	return time.Since(start), cpu, first
}

// timed runs argvs at once and fills m: wall seconds, throughput over
// m.Bytes, the registry traffic seen by prox (reset first) and the CPU
// used by readers, the daemon, the registry and the proxy.
func (b *bench) timed(ctx context.Context, m *measurement, prox *proxy, d *daemon, argvs [][]string) {
	var d0 float64
	if d != nil {
		d0 = procCPU(d.pid())
	}
	r0, s0, all0 := procCPU(b.reg.cmd.Process.Pid), selfCPU(), machineCPU()
	if prox != nil {
		prox.reset()
	}
	var stopPerf func()
	if b.perf && d != nil {
		stopPerf = b.startPerf(ctx, m, d)
	}
	var probe chan time.Duration
	if m.probe != "" {
		probe = make(chan time.Duration, 1)
		go func(start time.Time) { probe <- firstByte(m.probe, start) }(time.Now())
	}
	wall, readerCPU, err := runAll(ctx, argvs)
	if stopPerf != nil {
		stopPerf()
	}
	if probe != nil {
		select {
		case t := <-probe:
			if t > 0 {
				m.extra("first_byte_s", round3(t.Seconds()))
			}
		case <-time.After(5 * time.Second):
		}
	}
	if prox != nil {
		st := prox.snapshot()
		m.Registry = &st
	}
	if err != nil {
		m.fail("%v", err)
		if d != nil && !d.alive() {
			m.fail("%s died: %s", d.name, tail(d.log))
		}
		return
	}
	m.Seconds = wall.Seconds()
	m.MBps = float64(m.Bytes) / 1e6 / m.Seconds
	m.CPU = map[string]float64{
		"readers":  round3(readerCPU),
		"registry": round3(procCPU(b.reg.cmd.Process.Pid) - r0),
		"proxy":    round3(selfCPU() - s0),
		"machine":  round3(machineCPU() - all0), // every process, also other work on a shared machine
	}
	if d != nil {
		m.CPU[d.name] = round3(procCPU(d.pid()) - d0)
	}
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// cold drops the page cache; without root the figures are not cold and
// the report says so.
func (b *bench) cold(m *measurement) {
	if err := dropCaches(); err != nil {
		b.warnOnce("could not drop the page cache (%v): cold/warm rows read partly from memory", err)
		m.extra("page_cache_dropped", false)
	}
}

func (b *bench) record(m measurement) measurement {
	b.ms = append(b.ms, m)
	status := fmt.Sprintf("%.1f MB/s in %.2fs", m.MBps, m.Seconds)
	if m.Error != "" {
		status = "ERROR " + m.Error
	}
	b.logf("  %-28s %-10s %-9s %s", m.Case, m.Contender, m.Profile, status)
	return m
}

// firstByte opens path, reads its first 4 KiB and returns the time since
// start, or 0 on error.
func firstByte(path string, start time.Time) time.Duration {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err != nil {
		return 0
	}
	return time.Since(start)
}
