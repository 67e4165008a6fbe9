// Command trustd-verifier is trustd's pull gate: containerd's image
// verifier (the bindir plugin) runs it on every pull as
// `trustd-verifier -name REF -digest DIGEST -stdin-media-type TYPE`, with
// the descriptor on standard input; exit 0 allows the pull, anything else
// blocks it with standard output as the reason.
//
// It is linked with the standard library only (TestStandardLibraryOnly
// keeps it so), which makes it start in about a millisecond where the
// trustd binary needs several, and it judges nothing itself:
//
//   - it reads daemon.control_socket from the policy file ($TRUSTD_CONFIG,
//     else /etc/trustd/policy.toml) and relays its arguments, its standard
//     input and the policy file to the daemon listening there (POST
//     /v1/verifier). The daemon runs the code of `trustd trustd-verifier`
//     on them (plugin.RunVerifier) and this program prints its answer and
//     exits with its code.
//   - When no daemon listens there (no socket, connection refused), or the
//     policy file cannot be read or names its control socket in a form this
//     program does not read, it execs `trustd trustd-verifier` with the same
//     arguments, environment and standard input, which decides from the
//     cache as the trustd binary always has.
//   - Any other failure blocks the pull (fail closed) and says why.
//
// The trustd binary is $TRUSTD_BIN if set, else `trustd` in the directory of
// this executable (symbolic links resolved) if there is one, else
// /usr/bin/trustd (set at build time with -ldflags '-X main.defaultTrustd=PATH').
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/trustd/trustd/internal/pullgate"
)

// Set at build time with -ldflags -X.
var (
	// defaultTrustd is the trustd binary when neither $TRUSTD_BIN nor a
	// `trustd` next to this executable names one.
	defaultTrustd = "/usr/bin/trustd"
	// deadline overrides pullgate.Deadline (tests build with a short one).
	deadline = ""
)

const name = pullgate.Name

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	start := time.Now()
	p := pullgate.ParseArgs(args)
	limit := pullgate.Deadline
	if deadline != "" {
		d, err := time.ParseDuration(deadline)
		if err != nil {
			return deny(p, "built with a bad deadline: "+err.Error())
		}
		limit = d
	}
	r, err := pullgate.Relay(args, os.Stdin, pullgate.ConfigPath(), start.Add(limit))
	switch {
	case errors.Is(err, pullgate.ErrNoDaemon):
		return fallback(args, p, err.Error())
	case errors.Is(err, pullgate.ErrNotServed):
		// An older daemon (before an upgrade's restart): trustd decides
		// from the cache, given the standard input already read.
		return child(args, p, r.Stdin, err.Error())
	case err != nil:
		return deny(p, err.Error())
	}
	os.Stdout.Write(r.Output)
	return r.Code
}

// fallback execs `trustd trustd-verifier ARGS...`, which decides without
// the daemon. It returns only if that fails: then the pull is blocked,
// with why the daemon was not asked.
func fallback(args []string, p pullgate.Args, why string) int {
	bin, err := trustdBinary()
	if err == nil {
		err = syscall.Exec(bin, append([]string{bin, name}, args...), os.Environ())
		err = fmt.Errorf("exec %s: %w", bin, err)
	}
	return deny(p, why+"; and the trustd binary cannot decide instead: "+err.Error())
}

// child runs `trustd trustd-verifier ARGS...` with stdin as its standard
// input and passes on its answer: fallback, once standard input is read.
func child(args []string, p pullgate.Args, stdin []byte, why string) int {
	bin, err := trustdBinary()
	if err != nil {
		return deny(p, why+"; and the trustd binary cannot decide instead: "+err.Error())
	}
	cmd := exec.Command(bin, append([]string{name}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), os.Stdout, os.Stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	}
	return deny(p, why+"; and the trustd binary cannot decide instead: "+err.Error())
}

// trustdBinary finds the trustd binary: $TRUSTD_BIN, `trustd` next to
// this executable, or defaultTrustd. It is never this program.
func trustdBinary() (string, error) {
	bin := os.Getenv("TRUSTD_BIN")
	if bin == "" {
		bin = defaultTrustd
		if self, err := os.Executable(); err == nil {
			if next := filepath.Join(filepath.Dir(self), "trustd"); isFile(next) {
				bin = next
			}
		}
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return "", err
	}
	if self, err := os.Stat("/proc/self/exe"); err == nil && os.SameFile(fi, self) {
		return "", fmt.Errorf("%s is this program, not trustd", bin)
	}
	return bin, nil
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// deny blocks the pull because it could not be decided.
func deny(p pullgate.Args, reason string) int {
	os.Stdout.WriteString(pullgate.Undecided(p.Name, p.Digest, reason))
	return 1
}
