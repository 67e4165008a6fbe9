package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trustd/trustd/internal/testnotary"
	"github.com/trustd/trustd/internal/testtuf"
)

// Debian's notary package (0.7.0, installed by test/tools.sh) provides the
// Notary v1 server and client the harness runs. A notary-server built from
// the Go module proxy is not usable: built with a current Go it rejects
// every delegation upload (`invalid role: releases`: Go's multipart
// FileName() strips the `targets/` prefix of the part's file name).
const (
	NotaryServerBin = "/usr/bin/notary-server"
	NotaryBin       = "/usr/bin/notary"
)

const (
	// notaryStartTimeout bounds notary-server's start until it serves.
	notaryStartTimeout = 30 * time.Second
	// notaryStopGrace is how long Stop waits after SIGTERM before SIGKILL.
	notaryStopGrace = 10 * time.Second
	// notaryMetadataLimit bounds a metadata download.
	notaryMetadataLimit = 16 << 20
)

// NotaryPassphrases are the passphrases a NotaryClient gives the notary CLI
// (through the environment, never a TTY) for the keys it creates and imports.
var NotaryPassphrases = map[string]string{
	"NOTARY_ROOT_PASSPHRASE":       "trustd-e2e-root",
	"NOTARY_TARGETS_PASSPHRASE":    "trustd-e2e-targets",
	"NOTARY_SNAPSHOT_PASSPHRASE":   "trustd-e2e-snapshot",
	"NOTARY_DELEGATION_PASSPHRASE": "trustd-e2e-delegation",
}

// NotaryPrereqs checks that Debian's notary package is installed (the
// notary-server and notary binaries). When it is not, it says how to get it
// and skips the test, or fails it when CI is "true", as Prereqs does.
func NotaryPrereqs(t TB) {
	t.Helper()
	var problems []string
	for _, bin := range []string{NotaryServerBin, NotaryBin} {
		if !isExecutable(bin) {
			problems = append(problems, fmt.Sprintf("%s is not installed: run `make tools` (test/tools.sh) as root, which installs Debian's notary package", bin))
		}
	}
	if len(problems) == 0 {
		return
	}
	msg := "Notary prerequisites missing:\n  - " + strings.Join(problems, "\n  - ")
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s", msg)
	}
	t.Skipf("%s", msg)
}

// NotaryServer is a running notary-server (Notary v1, what Docker Content
// Trust talks to) on 127.0.0.1 over plain HTTP, with a local trust service
// (it holds the timestamp keys, and snapshot keys of repositories that
// rotated them to the server) and in-memory storage. It serves a GUN's
// metadata at <URL>/v2/<gun>/_trust/tuf/<role>.json.
//
// Everything it holds lives in its memory: once stopped, its repositories
// and the keys it manages are gone, so there is deliberately no Start after
// Stop (a restarted server would serve nothing). Its methods are safe for
// concurrent use.
type NotaryServer struct {
	// LogPath is the file holding the server's (JSON) log.
	LogPath string
	// ConfigPath is the server's configuration file.
	ConfigPath string

	addr string
	proc *process

	mu      sync.Mutex
	stopped bool // Stop was called
}

// StartNotaryServer runs notary-server on a free loopback port and returns
// once it serves. It skips (or in CI fails) the test when Debian's notary
// package is missing, and fails it, with the tail of the server's log, when
// the server does not start. The server is stopped on cleanup; when the test
// failed, the tail of its log is printed.
func StartNotaryServer(t TB) *NotaryServer {
	t.Helper()
	NotaryPrereqs(t)
	dir := t.TempDir()
	s := &NotaryServer{
		LogPath:    filepath.Join(dir, "notary-server.log"),
		ConfigPath: filepath.Join(dir, "notary-server.json"),
	}
	start := time.Now()
	var err error
	// The port is picked before the server binds it: another process may
	// take it in between, which the server reports and a retry avoids.
	for attempt := 0; attempt < 5; attempt++ {
		if err = s.start(); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		t.Fatalf("notary-server: %v\nlog %s, last lines:\n%s", err, s.LogPath, s.LogTail(40))
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Logf("notary-server stop: %v", err)
		}
		if t.Failed() {
			t.Logf("notary-server log %s, last lines:\n%s", s.LogPath, s.LogTail(40))
		}
	})
	t.Logf("notary-server serving at %s in %v (pid %d)", s.URL(), time.Since(start).Round(time.Millisecond), s.proc.cmd.Process.Pid)
	return s
}

