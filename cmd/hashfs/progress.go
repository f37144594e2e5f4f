package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// progress reports bytes done against a total: a redrawn bar on a
// terminal, a plain line every few seconds otherwise (a log file of
// --background, a pipe).
type progress struct {
	w       io.Writer
	tty     bool
	total   int64
	done    atomic.Int64
	start   time.Time
	stop    chan struct{}
	stopped sync.WaitGroup
}

func newProgress(f *os.File, total int64) *progress {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	p := &progress{w: f, tty: err == nil, total: total, start: time.Now(), stop: make(chan struct{})}
	every := 2 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	p.stopped.Add(1)
	go func() {
		defer p.stopped.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.print(false)
			}
		}
	}()
	return p
}

func (p *progress) add(n int64) { p.done.Add(n) }

// finish prints the last line.
func (p *progress) finish() {
	close(p.stop)
	p.stopped.Wait()
	p.print(true)
}

// summary ends plain output (a log, a pipe) with msg, so that whoever
// reads it knows the work finished; the bar on a terminal says enough.
func (p *progress) summary(msg string) {
	if !p.tty {
		fmt.Fprintln(p.w, msg)
	}
}

func (p *progress) print(last bool) {
	done := p.done.Load()
	el := time.Since(p.start).Seconds()
	rate := float64(done) / max(el, 1e-3)
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(done) / float64(p.total)
	}
	eta := "-"
	if rate > 0 && p.total > done {
		eta = time.Duration(float64(p.total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	line := fmt.Sprintf("%s / %s  %5.1f%%  %s/s  ETA %s", human(done), human(p.total), pct, human(int64(rate)), eta)
	switch {
	case p.tty && last:
		fmt.Fprintf(p.w, "\r\033[K%s\n", line)
	case p.tty:
		const width = 30
		n := int(pct / 100 * width)
		bar := make([]byte, width)
		for i := range bar {
			bar[i] = ' '
			if i < n {
				bar[i] = '='
			}
		}
		fmt.Fprintf(p.w, "\r\033[K[%s] %s", bar, line)
	default:
		fmt.Fprintln(p.w, line)
	}
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
