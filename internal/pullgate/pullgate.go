// Package pullgate is the one copy of the contract between trustd's pull
// gate and its daemon, linked by both sides: the trustd-verifier
// executable (which must link the standard library only, to start in about
// a millisecond), `trustd trustd-verifier` (the same gate in the trustd
// binary, used when no daemon runs) and the daemon's control socket.
//
// containerd's image verifier runs the gate on every pull as
// `trustd-verifier -name REF -digest DIGEST -stdin-media-type TYPE`, the
// descriptor on standard input; exit 0 allows the pull, anything else
// blocks it with standard output as the reason. A pull has one protocol:
// Relay sends the arguments, standard input and policy file to the daemon
// (POST Path on the control socket), which runs the gate's code on them and
// answers with its output and exit code (ExitHeader). Without a daemon the
// trustd binary decides from its cache, with the same code.
//
// This package imports the standard library only (TestStandardLibraryOnly
// in cmd/trustd-verifier keeps it so). Its functions are safe for
// concurrent use.
package pullgate

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

const (
	// Name is the gate's name in containerd's image verifier bin_dir: the
	// trustd-verifier executable, and the subcommand and argv[0] under
	// which the trustd binary speaks the protocol itself.
	Name = "trustd-verifier"
	// Path is the control socket's endpoint for a relayed pull.
	Path = "/v1/verifier"
	// ExitHeader carries the exit code of a relayed pull; the response
	// body is its standard output.
	ExitHeader = "Trustd-Exit"
	// DefaultConfig is the policy file when $TRUSTD_CONFIG is not set.
	DefaultConfig = "/etc/trustd/policy.toml"
	// DefaultSocket is the control socket when the policy names none.
	DefaultSocket = "/run/trustd/trustd.sock"
	// MaxPolicy is the largest policy file (the policy loader's bound).
	MaxPolicy = 1 << 20
	// MaxStdin bounds the descriptor read from standard input.
	MaxStdin = 64 << 10
	// MaxCall bounds a Call on the wire: the policy file and the
	// descriptor, base64-encoded, and the arguments.
	MaxCall = 2*(MaxPolicy+MaxStdin) + 1<<20
	// Deadline bounds a pull's decision, well inside the 10 s containerd
	// gives a verifier, and longer than the 6 s the daemon may spend
	// fetching a denied image's trust data.
	Deadline = 8 * time.Second
)

// ConfigPath is the policy file the gate reads: $TRUSTD_CONFIG, else
// DefaultConfig.
func ConfigPath() string {
	if c := os.Getenv("TRUSTD_CONFIG"); c != "" {
		return c
	}
	return DefaultConfig
}

// ErrNoDaemon is matched (errors.Is) by Relay's error when no daemon can be
// asked: no socket, connection refused, or a policy file the relay cannot
// read its control socket from. The caller decides without the daemon;
// standard input was not read.
var ErrNoDaemon = errors.New("no daemon")

// Result is a relayed pull's answer.
type Result struct {
	// Code is the gate's exit code (0 allows), Output its standard output.
	Code   int
	Output []byte
	// Stdin is the standard input Relay read, when it read it: a caller
	// that decides after a failed relay must use it.
	Stdin []byte
	// StdinRead is true when Relay consumed standard input.
	StdinRead bool
}

// Relay asks the daemon named by the policy file at config to run the pull
// gate on args and stdin, before deadline. Its error matches ErrNoDaemon
// when no daemon can be asked and ErrNotServed when the daemon does not
// serve the relay (an older trustd); any other error means the daemon
// could not answer in time or in form. It reads standard input only when
// the media type says it is JSON (the descriptor).
func Relay(args []string, stdin io.Reader, config string, deadline time.Time) (Result, error) {
	var r Result
	policy, err := readPolicy(config)
	if err != nil {
		return r, fmt.Errorf("%w: %w", ErrNoDaemon, err)
	}
	sock, ok := controlSocket(policy)
	if !ok {
		return r, fmt.Errorf("%w: %s names its control socket in a form the verifier does not read", ErrNoDaemon, config)
	}
	c, err := dial(sock, deadline)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return r, fmt.Errorf("%w: %w", ErrNoDaemon, err)
	}
	if err != nil {
		return r, err
	}
	defer c.close()
	call := &Call{Args: make([][]byte, len(args)), Config: config, Policy: policy, Socket: sock}
	for i, a := range args {
		call.Args[i] = []byte(a)
	}
	if ParseArgs(args).JSON {
		call.Stdin, err = io.ReadAll(io.LimitReader(stdin, MaxStdin+1))
		if err != nil {
			call.StdinError = err.Error()
		}
		r.Stdin, r.StdinRead = call.Stdin, true
	}
	r.Code, r.Output, err = c.relay(call)
	return r, err
}

// readPolicy reads the policy file as the policy loader does: at most one
// byte more than the largest policy.
func readPolicy(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxPolicy+1))
}

// Args is what the gate's arguments say, read leniently: enough to know
// whether standard input is the descriptor, and to name the image in a
// reason. The daemon parses them for good.
type Args struct {
	Name, Digest, MediaType string
	// Parsed is true when the arguments parse as the gate's flags.
	Parsed bool
	// JSON is true when they parse and standard input is JSON.
	JSON bool
}

// ParseArgs reads `-name REF -digest DIGEST -stdin-media-type TYPE` as
// Go's flag package does.
func ParseArgs(args []string) Args {
	fs := flag.NewFlagSet(Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var a Args
	fs.StringVar(&a.Name, "name", "", "image reference being pulled")
	fs.StringVar(&a.Digest, "digest", "", "digest of the image being pulled")
	fs.StringVar(&a.MediaType, "stdin-media-type", "", "media type of standard input")
	a.Parsed = fs.Parse(args) == nil
	a.JSON = a.Parsed && strings.Contains(a.MediaType, "json")
	return a
}

// Sanitize makes hostile text safe for one log or terminal line: control
// characters are escaped, line breaks and tabs become spaces.
func Sanitize(s string) string {
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

// Undecided is the gate's line for a pull it could not decide (which it
// blocks): the image and digest when known, and why.
func Undecided(name, digest, reason string) string {
	if name == "" {
		return "trustd: denied: could not decide: " + Sanitize(reason) + "\n"
	}
	return fmt.Sprintf("trustd: denied %s (%s): could not decide: %s\n", Sanitize(name), Sanitize(digest), Sanitize(reason))
}