// start writes the configuration for a free port, starts the server and
// waits until it serves.
func (s *NotaryServer) start() error {
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg, err := json.Marshal(map[string]any{
		"server":        map[string]any{"http_addr": s.addr},
		"trust_service": map[string]any{"type": "local"},
		"storage":       map[string]any{"backend": "memory"},
	})
	if err != nil {
		return err
	}
	if err := testtuf.WriteFileAtomic(s.ConfigPath, cfg); err != nil {
		return err
	}
	logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(NotaryServerBin, "-config", s.ConfigPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProcess(cmd)
	if err != nil {
		return err
	}
	s.proc = p
	return s.waitServing()
}

// waitServing polls the server's health endpoint until it answers 200,
// failing early if the server exits.
func (s *NotaryServer) waitServing() error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(notaryStartTimeout)
	var last error
	for {
		resp, err := client.Get(s.URL() + "/_notary_server/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("health: %s", resp.Status)
		}
		last = err
		select {
		case <-s.proc.done:
			return fmt.Errorf("notary-server -config %s exited: %v: %s", s.ConfigPath, s.proc.err, tailFile(s.LogPath, 1))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.proc.kill()
			return fmt.Errorf("not serving after %v: %w", notaryStartTimeout, last)
		}
	}
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// URL is the server's base URL, http://127.0.0.1:PORT (no trailing slash):
// the url of a notary source and the notary CLI's -s.
func (s *NotaryServer) URL() string { return "http://" + s.addr }

// Addr is the server's host:port.
func (s *NotaryServer) Addr() string { return s.addr }

// Stop sends SIGTERM and waits for the server to exit (SIGKILL after 10 s):
// clients then fail to connect, as with a trust server that is down. The
// server's data is lost with it. Stopping a stopped server returns nil; a
// server that had exited by itself is an error.
func (s *NotaryServer) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.stopped {
		return nil
	}
	s.stopped = true
	if s.proc.exited() {
		return fmt.Errorf("notary-server had exited by itself: %v: %s", s.proc.err, s.LogTail(1))
	}
	if err := s.proc.stop(notaryStopGrace); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && !ee.Exited() {
			return nil // ended by our signal: notary-server has no graceful exit status
		}
		return fmt.Errorf("notary-server exited with %v", err)
	}
	return nil
}

// LogTail returns the last lines of the server's log.
func (s *NotaryServer) LogTail(lines int) string { return tailFile(s.LogPath, lines) }

// Metadata fetches the metadata of role ("root", "targets",
// "targets/releases", ...) of gun as the server serves it, unverified.
func (s *NotaryServer) Metadata(gun, role string) ([]byte, error) {
	return fetchNotaryMetadata(s.URL(), gun, role)
}

// NotaryMetadataURL is where a Notary server at serverURL serves role's
// metadata for gun.
func NotaryMetadataURL(serverURL, gun, role string) string {
	return strings.TrimSuffix(serverURL, "/") + "/v2/" + gun + "/_trust/tuf/" + role + ".json"
}

func fetchNotaryMetadata(serverURL, gun, role string) ([]byte, error) {
	u := NotaryMetadataURL(serverURL, gun, role)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, notaryMetadataLimit))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// NotaryCommand is one run of the notary CLI.
type NotaryCommand struct {
	Args   []string // after the global flags (-c, -d, -s)
	Output string   // stdout and stderr, interleaved
	Err    error    // nil when it exited 0
	Took   time.Duration
}

func (c NotaryCommand) String() string {
	status := "ok"
	if c.Err != nil {
		status = c.Err.Error()
	}
	return fmt.Sprintf("$ notary %s   # %s, %v\n%s", strings.Join(c.Args, " "), status, c.Took.Round(time.Millisecond), strings.TrimRight(c.Output, "\n"))
}

