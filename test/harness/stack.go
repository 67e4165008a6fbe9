package harness

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/distribution/reference"

	"github.com/trustd/trustd/internal/testtuf"
)

// PolicyConfig fills the host policy file the end-to-end tests use: one TUF
// source for the loopback registry, a verify rule for <Registry>/demo/**,
// and deny for everything else.
type PolicyConfig struct {
	Mode              string // enforce | audit | off
	CacheDir          string
	NRISocket         string
	ContainerdAddress string
	ControlSocket     string
	TUFURL            string
	TUFRoot           string
	Registry          string // host:port
	Refresh           string // the sync interval; "1s" if empty
	// DaemonExtra is more [daemon] keys, as TOML text (the Docker
	// authorization plugin's, say).
	DaemonExtra string
	// MetricsAddress is the daemon's metrics_address; none if empty.
	MetricsAddress string
	// Rules are more [[rule]] tables, written before the final deny-all
	// rule: TOML text, with {{.Registry}} standing for the registry.
	Rules string
	// OnlyRules leaves out the verify rule for <Registry>/demo/** and the
	// final deny-all rule: Rules are the policy's rules (and mirrors).
	OnlyRules bool
}

// policyTemplate is testdata/policy.toml.tmpl, embedded so that the
// harness writes it from any test's directory: a text/template whose
// placeholders are PolicyConfig's fields (and ExtraRules), q quoting a TOML
// string.
//
//go:embed testdata/policy.toml.tmpl
var policyTemplateText string

var policyTemplate = template.Must(template.New("policy.toml").Funcs(template.FuncMap{"q": tomlString}).Parse(policyTemplateText))

// ExtraRules is Rules with the registry filled in.
func (c PolicyConfig) ExtraRules() string {
	return strings.ReplaceAll(c.Rules, "{{.Registry}}", c.Registry)
}

// WritePolicy writes the policy file for cfg to path.
func WritePolicy(t TB, path string, cfg PolicyConfig) {
	t.Helper()
	var buf bytes.Buffer
	if err := policyTemplate.Execute(&buf, cfg); err != nil {
		t.Fatalf("policy: %v", err)
	}
	if err := testtuf.WriteFileAtomic(path, buf.Bytes()); err != nil {
		t.Fatalf("policy: %v", err)
	}
}

// NormalizeRef returns ref as trustd names images and TUF targets: the
// normalised repository with its tag (docker.io/library/nginx:1.25), tag
// "latest" when ref has neither tag nor digest.
func NormalizeRef(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", err
	}
	return reference.TagNameOnly(named).String(), nil
}

// Stack is a node enforced by trustd: a registry, a TUF repository, the
// trustd binary, a policy file and a containerd requiring trustd (NRI) with
// trustd as its image verifier. Scenarios publish targets, then Sync, then
// StartTrustd.
type Stack struct {
	Registry   string // host:port of the loopback registry
	TUF        *TUFRepo
	Bin        string // the trustd binary
	PolicyPath string
	Policy     PolicyConfig
	Node       *Node
	// Env is the environment trustd commands get: TRUSTD_CONFIG=PolicyPath.
	Env []string
	// Trustd is the running `trustd run`, if any.
	Trustd *Trustd
}

// StackOptions configure StartStack.
type StackOptions struct {
	// ContainerdVersion selects the containerd release (Options.ContainerdVersion);
	// empty: the full suite's.
	ContainerdVersion string
	// Mode is the policy mode; "enforce" if empty.
	Mode string
	// NoRequireTrustd leaves NRI's default validator off, so containers are
	// created when trustd is not connected (a benchmark baseline).
	NoRequireTrustd bool
	// Debug sets containerd's log level to debug.
	Debug bool
	// Refresh is trustd's sync interval; "1s" if empty (tests watch
	// changes land quickly; a benchmark wants less background work).
	Refresh string
}

