package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dropCaches writes back dirty pages and drops the page cache, dentries
// and inodes. It needs root; the error says why it could not.
func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

// mountEntry finds dir in /proc/self/mountinfo and returns its device
// ("0:57") and filesystem type, or ok=false.
func mountEntry(dir string) (dev, fstype string, ok bool) {
	dir = filepath.Clean(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || unescapeMount(fields[4]) != dir {
			continue
		}
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) {
				fstype = fields[i+1]
			}
		}
		dev, ok = fields[2], true
	}
	return dev, fstype, ok
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readaheadPath is the sysfs knob of the mount's backing device.
func readaheadPath(dir string) (string, error) {
	dev, _, ok := mountEntry(dir)
	if !ok {
		return "", fmt.Errorf("%s is not mounted", dir)
	}
	return "/sys/class/bdi/" + dev + "/read_ahead_kb", nil
}

func getReadahead(dir string) (int, error) {
	p, err := readaheadPath(dir)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func setReadahead(dir string, kb int) error {
	p, err := readaheadPath(dir)
	if err != nil {
		return err
	}
	return os.WriteFile(p, []byte(strconv.Itoa(kb)), 0o200)
}

// vmHWM reads the peak resident set size of pid in bytes.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// cleanups runs registered functions in reverse order, once.
type cleanups struct{ fns []func() }

func (c *cleanups) add(fn func()) { c.fns = append(c.fns, fn) }

func (c *cleanups) run() {
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
	c.fns = nil
}

// balloonReportsFreePages reports whether a virtio balloon here has free
// page reporting (feature bit 5, VIRTIO_BALLOON_F_REPORTING) on: pages
// the guest frees go back to the host and fault there when used again.
func balloonReportsFreePages() bool {
	ms, _ := filepath.Glob("/sys/bus/virtio/drivers/virtio_balloon/virtio*/features")
	for _, m := range ms {
		if b, err := os.ReadFile(m); err == nil && len(b) > 5 && b[5] == '1' {
			return true
		}
	}
	return false
}

// damonPageout describes a DAMON context that pages out memory idle for
// a while (proactive reclaim, as a host overcommitting its VMs sets up),
// e.g. "DAMON pages out memory idle for 60 s", or "" if there is none.
func damonPageout() string {
	ks, _ := filepath.Glob("/sys/kernel/mm/damon/admin/kdamonds/*")
	for _, k := range ks {
		if state, _ := os.ReadFile(filepath.Join(k, "state")); strings.TrimSpace(string(state)) != "on" {
			continue
		}
		ctxs, _ := filepath.Glob(filepath.Join(k, "contexts/*"))
		for _, c := range ctxs {
			aggr := readInt(filepath.Join(c, "monitoring_attrs/intervals/aggr_us"))
			schemes, _ := filepath.Glob(filepath.Join(c, "schemes/*"))
			for _, s := range schemes {
				if a, _ := os.ReadFile(filepath.Join(s, "action")); strings.TrimSpace(string(a)) != "pageout" {
					continue
				}
				age := readInt(filepath.Join(s, "access_pattern/age/min"))
				if aggr > 0 && age > 0 {
					return fmt.Sprintf("DAMON pages out memory idle for %s", time.Duration(age*aggr)*time.Microsecond)
				}
				return "DAMON pages out idle memory"
			}
		}
	}
	return ""
}

// hostReclaim says how the host takes this VM's memory back, if it
// does: each such page, written again, faults in the host, which makes
// fresh page cache and heap cost several times what it costs on a
// dedicated machine, by an amount that varies from run to run.
func hostReclaim() string {
	var ways []string
	if balloonReportsFreePages() {
		ways = append(ways, "its virtio balloon reports free pages to the host")
	}
	if d := damonPageout(); d != "" {
		ways = append(ways, d)
	}
	return strings.Join(ways, ", and ")
}

func readInt(path string) int64 {
	b, _ := os.ReadFile(path)
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}
