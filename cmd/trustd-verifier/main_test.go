package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/trustd/trustd/plugin/control"
	"github.com/trustd/trustd/plugin/gate"
	"github.com/trustd/trustd/plugin/local"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/internal/pullgate"
	"github.com/trustd/trustd/test/harness"
	"github.com/trustd/trustd/verify"
)

// TestStandardLibraryOnly keeps the verifier small: every package it links
// is the standard library's.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	// The contract it shares with the daemon is the only package of the
	// module it links, and that links the standard library only.
	if got := strings.Fields(string(out)); !slices.Equal(got, []string{"github.com/trustd/trustd/internal/pullgate", "github.com/trustd/trustd/cmd/trustd-verifier"}) {
		t.Fatalf("trustd-verifier links packages outside the standard library: %q", got)
	}
}

// binaries are trustd-verifier and trustd, built side by side (so that the
// verifier finds trustd next to itself), the verifier with a short
// deadline.
var binaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "trustd-verifier-test-")
	if err != nil {
		return "", err
	}
	for _, b := range [][]string{
		{"-ldflags", "-X main.deadline=2s", "-o", filepath.Join(dir, name), "."},
		{"-o", filepath.Join(dir, "trustd"), "../trustd"},
	} {
		if out, err := exec.Command("go", append([]string{"build"}, b...)...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", b, err, out)
		}
	}
	return dir, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := binaries(); err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// node is a policy over a synced cache, with the verifier and trustd built.
type node struct {
	dir, bin, policy, socket string
	signed                   digest.Digest
}

const signedRef = "127.0.0.1:5000/demo/hello:1.0"

