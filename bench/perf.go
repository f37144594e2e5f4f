package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// startPerf samples the daemon's stacks with perf while a timed read
// runs; the returned func stops perf and writes the flat profile to
// OUT/perf/<n>-<case>-<contender>.txt. It is a diagnostic (-perf), off in
// the measured run because perf itself takes CPU.
func (b *bench) startPerf(ctx context.Context, m *measurement, d *daemon) func() {
	if _, err := exec.LookPath("perf"); err != nil {
		b.warnOnce("-perf: perf not installed")
		return nil
	}
	b.seq++
	data := filepath.Join(b.work, fmt.Sprintf("perf-%d.data", b.seq))
	rec := exec.Command("perf", "record", "-q", "-F", "999", "-g", "-p", fmt.Sprint(d.pid()), "-o", data)
	if err := rec.Start(); err != nil {
		b.warnOnce("-perf: %v", err)
		return nil
	}
	return func() {
		_ = rec.Process.Signal(syscall.SIGINT)
		_ = rec.Wait()
		out, err := exec.CommandContext(ctx, "perf", "report", "-i", data, "--stdio", "--no-children",
			"--sort", "dso,symbol", "--percent-limit", "1", "-g", "none").CombinedOutput()
		if err != nil {
			b.warnOnce("-perf report: %v", err)
			return
		}
		dir := filepath.Join(b.out, "perf")
		_ = os.MkdirAll(dir, 0o755)
		name := strings.NewReplacer(" ", "_", ",", "", "/", "_").Replace(fmt.Sprintf("%d-%s-%s-%s", b.seq, m.Case, m.Contender, m.Profile))
		path := filepath.Join(dir, name+".txt")
		_ = os.WriteFile(path, out, 0o644)
		// The same with the callers of each hot symbol.
		if g, err := exec.CommandContext(ctx, "perf", "report", "-i", data, "--stdio", "--no-children",
			"--sort", "symbol", "--percent-limit", "3", "-g", "caller,2,function,percent").CombinedOutput(); err == nil {
			_ = os.WriteFile(filepath.Join(dir, name+".callers.txt"), g, 0o644)
		}
		_ = os.Remove(data)
		m.extra("perf_profile", path)
	}
}