// StartStack builds trustd, starts a registry, a TUF repository and a
// containerd configured for trustd as the policy file says, and writes the
// policy. It does not sync or start trustd.
func StartStack(t TB, opts StackOptions) *Stack {
	t.Helper()
	s := &Stack{
		Registry: StartRegistry(t),
		TUF:      NewTUFRepo(t),
		Bin:      BuildTrustd(t),
	}
	dir := shortTempDir(t, "trustd-stack-")
	verifiers := filepath.Join(dir, "verifiers")
	if err := os.Mkdir(verifiers, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	// As packaging does: bin_dir links to the trustd-verifier executable,
	// which asks the daemon, or execs the trustd built beside it.
	if err := os.Symlink(BuildVerifier(t), filepath.Join(verifiers, "trustd-verifier")); err != nil {
		t.Fatalf("%v", err)
	}
	s.PolicyPath = filepath.Join(dir, "policy.toml")
	s.Env = []string{"TRUSTD_CONFIG=" + s.PolicyPath}
	s.Node = StartContainerd(t, Options{
		ContainerdVersion: opts.ContainerdVersion,
		RequireTrustd:     !opts.NoRequireTrustd,
		VerifierBinDir:    verifiers,
		Env:               s.Env,
		Registries:        []string{s.Registry},
		Debug:             opts.Debug,
	})
	// trustd finds this node's containerd configuration from the command
	// line of the containerd serving the policy's address (no
	// TRUSTD_CONTAINERD_CONFIG), as it does on k3s or RKE2 nodes.
	mode := opts.Mode
	if mode == "" {
		mode = "enforce"
	}
	s.Policy = PolicyConfig{
		Mode:              mode,
		CacheDir:          filepath.Join(dir, "cache"),
		NRISocket:         s.Node.NRISocket,
		ContainerdAddress: s.Node.Address,
		ControlSocket:     filepath.Join(dir, "trustd.sock"),
		TUFURL:            s.TUF.URL(),
		TUFRoot:           s.TUF.RootPath(),
		Registry:          s.Registry,
		Refresh:           opts.Refresh,
	}
	WritePolicy(t, s.PolicyPath, s.Policy)
	return s
}

// SetMode rewrites the policy file with another mode. A running trustd
// sees it on its next reload or restart; the image verifier at the next pull.
func (s *Stack) SetMode(t TB, mode string) {
	t.Helper()
	s.Policy.Mode = mode
	WritePolicy(t, s.PolicyPath, s.Policy)
}

// Sync runs `trustd sync` and fails the test unless it exits 0.
func (s *Stack) Sync(t TB) {
	t.Helper()
	res := s.CLI(t, "sync", "--config", s.PolicyPath)
	if res.ExitCode != 0 {
		t.Fatalf("trustd sync: exit %d\nstdout:\n%s\nstderr:\n%s", res.ExitCode, res.Stdout, res.Stderr)
	}
}

// CLI runs a trustd command with the stack's environment.
func (s *Stack) CLI(t TB, args ...string) CLIResult {
	t.Helper()
	return RunTrustdCLI(t, s.Bin, s.Env, args...)
}

// StartTrustd starts `trustd run` with the stack's policy and sets s.Trustd.
func (s *Stack) StartTrustd(t TB) *Trustd {
	t.Helper()
	s.Trustd = StartTrustd(t, s.Bin, s.PolicyPath, s.Env...)
	return s.Trustd
}

// Ref is a reference to repository (e.g. "demo/hello:1.0") on the stack's
// registry.
func (s *Stack) Ref(repoAndTag string) string { return s.Registry + "/" + repoAndTag }

// Verdict is one object of `trustd verify --json`.
type Verdict struct {
	Image   string   `json:"image"`
	Digest  string   `json:"digest"`
	Allowed bool     `json:"allowed"`
	Rule    string   `json:"rule"`
	Source  string   `json:"source"`
	Signers []string `json:"signers"`
	Reason  string   `json:"reason"`
}

// Verify runs `trustd verify --json [args] IMAGE...` (args such as
// --archive FILE or --namespace NS come first) and returns its verdicts and
// exit code (0 all allowed, 1 one denied, 2 usage or configuration error).
func (s *Stack) Verify(t TB, args ...string) ([]Verdict, CLIResult) {
	t.Helper()
	res := s.CLI(t, append([]string{"verify", "--config", s.PolicyPath, "--json"}, args...)...)
	verdicts, err := ParseVerdicts(res.Stdout)
	if err != nil && res.ExitCode != 2 {
		t.Fatalf("trustd verify %s: exit %d: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.ExitCode, err, res.Stdout, res.Stderr)
	}
	return verdicts, res
}

// ParseVerdicts decodes `trustd verify --json` output: a stream of JSON
// objects (one per image), or arrays of them.
func ParseVerdicts(out string) ([]Verdict, error) {
	dec := json.NewDecoder(strings.NewReader(out))
	var verdicts []Verdict
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return verdicts, nil
		} else if err != nil {
			return verdicts, fmt.Errorf("decode verdicts: %w", err)
		}
		if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) {
			var vs []Verdict
			if err := json.Unmarshal(raw, &vs); err != nil {
				return verdicts, fmt.Errorf("decode verdicts: %w", err)
			}
			verdicts = append(verdicts, vs...)
			continue
		}
		var v Verdict
		if err := json.Unmarshal(raw, &v); err != nil {
			return verdicts, fmt.Errorf("decode verdict: %w", err)
		}
		verdicts = append(verdicts, v)
	}
}
