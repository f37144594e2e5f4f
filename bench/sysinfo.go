package main

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

func cpuCount() int { return runtime.NumCPU() }

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return strconv.FormatFloat(kb/(1<<20), 'f', 0, 64) + " GiB"
			}
		}
	}
	return "?"
}

func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if _, v, ok := strings.Cut(line, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "?"
}

// gitDescribe names the commit hashfs was built from, "+dirty" when the
// work tree has changes other than the benchmark's own report.
func gitDescribe(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "(not a git checkout)"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--",
		".", ":(exclude)bench/REPORT.md", ":(exclude)bench/report.json").Output(); err == nil && len(st) > 0 {
		c += "+dirty"
	}
	return c
}

// peerVersions names the peers' versions as their packages or binaries
// report them.
func (b *bench) peerVersions() string {
	var v []string
	for _, p := range []string{"curl", "openssl", "httpdirfs", "docker-registry"} {
		out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", p).Output()
		if err == nil && len(out) > 0 {
			v = append(v, p+" "+string(out))
		}
	}
	if b.crane != "" {
		if out, err := exec.Command(b.crane, "version").Output(); err == nil {
			v = append(v, "crane "+strings.TrimSpace(string(out)))
		}
	}
	return strings.Join(v, ", ")
}
