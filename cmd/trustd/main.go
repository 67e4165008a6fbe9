// Command trustd enforces image signatures on a containerd node. It only
// wires: flags, configuration, signals and subcommands; the logic lives in
// the packages policy, cache, verify and plugin.
//
// Exit codes: 0 allowed / success, 1 denied / check failed, 2 usage or
// configuration error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/trustd/trustd/plugin/daemon"
	"github.com/trustd/trustd/plugin/engine"
	"github.com/trustd/trustd/plugin/gate"
	"github.com/trustd/trustd/plugin/metrics"
	"github.com/trustd/trustd/plugin/selfcheck"

	"github.com/trustd/trustd/internal/pullgate"
)

const (
	exitOK     = 0
	exitDenied = 1
	exitUsage  = 2
)

// DefaultConfig is the policy file used when neither --config nor
// TRUSTD_CONFIG is given.
const DefaultConfig = pullgate.DefaultConfig

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// usageError marks a command-line mistake (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if filepath.Base(args[0]) == gate.VerifierName {
		return runVerifier(args[1:], stdin, stdout, stderr)
	}
	global, args, err := leadingOptions(args)
	if err != nil {
		fmt.Fprintf(stderr, "trustd: %v\n\n%s", err, usage)
		return exitUsage
	}
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[1], withOptions(args[1], args[2:], global)
	var code int
	switch cmd {
	case "run":
		code, err = cmdRun(rest, stderr)
	case "sync":
		code, err = cmdSync(rest, stdout, stderr)
	case "verify":
		code, err = cmdVerify(rest, stdout, stderr)
	case "inspect":
		code, err = cmdInspect(rest, stdout, stderr)
	case "policy":
		code, err = cmdPolicy(rest, stdout, stderr)
	case "status":
		code, err = cmdStatus(rest, stdout, stderr)
	case "cache":
		code, err = cmdCache(rest, stdin, stdout, stderr)
	case "repo":
		code, err = cmdRepo(rest, stdout, stderr)
	case gate.VerifierName:
		return runVerifier(rest, stdin, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "trustd: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
			if !errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(stderr, "trustd %s: %v\n", cmd, err)
			}
			return exitUsage
		}
		fmt.Fprintf(stderr, "trustd %s: %v\n", cmd, err)
		if errors.Is(err, engine.ErrConfig) {
			return exitUsage
		}
		if code == exitOK {
			code = exitDenied
		}
	}
	return code
}

// globalOptions are the options that may come before the command as well
// as after it: `trustd --config PATH COMMAND` is `trustd COMMAND --config PATH`.
var globalOptions = []string{"config", "containerd-config"}

// leadingOptions takes the global options that come before the command out
// of args (args[0] is the program).
func leadingOptions(args []string) (opts, rest []string, err error) {
	rest = []string{args[0]}
	i := 1
	for ; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "-h" || a == "--help" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !slices.Contains(globalOptions, name) {
			return nil, nil, fmt.Errorf("unknown option %q before the command (only --config and --containerd-config may come first)", a)
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("option %s needs a value", a)
			}
			i++
			value = args[i]
		}
		opts = append(opts, "--"+name+"="+value)
	}
	return opts, append(rest, args[i:]...), nil
}

// withOptions puts the leading global options where cmd's flag parsing
// reads them: after the command, or after its verb (policy check, cache
// export). --containerd-config goes only to the commands that take it.
func withOptions(cmd string, rest, opts []string) []string {
	if len(opts) == 0 || cmd == "repo" { // repo reads no policy
		return rest
	}
	var take []string
	for _, o := range opts {
		if strings.HasPrefix(o, "--containerd-config=") && cmd != "run" && cmd != "status" {
			continue
		}
		take = append(take, o)
	}
	if (cmd == "policy" || cmd == "cache") && len(rest) > 0 {
		return slices.Concat(rest[:1], take, rest[1:])
	}
	return slices.Concat(take, rest)
}

const usage = `usage: trustd [--config PATH] COMMAND [options]

Commands:
  run                         the daemon: NRI plugin, background sync, control socket
  sync                        refresh the trust cache from every source now
  verify [--namespace NS] [--json] IMAGE...
                              decide each image from the cache only (no network)
  verify --archive FILE|DIR [--name REF] [--import] [--namespace NS] [--json]
                              decide every image in a docker save or OCI layout tar (or an OCI
                              layout directory: cosign save) before it is loaded, with the cosign
                              signatures it carries; --import caches those that verify
  inspect [--json] REPOSITORY signed tags, digests and signers from the cache
  policy check [FILE]         parse and validate a policy file
  status [--json]             per source: last sync, versions, expiry
  cache export FILE [PATTERN...]
                              write verified trust data (and signed manifests) for an air-gapped node
  cache import FILE           re-verify a bundle against this node's policy and install what is newer
  repo init|sign|unsign|delegate|keygen|status|refresh|sign-metadata|rotate DIR ...
                              publish: a TUF repository of signed image tags (trustd repo for details)

--config PATH defaults to $TRUSTD_CONFIG, then /etc/trustd/policy.toml.
trustd trustd-verifier ARGS (or trustd invoked as trustd-verifier) speaks containerd's
image verifier protocol, deciding from the cache when the daemon does not answer; the
trustd-verifier executable runs it when no daemon is listening.
Exit codes: 0 allowed/success, 1 denied/check failed, 2 usage or configuration error.
`

// newFlags returns a flag set with the --config flag every command takes.
func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("trustd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := os.Getenv("TRUSTD_CONFIG")
	if def == "" {
		def = DefaultConfig
	}
	cfg := fs.String("config", def, "policy file (env TRUSTD_CONFIG)")
	return fs, cfg
}

// parseInterleaved parses flags that may come before or after positional
// arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func daemonLogger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("TRUSTD_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

func cmdRun(args []string, stderr io.Writer) (int, error) {
	fs, cfg := newFlags("run", stderr)
	ctrdCfg := fs.String("containerd-config", envOr("TRUSTD_CONTAINERD_CONFIG", ""), "containerd's config file, checked at start and on reload for settings that let images through (default: the running containerd's, from its command line, else "+selfcheck.DefaultContainerdConfig+"; env TRUSTD_CONTAINERD_CONFIG)")
	if pos, err := parseInterleaved(fs, args); err != nil {
		return exitUsage, err
	} else if len(pos) > 0 {
		return exitUsage, usageError{"run takes no arguments"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := daemonLogger(stderr)
	stopProfiling, err := startProfiling()
	defer func() {
		if err := stopProfiling(); err != nil {
			log.Error("writing profiles", "error", err.Error())
		}
	}()
	if err != nil {
		return exitUsage, err
	}
	d := &daemon.Daemon{ConfigPath: *cfg, Log: log, ContainerdConfig: *ctrdCfg, Metrics: metrics.NewMetrics()}
	if err := d.Run(ctx); err != nil {
		log.Error("trustd failed", "error", err.Error())
		return exitDenied, err
	}
	return exitOK, nil
}

func signalNotify(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
}

// envOr returns the environment variable's value, or def when it is unset.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