// NotaryClient runs the real notary CLI (Debian's /usr/bin/notary) as a
// publisher does, against one server, with a trust directory of its own
// (its private keys, encrypted with NotaryPassphrases, and its cached
// metadata), a configuration file of its own, passphrases from the
// environment and stdin closed: the CLI never waits for a TTY.
//
// Every command and its output is kept (Commands); when the test fails,
// cleanup prints them. Methods return errors rather than failing the test,
// so that a scenario can expect a failure; each error carries the command
// and its output. Commands run one at a time; methods are safe for
// concurrent use.
type NotaryClient struct {
	// TrustDir is the client's trust directory (-d).
	TrustDir string
	// Server is the server's URL (-s).
	Server string

	dir        string // holds TrustDir, the configuration and generated keys
	configPath string

	mu       sync.Mutex
	commands []NotaryCommand
}

// Client returns a new NotaryClient for this server: a new publisher, with
// no keys yet.
func (s *NotaryServer) Client(t TB) *NotaryClient {
	t.Helper()
	return NewNotaryClient(t, s.URL())
}

// NewNotaryClient returns a client of the Notary server at serverURL with a
// new trust directory under t.TempDir(). It skips (or in CI fails) the test
// when the notary CLI is missing.
func NewNotaryClient(t TB, serverURL string) *NotaryClient {
	t.Helper()
	NotaryPrereqs(t)
	dir := t.TempDir()
	c := &NotaryClient{
		TrustDir:   filepath.Join(dir, "trust"),
		Server:     serverURL,
		dir:        dir,
		configPath: filepath.Join(dir, "notary-config.json"),
	}
	// A configuration file of its own: the CLI otherwise reads
	// ~/.notary/config.json.
	cfg, err := json.Marshal(map[string]any{
		"trust_dir":     c.TrustDir,
		"remote_server": map[string]any{"url": serverURL},
	})
	if err != nil {
		t.Fatalf("notary client: %v", err)
	}
	if err := os.MkdirAll(c.TrustDir, 0o700); err != nil {
		t.Fatalf("notary client: %v", err)
	}
	if err := testtuf.WriteFileAtomic(c.configPath, cfg); err != nil {
		t.Fatalf("notary client: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("notary client %s, commands:\n%s", c.TrustDir, c.Transcript())
		}
	})
	return c
}

// Commands returns every command run so far, in order.
func (c *NotaryClient) Commands() []NotaryCommand {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.commands)
}

// Transcript is every command run so far with its output, for a failure
// message.
func (c *NotaryClient) Transcript() string {
	var b strings.Builder
	for _, cmd := range c.Commands() {
		b.WriteString(cmd.String())
		b.WriteString("\n")
	}
	return b.String()
}

// Run runs `notary -c CONFIG -d TRUSTDIR -s SERVER args...` with stdin
// closed and returns its output (stdout and stderr). A non-zero exit is an
// error carrying the command and its output.
func (c *NotaryClient) Run(args ...string) (string, error) {
	return c.run(nil, args...)
}

// run runs the CLI with stdin from the reader (nil: closed).
func (c *NotaryClient) run(stdin io.Reader, args ...string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	full := append([]string{"-c", c.configPath, "-d", c.TrustDir, "-s", c.Server}, args...)
	cmd := exec.CommandContext(ctx, NotaryBin, full...)
	cmd.Env = notaryEnv()
	cmd.Stdin = stdin // nil reads /dev/null: no prompt can wait for an answer
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	rec := NotaryCommand{Args: slices.Clone(args), Output: out.String(), Err: err, Took: time.Since(start)}
	c.commands = append(c.commands, rec)
	if err != nil {
		return rec.Output, fmt.Errorf("notary %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(rec.Output))
	}
	return rec.Output, nil
}

// notaryEnv is this process's environment without NOTARY_* variables, plus
// NotaryPassphrases.
func notaryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTARY_") {
			env = append(env, kv)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(NotaryPassphrases)) {
		env = append(env, k+"="+NotaryPassphrases[k])
	}
	return env
}

// notaryFailed returns an error when a command that exited 0 did not say
// want: the notary CLI exits 0 when it aborts a prompt or imports nothing.
func notaryFailed(args []string, out, want string) error {
	if strings.Contains(out, want) {
		return nil
	}
	return fmt.Errorf("notary %s: exited 0 without %q:\n%s", strings.Join(args, " "), want, strings.TrimSpace(out))
}

