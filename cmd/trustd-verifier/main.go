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
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Set at build time with -ldflags -X.
var (
	// defaultTrustd is the trustd binary when neither $TRUSTD_BIN nor a
	// `trustd` next to this executable names one.
	defaultTrustd = "/usr/bin/trustd"
	// deadline bounds the exchange with the daemon, well inside the 10 s
	// containerd gives a verifier, and longer than the 6 s the daemon may
	// spend fetching a denied image's trust data.
	deadline = "8s"
)

const (
	name          = "trustd-verifier" // plugin.VerifierName
	defaultConfig = "/etc/trustd/policy.toml"
	maxPolicy     = 1 << 20  // policy.MaxSize
	maxStdin      = 64 << 10 // plugin's bound on the descriptor
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// pull is what this program reads of its arguments: enough to know
// whether the daemon would read standard input, and to name the image in
// a reason it gives itself. The daemon parses the arguments for good.
type pull struct {
	name, digest string
	parsed       bool // the arguments parse as flags
	json         bool // and standard input is JSON (the descriptor)
}

func parseArgs(args []string) pull {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var p pull
	var mediaType string
	fs.StringVar(&p.name, "name", "", "image reference being pulled")
	fs.StringVar(&p.digest, "digest", "", "digest of the image being pulled")
	fs.StringVar(&mediaType, "stdin-media-type", "", "media type of standard input")
	p.parsed = fs.Parse(args) == nil
	p.json = p.parsed && strings.Contains(mediaType, "json")
	return p
}

func run(args []string) int {
	start := time.Now()
	p := parseArgs(args)
	limit, err := time.ParseDuration(deadline)
	if err != nil {
		return deny(p, "built with a bad deadline: "+err.Error())
	}
	cfg := os.Getenv("TRUSTD_CONFIG")
	if cfg == "" {
		cfg = defaultConfig
	}
	policy, err := readPolicy(cfg)
	if err != nil {
		return fallback(args, p, err.Error())
	}
	sock, ok := controlSocket(policy)
	if !ok {
		return fallback(args, p, cfg+" names its control socket in a form this program does not read")
	}
	c, err := dial(sock, start.Add(limit))
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return fallback(args, p, "no daemon: "+err.Error())
	}
	if err != nil {
		return deny(p, err.Error())
	}
	defer c.close()
	call := relayCall{args: args, config: cfg, policy: policy, socket: sock}
	if p.json {
		call.stdin, err = io.ReadAll(io.LimitReader(os.Stdin, maxStdin+1))
		if err != nil {
			call.stdinErr = err.Error()
		}
	}
	code, out, err := c.relay(call)
	if errors.Is(err, errNotServed) {
		// An older daemon (before an upgrade's restart): trustd decides
		// from the cache, given the standard input already read.
		return child(args, p, call.stdin, err.Error())
	}
	if err != nil {
		return deny(p, err.Error())
	}
	os.Stdout.Write(out)
	return code
}

// readPolicy reads the policy file as policy.Load does: at most one byte
// more than the largest policy.
func readPolicy(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxPolicy+1))
}

// fallback execs `trustd trustd-verifier ARGS...`, which decides without
// the daemon. It returns only if that fails: then the pull is blocked,
// with why the daemon was not asked.
func fallback(args []string, p pull, why string) int {
	bin, err := trustdBinary()
	if err == nil {
		err = syscall.Exec(bin, append([]string{bin, name}, args...), os.Environ())
		err = fmt.Errorf("exec %s: %w", bin, err)
	}
	return deny(p, why+"; and the trustd binary cannot decide instead: "+err.Error())
}

// child runs `trustd trustd-verifier ARGS...` with stdin as its standard
// input and passes on its answer: fallback, once standard input is read.
func child(args []string, p pull, stdin []byte, why string) int {
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
func deny(p pull, reason string) int {
	os.Stdout.WriteString(denial(p, reason))
	return 1
}

// denial is the line of a pull that could not be decided, in the words of
// plugin.RunVerifier.
func denial(p pull, reason string) string {
	if p.name == "" {
		return "trustd: denied: could not decide: " + sanitize(reason) + "\n"
	}
	return fmt.Sprintf("trustd: denied %s (%s): could not decide: %s\n", sanitize(p.name), sanitize(p.digest), sanitize(reason))
}

// sanitize makes hostile text safe for one line, as plugin's sanitize
// does: control characters are escaped.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
