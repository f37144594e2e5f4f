package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
	_, err := startDetached(args, logFile, "the daemon exited before mounting")
	return err
}

// background runs the command of this process again without
// --background, detached like a daemon, with its output (progress lines
// included) appended to logFile, a new temporary file when empty. It
// returns once the child has checked its arguments and started the work,
// or with the reason it could not, and tells w the child's pid and log.
func background(w io.Writer, name, logFile string) error {
	made := false
	if logFile == "" {
		f, err := os.CreateTemp("", "hashfs-"+name+"-*.log")
		if err != nil {
			return err
		}
		f.Close()
		logFile, made = f.Name(), true
	}
	pid, err := startDetached(withoutFlag(os.Args[1:], "background"), logFile, "the background "+name+" exited before starting")
	if err != nil {
		if made {
			os.Remove(logFile)
		}
		return err
	}
	abs, aerr := filepath.Abs(logFile)
	if aerr == nil {
		logFile = abs
	}
	fmt.Fprintf(w, "hashfs %s: running in the background as pid %d; progress and errors go to %s\n", name, pid, logFile)
	return nil
}

// startDetached starts this program again with args in a new session,
// its output appended to logFile (discarded when empty), and waits for
// the child's first report on the ready pipe: its pid once it says "ok",
// else its error (or exited when it said nothing).
func startDetached(args []string, logFile, exited string) (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	out, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if logFile != "" {
		out, err = os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	}
	if err != nil {
		w.Close()
		return 0, fmt.Errorf("--log-file: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, out, out
	cmd.ExtraFiles = []*os.File{w} // fd 3 in the child
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return 0, err
	}
	w.Close()
	line, rerr := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "ok" {
		pid := cmd.Process.Pid
		cmd.Process.Release()
		return pid, nil
	}
	werr := cmd.Wait()
	switch {
	case line != "":
		return 0, errors.New(line)
	case rerr != nil && werr != nil:
		return 0, fmt.Errorf("%s: %v", exited, werr)
	}
	return 0, errors.New(exited)
}

// withoutDaemonFlag drops --daemon (and --daemon=true) from args.
func withoutDaemonFlag(args []string) []string { return withoutFlag(args, "daemon") }

// withoutFlag drops the boolean flag --name (and --name=true) from args.
func withoutFlag(args []string, name string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if a == "--"+name || a == "--"+name+"=true" {
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
