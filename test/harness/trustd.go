package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// trustdReadyTimeout bounds trustd's start until it sends READY=1.
	trustdReadyTimeout = 30 * time.Second
	// trustdStopGrace is how long Stop waits after SIGTERM before SIGKILL.
	trustdStopGrace = 15 * time.Second
)

// Trustd is a running `trustd run`. Its methods are safe for concurrent use.
type Trustd struct {
	// LogPath is the file holding trustd's stderr (JSON lines).
	LogPath string

	proc   *process
	logs   *logBuffer
	notify *net.UnixConn
	ready  chan struct{} // closed when READY=1 arrives

	mu    sync.Mutex
	notes []string // sd_notify assignments received, in order
}

// StartTrustd runs `<bin> run --config <policyPath>` with extraEnv added to
// this process's environment, and NOTIFY_SOCKET set to a datagram socket
// the harness reads, as systemd does for a Type=notify unit. It returns once
// trustd sends READY=1, and fails the test (with the tail of trustd's
// stderr) if trustd exits first or is not ready within 30 s. The process is
// stopped on cleanup.
func StartTrustd(t TB, bin, policyPath string, extraEnv ...string) *Trustd {
	t.Helper()
	dir := shortTempDir(t, "trustd-run-")
	notifyPath := filepath.Join(dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatalf("notify socket: %v", err)
	}
	logPath := filepath.Join(t.TempDir(), fmt.Sprintf("trustd-%d.log", time.Now().UnixNano()))
	logFile, err := os.Create(logPath)
	if err != nil {
		notify.Close()
		t.Fatalf("%v", err)
	}
	td := &Trustd{LogPath: logPath, logs: newLogBuffer(logFile), notify: notify, ready: make(chan struct{})}
	go td.readNotifications()

	cmd := exec.Command(bin, "run", "--config", policyPath)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath)
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stdout = td.logs
	cmd.Stderr = td.logs
	start := time.Now()
	td.proc, err = startProcess(cmd)
	if err != nil {
		notify.Close()
		logFile.Close()
		t.Fatalf("start trustd: %v", err)
	}
	t.Cleanup(func() {
		if err := td.Stop(); err != nil {
			t.Logf("trustd stop: %v", err)
		}
		notify.Close()
		logFile.Close()
		if t.Failed() {
			t.Logf("trustd log %s, last lines:\n%s", logPath, tailLines(td.logs.Bytes(), 40))
		}
	})

	select {
	case <-td.ready:
	case <-td.proc.done:
		t.Fatalf("trustd run --config %s exited before READY=1: %v\ntrustd stderr (last lines):\n%s", policyPath, td.proc.err, tailLines(td.logs.Bytes(), 40))
	case <-time.After(trustdReadyTimeout):
		td.proc.kill()
		t.Fatalf("trustd run --config %s: no READY=1 within %v\ntrustd stderr (last lines):\n%s", policyPath, trustdReadyTimeout, tailLines(td.logs.Bytes(), 40))
	}
	t.Logf("trustd ready in %v (pid %d)", time.Since(start).Round(time.Millisecond), cmd.Process.Pid)
	return td
}

// readNotifications records sd_notify datagrams until the socket is closed.
func (td *Trustd) readNotifications() {
	buf := make([]byte, 4096)
	for {
		n, _, err := td.notify.ReadFromUnix(buf)
		if err != nil {
			return
		}
		td.mu.Lock()
		for line := range strings.Lines(string(buf[:n])) {
			line = strings.TrimSpace(line)
			td.notes = append(td.notes, line)
			if line == "READY=1" && !slices.Contains(td.notes[:len(td.notes)-1], "READY=1") {
				close(td.ready)
			}
		}
		td.mu.Unlock()
	}
}

// Notifications returns the sd_notify assignments trustd sent so far
// ("READY=1", "STOPPING=1", "STATUS=...").
func (td *Trustd) Notifications() []string {
	td.mu.Lock()
	defer td.mu.Unlock()
	return slices.Clone(td.notes)
}

// WaitNotification waits until trustd has sent the sd_notify assignment
// (e.g. "STOPPING=1"); datagrams sent just before it exited may still be
// queued when Stop returns.
func (td *Trustd) WaitNotification(assignment string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !slices.Contains(td.Notifications(), assignment) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s from trustd within %v (got %q)", assignment, timeout, td.Notifications())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// Pid is trustd's process ID.
func (td *Trustd) Pid() int { return td.proc.cmd.Process.Pid }

// Stop sends SIGTERM and waits for trustd to exit (SIGKILL after 15 s). It
// returns an error if trustd did not exit with status 0. Stopping a stopped
// trustd returns nil.
func (td *Trustd) Stop() error {
	if td.proc.exited() {
		return nil
	}
	if err := td.proc.stop(trustdStopGrace); err != nil {
		return fmt.Errorf("trustd exited with %v on SIGTERM", err)
	}
	return nil
}

// Kill sends SIGKILL (a crash) and waits for trustd to exit.
func (td *Trustd) Kill() { td.proc.kill() }

// Logs returns what trustd wrote to stderr (and stdout) so far.
func (td *Trustd) Logs() string { return string(td.logs.Bytes()) }

// WaitLog waits until a line of trustd's log contains every one of substrs,
// and returns that line.
func (td *Trustd) WaitLog(timeout time.Duration, substrs ...string) (string, error) {
	line, err := td.logs.waitLine(timeout, substrs)
	if err != nil {
		return "", fmt.Errorf("trustd log: %w", err)
	}
	return line, nil
}

func containsAll(s string, substrs []string) bool {
	for _, sub := range substrs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// logBuffer keeps what a process writes, copies it to a file, and tells
// waiters when it grows.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	file    *os.File
	changed chan struct{} // closed and replaced on each write
}

func newLogBuffer(f *os.File) *logBuffer {
	return &logBuffer{file: f, changed: make(chan struct{})}
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	_, _ = l.file.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *logBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf.Bytes())
}

// waitLine waits until a line written contains every one of substrs, and
// returns that line.
func (l *logBuffer) waitLine(timeout time.Duration, substrs []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		changed := l.Changed()
		for line := range strings.Lines(string(l.Bytes())) {
			if containsAll(line, substrs) {
				return strings.TrimSpace(line), nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("no line with %q within %v", substrs, timeout)
		}
	}
}

// Changed returns a channel closed at the next write.
func (l *logBuffer) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// CLIResult is the outcome of one trustd command.
type CLIResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// RunTrustdCLI runs `<bin> args...` to completion (2 min at most) with
// extraEnv added to this process's environment. A non-zero exit is a
// result, not a failure; failing to run the binary fails the test.
func RunTrustdCLI(t TB, bin string, extraEnv []string, args ...string) CLIResult {
	t.Helper()
	return runToExit(t, "trustd", bin, extraEnv, args...)
}

// runToExit runs `<bin> args...` to completion (2 min at most) with
// extraEnv added to this process's environment; name names the command in
// a failure. A non-zero exit is a result, not a failure; failing to run the
// binary fails the test.
func runToExit(t TB, name, bin string, extraEnv []string, args ...string) CLIResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := CLIResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		res.ExitCode = ee.ExitCode()
	default:
		t.Fatalf("%s %s: %v\nstderr:\n%s", name, strings.Join(args, " "), err, res.Stderr)
	}
	return res
}

// shortTempDir makes a directory under the system temporary directory,
// removed on cleanup: unix socket paths must stay under 108 bytes, which a
// TB.TempDir named after a long test name may not.
func shortTempDir(t TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