// Init creates the repository gun on the server as `docker trust` does: a
// new root key (or the client's existing one) and targets and snapshot
// keys, staged by `notary init gun`; then `notary key rotate gun snapshot
// -r` hands the snapshot key to the server, which signs snapshots itself
// from then on (as for every repository Docker creates), and publishes the
// repository: root, targets, snapshot and timestamp are served at once.
func (c *NotaryClient) Init(gun string) error {
	if _, err := c.Run("init", gun); err != nil {
		return err
	}
	return c.RotateKey(gun, "snapshot", true)
}

// AddHash stages target tag of gun with the manifest's size and hex sha256,
// in the given roles (none: the top-level targets role, as the CLI
// decides). Publish makes it visible.
func (c *NotaryClient) AddHash(gun, tag string, size int64, sha256hex string, roles ...string) error {
	args := []string{"addhash", gun, tag, strconv.FormatInt(size, 10), "--sha256", sha256hex}
	for _, r := range roles {
		args = append(args, "--roles", r)
	}
	_, err := c.Run(args...)
	return err
}

// AddManifest is AddHash with the size and sha256 of manifest (an image
// manifest's or index's bytes, as pushed): what `docker trust sign` signs.
func (c *NotaryClient) AddManifest(gun, tag string, manifest []byte, roles ...string) error {
	sum := sha256.Sum256(manifest)
	return c.AddHash(gun, tag, int64(len(manifest)), hex.EncodeToString(sum[:]), roles...)
}

// Remove stages the removal of target tag from the given roles (none: the
// CLI's default).
func (c *NotaryClient) Remove(gun, tag string, roles ...string) error {
	args := []string{"remove", gun, tag}
	for _, r := range roles {
		args = append(args, "--roles", r)
	}
	_, err := c.Run(args...)
	return err
}

// Publish publishes gun's staged changes (signing every changed role with
// the client's keys; the server signs snapshot and timestamp).
func (c *NotaryClient) Publish(gun string) error {
	args := []string{"publish", gun}
	out, err := c.Run(args...)
	if err != nil {
		return err
	}
	return notaryFailed(args, out, "Successfully published changes")
}

// AddDelegation stages a delegation from gun's targets role to role (e.g.
// "targets/releases") for the key whose certificate is the PEM file at
// certPath, limited to the target name prefixes paths; no paths delegates
// every path (--all-paths). The key's private part must be imported
// (ImportKey) for the client to sign as role. Publish makes it visible.
func (c *NotaryClient) AddDelegation(gun, role, certPath string, paths ...string) error {
	args := []string{"delegation", "add", gun, role, certPath}
	if len(paths) == 0 {
		args = append(args, "--all-paths")
	}
	for _, p := range paths {
		args = append(args, "--paths="+p)
	}
	_, err := c.Run(args...)
	return err
}

// ImportKey imports the private key in the PEM file at keyPath (PKCS#8
// "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY") into the client's key store for
// role (e.g. "targets/releases"), encrypted with the delegation passphrase.
// The CLI exits 0 even when it imports nothing, so ImportKey checks that
// `notary key list` then has the key for role.
func (c *NotaryClient) ImportKey(keyPath, role string) error {
	b, err := os.ReadFile(keyPath)
	if err != nil {
		return err
	}
	priv, err := parsePrivateKeyPEM(b)
	if err != nil {
		return fmt.Errorf("import %s: %w", keyPath, err)
	}
	id, err := NotaryPublicKeyID(priv.Public())
	if err != nil {
		return fmt.Errorf("import %s: %w", keyPath, err)
	}
	if _, err := c.Run("key", "import", keyPath, "--role", role); err != nil {
		return err
	}
	keys, err := c.Keys()
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.ID == id && k.Role == role {
			return nil
		}
	}
	return fmt.Errorf("notary key import %s --role %s: exited 0, but `notary key list` has no key %s for role %s:\n%s", keyPath, role, id, role, c.lastOutput())
}