func newNode(t *testing.T) *node {
	t.Helper()
	bins, err := binaries()
	if err != nil {
		t.Fatal(err)
	}
	repo := harness.NewTUFRepo(t)
	m := []byte(`{"schemaVersion":2,"config":{"digest":"` + string(digest.FromString("cfg")) + `"}}`)
	repo.SetTarget(signedRef, m)
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are short: not under t.TempDir's long name.
	dir, err := os.MkdirTemp("", "tv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &node{dir: dir, bin: bins, policy: filepath.Join(dir, "policy.toml"), socket: filepath.Join(dir, "trustd.sock"), signed: digest.FromBytes(m)}
	harness.WritePolicy(t, n.policy, harness.PolicyConfig{
		Mode:              "enforce",
		CacheDir:          filepath.Join(dir, "cache"),
		NRISocket:         filepath.Join(dir, "nri.sock"),
		ContainerdAddress: filepath.Join(dir, "containerd.sock"),
		ControlSocket:     n.socket,
		TUFURL:            repo.URL(),
		TUFRoot:           repo.RootPath(),
		Registry:          "127.0.0.1:5000",
	})
	if out, err := exec.Command(filepath.Join(bins, "trustd"), "sync", "--config", n.policy).CombinedOutput(); err != nil {
		t.Fatalf("trustd sync: %v\n%s", err, out)
	}
	if err := repo.Stop(); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *node) writePolicy(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serve runs the daemon's control server in this process, deciding from
// the node's cache.
func (n *node) serve(t *testing.T) {
	t.Helper()
	l, err := local.OpenLocal(n.policy, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &control.ControlServer{Engine: l.Engine}
	if err := c.Listen(n.socket); err != nil {
		t.Fatal(err)
	}
	go c.Serve()
	t.Cleanup(func() { c.Close() })
}

// result is one run of a pull gate.
type result struct {
	code   int
	stdout string
}

// gate runs bin (the verifier, or trustd with the subcommand) as containerd
// does, with env added.
func (n *node) gate(t *testing.T, bin string, args []string, stdin string, env ...string) result {
	t.Helper()
	if filepath.Base(bin) == "trustd" {
		args = append([]string{gate.VerifierName}, args...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), append([]string{"TRUSTD_CONFIG=" + n.policy, "TRUSTD_BIN="}, env...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("%s: %v", bin, err)
	}
	return result{cmd.ProcessState.ExitCode(), out.String()}
}

// noTrustd is the environment of a verifier that finds no trustd binary:
// it can only relay to the daemon.
func noTrustd(n *node) string { return "TRUSTD_BIN=" + filepath.Join(n.dir, "no-trustd") }

func (n *node) verifier() string { return filepath.Join(n.bin, name) }
func (n *node) trustd() string   { return filepath.Join(n.bin, "trustd") }

func pullArgs(ref string, d digest.Digest) []string {
	return []string{"-name", ref, "-digest", string(d), "-stdin-media-type", "application/vnd.oci.descriptor.v1+json"}
}

func descriptor(d digest.Digest) string {
	return `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + string(d) + `","size":100}`
}

// gateCases are pulls as containerd makes them, and what goes wrong with
// them; want is in the output whether the daemon or the cache decides.
func gateCases(n *node) []struct {
	name  string
	args  []string
	stdin string
	code  int
	want  string
} {
	other := digest.FromString("other")
	return []struct {
		name  string
		args  []string
		stdin string
		code  int
		want  string
	}{
		{"signed", pullArgs(signedRef, n.signed), descriptor(n.signed), 0, "trustd: allowed " + signedRef},
		{"unsigned tag", pullArgs("127.0.0.1:5000/demo/hello:2.0", other), descriptor(other), 1, `tag "2.0"`},
		{"denied by rule", pullArgs("quay.io/x/y:1", other), descriptor(other), 1, "the rule denies"},
		{"descriptor disagrees", pullArgs(signedRef, n.signed), descriptor(other), 1, "differs from -digest"},
		{"descriptor too large", pullArgs(signedRef, n.signed), strings.Repeat(" ", 64<<10+1), 1, "larger than"},
		{"no descriptor media type", []string{"-name", signedRef, "-digest", string(n.signed)}, "not read", 0, "trustd: allowed"},
		{"bad digest", pullArgs(signedRef, "sha256:zz"), "", 1, "cannot judge this pull"},
		{"unknown flag", append(pullArgs(signedRef, n.signed), "-evil"), "", 1, "usage"},
		{"hostile name", pullArgs("127.0.0.1:5000/demo/\x1b[31m\n:1", other), "", 1, `\x1b[31m`},
	}
}

// TestRelayMatchesTrustd runs each pull through the verifier and through
// `trustd trustd-verifier`, with the daemon (the control server, in this
// process) and without (the verifier execs trustd, which reads the cache):
// both give the same output and exit code, which is what the trustd binary
// has always given.
func TestRelayMatchesTrustd(t *testing.T) {
	n := newNode(t)
	for _, daemon := range []bool{false, true} {
		if daemon {
			n.serve(t)
		}
		for _, tc := range gateCases(n) {
			t.Run(fmt.Sprintf("daemon=%v/%s", daemon, tc.name), func(t *testing.T) {
				var env []string
				if daemon { // the daemon answers: trustd is not needed
					env = append(env, noTrustd(n))
				}
				got := n.gate(t, n.verifier(), tc.args, tc.stdin, env...)
				want := n.gate(t, n.trustd(), tc.args, tc.stdin)
				if got != want {
					t.Fatalf("trustd-verifier: %+v\ntrustd trustd-verifier: %+v", got, want)
				}
				if got.code != tc.code || !strings.Contains(got.stdout, tc.want) || strings.Count(got.stdout, "\n") != 1 {
					t.Fatalf("exit %d, %q; want exit %d and %q on one line", got.code, got.stdout, tc.code, tc.want)
				}
			})
		}
	}
}

// TestRelayPolicyFile: the verifier reads its policy file as the trustd
// binary does, with the daemon running.
func TestRelayPolicyFile(t *testing.T) {
	n := newNode(t)
	n.serve(t)
	good, err := os.ReadFile(n.policy)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, policy string
		relayed      bool // the daemon answers the verifier, not trustd
		code         int
		want         string
	}{
		// The daemon runs its last good policy; the pull gate still
		// refuses to judge by a file that does not validate.
		{"invalid", string(good) + "\n[[rule]]\nimages = []\n", true, 1, "could not decide: configuration error: " + n.dir},
		// A form the verifier does not read: the trustd binary decides
		// (and asks the daemon).
		{"inline daemon table", inlineDaemon(t, string(good)), false, 0, "trustd: allowed"},
		{"missing", "", false, 1, "could not decide: configuration error: read policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(n.dir, strings.ReplaceAll(tc.name, " ", "-")+".toml")
			if tc.policy != "" {
				n.writePolicy(t, path, tc.policy)
			}
			env := []string{"TRUSTD_CONFIG=" + path}
			args := pullArgs(signedRef, n.signed)
			want := n.gate(t, n.trustd(), args, descriptor(n.signed), env...)
			if tc.relayed {
				env = append(env, noTrustd(n))
			}
			got := n.gate(t, n.verifier(), args, descriptor(n.signed), env...)
			if got != want || got.code != tc.code || !strings.Contains(got.stdout, tc.want) {
				t.Fatalf("trustd-verifier: %+v\ntrustd trustd-verifier: %+v\nwant exit %d and %q", got, want, tc.code, tc.want)
			}
		})
	}
}

// inlineDaemon rewrites the [daemon] table of a policy as an inline table.
func inlineDaemon(t *testing.T, policy string) string {
	t.Helper()
	head, rest, ok := strings.Cut(policy, "[daemon]\n")
	table, rest, ok2 := strings.Cut(rest, "[[source]]")
	if !ok || !ok2 {
		t.Fatalf("no [daemon] table before [[source]]:\n%s", policy)
	}
	fields := strings.Split(strings.TrimSpace(table), "\n")
	return head + "daemon = { " + strings.Join(fields, ", ") + " }\n[[source]]" + rest
}

// serveOnce listens on the node's control socket for the test's duration
// and answers the first connection with answer.
func (n *node) serveOnce(t *testing.T, answer func(net.Conn)) {
	ln, err := net.Listen("unix", n.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		answer(c)
	}()
}

// readRequest reads one HTTP request from c, body included.
func readRequest(c net.Conn) {
	if r, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
		io.Copy(io.Discard, r.Body)
	}
}

// TestRelayFailsClosed: when the daemon answers wrongly or not at all, or
// there is neither a daemon nor a trustd binary, the pull is blocked with
// the reason.
func TestRelayFailsClosed(t *testing.T) {
	n := newNode(t)
	args := pullArgs(signedRef, n.signed)
	stdin := descriptor(n.signed)

	t.Run("no daemon, no trustd binary", func(t *testing.T) {
		r := n.gate(t, n.verifier(), args, stdin, noTrustd(n))
		if r.code != 1 || !strings.Contains(r.stdout, "could not decide: no daemon: control socket "+n.socket) || !strings.Contains(r.stdout, "the trustd binary cannot decide instead") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("trustd binary is the verifier", func(t *testing.T) {
		r := n.gate(t, n.verifier(), args, stdin, "TRUSTD_BIN="+n.verifier())
		if r.code != 1 || !strings.Contains(r.stdout, "is this program, not trustd") {
			t.Fatalf("%+v", r)
		}
	})

	for _, tc := range []struct {
		name   string
		answer func(c net.Conn)
		want   string
	}{
		{"HTTP error", func(c net.Conn) {
			readRequest(c)
			io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nboom\n")
		}, "HTTP 500: boom"},
		{"connection dropped", readRequest, "truncated answer"},
		{"no answer", func(c net.Conn) {
			io.Copy(io.Discard, c) // until the verifier gives up
		}, "timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.serveOnce(t, tc.answer)
			r := n.gate(t, n.verifier(), args, stdin)
			if r.code != 1 || !strings.Contains(r.stdout, "trustd: denied "+signedRef) || !strings.Contains(r.stdout, "could not decide: control socket "+n.socket) || !strings.Contains(r.stdout, tc.want) {
				t.Fatalf("%+v, want %q", r, tc.want)
			}
		})
	}
}

// TestRelayOlderDaemon: a daemon that does not serve the relay (an older
// trustd still running after an upgrade) answers 404; the verifier then
// has trustd decide from the cache, the standard input it already read
// passed on, and fails closed if it cannot.
func TestRelayOlderDaemon(t *testing.T) {
	n := newNode(t)
	args := pullArgs(signedRef, n.signed)
	stdin := descriptor(n.signed)
	want := n.gate(t, n.trustd(), args, stdin)
	if want.code != 0 {
		t.Fatalf("trustd itself: %+v", want)
	}
	for _, tc := range []struct {
		name string
		env  []string
		ok   bool
	}{
		{"trustd decides", []string{"TRUSTD_BIN=" + n.trustd()}, true},
		{"no trustd binary", []string{noTrustd(n)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.serveOnce(t, func(c net.Conn) {
				readRequest(c)
				io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\n\r\n404 page not found\n")
			})
			r := n.gate(t, n.verifier(), args, stdin, tc.env...)
			switch {
			case tc.ok && r != want:
				t.Fatalf("got %+v, trustd says %+v", r, want)
			case !tc.ok && (r.code != 1 || !strings.Contains(r.stdout, "HTTP 404") || !strings.Contains(r.stdout, "cannot decide instead")):
				t.Fatalf("%+v", r)
			}
		})
	}
}

// FuzzDenialMatchesPlugin: the verifier's own "could not decide" line is
// plugin.RunVerifier's, hostile text escaped alike.
func FuzzDenialMatchesPlugin(f *testing.F) {
	f.Add("127.0.0.1:5000/demo/hello:1.0", "control socket /run/trustd/trustd.sock: read: timed out")
	f.Add("x\x1b[31m\n\u0085", "a\tb\rc\x7f\xff")
	dg := digest.FromString("m")
	f.Fuzz(func(t *testing.T, ref, reason string) {
		var out bytes.Buffer
		gate.RunVerifier(context.Background(), []string{"-name", ref, "-digest", string(dg)}, nil, &out, func(context.Context, verify.Facts) (verify.Decision, error) {
			return verify.Decision{}, errors.New(reason)
		})
		if !strings.Contains(out.String(), "could not decide") {
			return // the plugin refused the arguments
		}
		if got := pullgate.Undecided(ref, string(dg), reason); got != out.String() {
			t.Fatalf("verifier: %q\nplugin:   %q", got, out.String())
		}
	})
}
