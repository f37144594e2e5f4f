package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// readyFDEnv names the pipe a daemon child reports on: "ok" once the mount
// is live, or the error that stopped it.
const readyFDEnv = "HASHFS_READY_FD"

// daemonize starts this program again with args (without --daemon) in a
// new session, detached from the terminal, and returns once the child
// reports the mount ready (nil) or failed (its error). The child's logs
// go to logFile, or nowhere when it is empty.
func daemonize(args []string, logFile string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if logFile != "" {
		out, err = os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	}
	if err != nil {
		w.Close()
		return fmt.Errorf("--log-file: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, out, out
	cmd.ExtraFiles = []*os.File{w} // fd 3 in the child
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	w.Close()
	line, rerr := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "ok" {
		cmd.Process.Release()
		return nil
	}
	werr := cmd.Wait()
	switch {
	case line != "":
		return errors.New(line)
	case rerr != nil && werr != nil:
		return fmt.Errorf("the daemon exited before mounting: %v", werr)
	}
	return errors.New("the daemon exited before mounting")
}

// withoutDaemonFlag drops --daemon (and --daemon=true) from args.
func withoutDaemonFlag(args []string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if a == "--daemon" || a == "--daemon=true" {
			continue
		}
		out = append(out, a)
	}
	return out
}

// readyReporter returns the function a daemon child calls once mounted,
// and the one that reports a failure; both do nothing outside --daemon.
func readyReporter() (ready func(), failed func(error)) {
	fd, err := strconv.Atoi(os.Getenv(readyFDEnv))
	if err != nil {
		return func() {}, func(error) {}
	}
	os.Unsetenv(readyFDEnv)
	f := os.NewFile(uintptr(fd), "ready")
	ready = func() { fmt.Fprintln(f, "ok"); f.Close() }
	failed = func(err error) { fmt.Fprintln(f, strings.ReplaceAll(err.Error(), "\n", " ")); f.Close() }
	return ready, failed
}