// lastOutput is the output of the last command.
func (c *NotaryClient) lastOutput() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.commands) == 0 {
		return ""
	}
	return strings.TrimSpace(c.commands[len(c.commands)-1].Output)
}

// RotateKey replaces gun's key for role ("root", "targets", "snapshot" or
// "timestamp") with a new one and publishes the rotation; remote asks the
// server to create and hold it (required for timestamp, optional for
// snapshot). A root rotation is signed by the old and the new root keys;
// the CLI asks for a confirmation on stdin, which RotateKey gives.
func (c *NotaryClient) RotateKey(gun, role string, remote bool) error {
	args := []string{"key", "rotate", gun, role}
	if remote {
		args = append(args, "--server-managed")
	}
	var stdin io.Reader
	if role == "root" {
		stdin = strings.NewReader("yes\n")
	}
	out, err := c.run(stdin, args...)
	if err != nil {
		return err
	}
	return notaryFailed(args, out, "Successfully rotated")
}

// NotaryKey is a row of `notary key list`.
type NotaryKey struct {
	Role string // root, targets, snapshot, targets/releases, ...
	GUN  string // "" for root and delegation keys; the CLI may shorten long GUNs with "..."
	ID   string // the key's canonical ID (of the public key, not of a certificate)
}

var hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Keys lists the private keys in the client's key store (`notary key
// list`). Their IDs are Notary's canonical key IDs: for the root key, not
// the ID that root.json lists for its certificate (see RootKeyIDs).
func (c *NotaryClient) Keys() ([]NotaryKey, error) {
	out, err := c.Run("key", "list")
	if err != nil {
		return nil, err
	}
	var keys []NotaryKey
	for _, fields := range tableRows(out) {
		// ROLE [GUN] KEY-ID LOCATION
		i := slices.IndexFunc(fields, hexID.MatchString)
		if i < 1 {
			continue
		}
		k := NotaryKey{Role: fields[0], ID: fields[i]}
		if i == 2 {
			k.GUN = fields[1]
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// tableRows returns the whitespace-separated fields of each row of a table
// the notary CLI prints: the lines after the one of dashes.
func tableRows(out string) [][]string {
	var rows [][]string
	inTable := false
	s := bufio.NewScanner(strings.NewReader(out))
	for s.Scan() {
		fields := strings.Fields(s.Text())
		switch {
		case len(fields) == 0:
			inTable = false
		case strings.Trim(fields[0], "-") == "" && strings.HasPrefix(fields[0], "----"):
			inTable = true
		case inTable:
			rows = append(rows, fields)
		}
	}
	return rows
}

// NotaryTarget is a row of `notary list`.
type NotaryTarget struct {
	Name   string // the tag
	Digest string // hex sha256
	Size   int64
	Role   string // the role that signed it
}

// List lists gun's targets as the server has them now (`notary list`,
// which downloads and verifies the repository first), from the given roles
// (none: every role). The CLI resolves a tag signed in several roles from
// `targets` first; Docker and trustd look in `targets/releases` first, so
// to see a delegation's targets, ask for its role.
func (c *NotaryClient) List(gun string, roles ...string) ([]NotaryTarget, error) {
	args := []string{"list", gun}
	for _, r := range roles {
		args = append(args, "--roles", r)
	}
	out, err := c.Run(args...)
	if err != nil {
		return nil, err
	}
	if strings.Contains(out, "Error while downloading remote metadata") {
		return nil, fmt.Errorf("notary %s: listed from the client's cache, the server did not answer:\n%s", strings.Join(args, " "), strings.TrimSpace(out))
	}
	var targets []NotaryTarget
	for _, f := range tableRows(out) {
		if len(f) != 4 {
			return nil, fmt.Errorf("notary %s: unexpected row %q", strings.Join(args, " "), strings.Join(f, " "))
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("notary %s: row %q: %w", strings.Join(args, " "), strings.Join(f, " "), err)
		}
		targets = append(targets, NotaryTarget{Name: f[0], Digest: f[1], Size: size, Role: f[3]})
	}
	return targets, nil
}

// RootKeyIDs returns the key IDs of gun's root role as the server's
// root.json lists them: for Notary's ecdsa-x509 root keys, the hash of the
// certificate key, which is what Docker's trust pinning and trustd's
// `root_keys` pin take. (`notary key list` shows another ID for the same
// key: the canonical ID of its public key.)
func (c *NotaryClient) RootKeyIDs(gun string) ([]string, error) {
	b, err := fetchNotaryMetadata(c.Server, gun, "root")
	if err != nil {
		return nil, err
	}
	var root struct {
		Signed struct {
			Type  string `json:"_type"`
			Roles map[string]struct {
				KeyIDs []string `json:"keyids"`
			} `json:"roles"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%s root.json: %w", gun, err)
	}
	ids := root.Signed.Roles["root"].KeyIDs
	if root.Signed.Type != "Root" || len(ids) == 0 {
		return nil, fmt.Errorf("%s root.json: _type %q, %d root keys: not a Notary root", gun, root.Signed.Type, len(ids))
	}
	return slices.Sorted(slices.Values(ids)), nil
}

// DelegationKey is an ECDSA P-256 key and a self-signed certificate for it:
// what a delegated signer (`docker trust signer add`) brings.
type DelegationKey struct {
	KeyPath  string // PKCS#8 PEM ("PRIVATE KEY"), for ImportKey
	CertPath string // PEM certificate, for AddDelegation
	// ID is the key's canonical ID, as `notary key list` and `notary
	// delegation list` show it.
	ID string
	// CertID is the ID of the certificate key, as targets.json lists it
	// under delegations and as the role's signatures name it.
	CertID string
}

// NewDelegationKey makes a new ECDSA P-256 key and a self-signed
// certificate (common name commonName, valid from an hour ago for ten
// years) and writes them to dir.
func NewDelegationKey(dir, commonName string) (DelegationKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return DelegationKey{}, err
	}
	now := time.Now()
	ck, err := testnotary.CertKey(priv, testnotary.CertOptions{CommonName: commonName, NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0)})
	if err != nil {
		return DelegationKey{}, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return DelegationKey{}, err
	}
	base := filepath.Join(dir, safeFileName(commonName))
	k := DelegationKey{KeyPath: base + "-key.pem", CertPath: base + "-cert.pem", CertID: ck.ID}
	if k.ID, err = NotaryPublicKeyID(&priv.PublicKey); err != nil {
		return DelegationKey{}, err
	}
	if err := os.WriteFile(k.KeyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		return DelegationKey{}, err
	}
	if err := os.WriteFile(k.CertPath, ck.Public, 0o644); err != nil {
		return DelegationKey{}, err
	}
	return k, nil
}

// safeFileName replaces what a file name should not hold ("targets/releases"
// → "targets_releases").
func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator || r < ' ' {
			return '_'
		}
		return r
	}, s)
}

// AddDelegationKey makes a new delegation key (NewDelegationKey, common name
// role, in the client's directory), imports it for role and stages the
// delegation of paths (none: every path) of gun to it. Publish makes it
// visible.
func (c *NotaryClient) AddDelegationKey(gun, role string, paths ...string) (DelegationKey, error) {
	dir, err := os.MkdirTemp(c.dir, "delegation-")
	if err != nil {
		return DelegationKey{}, err
	}
	k, err := NewDelegationKey(dir, role)
	if err != nil {
		return DelegationKey{}, err
	}
	if err := c.ImportKey(k.KeyPath, role); err != nil {
		return k, err
	}
	return k, c.AddDelegation(gun, role, k.CertPath, paths...)
}

// NotaryPublicKeyID is Notary's canonical ID of an ECDSA public key: the
// hex sha256 of the canonical JSON key object
// {"keytype":"ecdsa","keyval":{"private":null,"public":<base64 PKIX DER>}}.
func NotaryPublicKeyID(pub crypto.PublicKey) (string, error) {
	if _, ok := pub.(*ecdsa.PublicKey); !ok {
		return "", fmt.Errorf("key of type %T: want ECDSA", pub)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return testnotary.KeyID(testnotary.KeyECDSA, der), nil
}

// parsePrivateKeyPEM parses the first PEM block of b as a PKCS#8 or SEC 1
// private key.
func parsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("private key of type %T", k)
		}
		return s, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q: want PRIVATE KEY or EC PRIVATE KEY", block.Type)
	}
}
