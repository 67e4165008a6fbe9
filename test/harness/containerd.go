package harness

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/containerd/containerd/v2/client"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// Namespace is the containerd namespace of the CRI plugin, the only one
	// NRI sees.
	Namespace = "k8s.io"

	// SandboxImage is the pause image the generated configuration pins as the
	// sandbox image. StartContainerd imports it (built from test/images/pause)
	// before it returns: pods never pull it.
	SandboxImage = "localhost/trustd-e2e/pause:1"

	// NRIPluginName is the name RequireTrustd makes NRI require.
	NRIPluginName = "trustd"

	// opTimeout bounds each call the harness makes to containerd.
	opTimeout = 2 * time.Minute
	// startTimeout bounds containerd's start until CRI serves.
	startTimeout = 60 * time.Second
)

// Options configure a containerd started by StartContainerd.
type Options struct {
	// ContainerdVersion selects the containerd release (its binaries as
	// test/tools.sh builds them, and the configuration it accepts), e.g.
	// v2.2.9, one of Versions.Matrix. Empty: the full suite's
	// (CONTAINERD_VERSION, or TRUSTD_E2E_CONTAINERD_VERSION).
	ContainerdVersion string

	// RequireTrustd turns on NRI's default validator with trustd as a
	// required plugin: with no trustd connected, every container creation is
	// rejected (`required plugin "trustd" not present`).
	RequireTrustd bool

	// RequirePlugin, when set, turns on NRI's default validator with this
	// plugin (instead of trustd) as the required one: e.g. a do-nothing
	// validator (Node.NoopValidator), to measure what NRI validation
	// itself costs.
	RequirePlugin string

	// VerifierBinDir is the image verifier's bin_dir; every executable there
	// judges each pull. Empty: an empty directory of the node's, so no
	// verifier runs (the host's /opt/containerd/image-verifier/bin is never
	// used).
	VerifierBinDir string

	// Env is added to containerd's environment, which the verifiers it runs
	// inherit (e.g. TRUSTD_CONFIG=/path/to/policy.toml).
	Env []string

	// Registries are host:port registries reached over plain HTTP, through a
	// hosts.toml each. More can be added later with Node.AddRegistry.
	Registries []string

	// Debug sets containerd's log level to debug (default info).
	Debug bool
}

// Node is a running containerd with everything under Dir, and clients for
// it. Its methods that take no TB are safe for concurrent use.
type Node struct {
	// Release is the containerd release running, and what it offers.
	Release Release
	// Dir holds the node's configuration, state, sockets and logs.
	Dir string
	// Address is containerd's gRPC socket (CRI is served on it too).
	Address string
	// TTRPCAddress is containerd's ttrpc socket.
	TTRPCAddress string
	// NRISocket is the socket NRI plugins such as trustd connect to.
	NRISocket string
	// VerifierBinDir is the image verifier's bin_dir.
	VerifierBinDir string
	// ConfigPath is the generated config.toml.
	ConfigPath string
	// LogPath is containerd's log (its stderr), kept across restarts.
	LogPath string
	// RegistryConfigDir is the config_path holding a hosts.toml per registry.
	RegistryConfigDir string

	// Client is a containerd client in the k8s.io namespace.
	Client *client.Client
	// Runtime and Images are CRI clients, as a kubelet uses them.
	Runtime runtimeapi.RuntimeServiceClient
	Images  runtimeapi.ImageServiceClient

	tools        Tools
	opts         Options
	runcDir      string
	cgroupParent string // of every pod: removed on cleanup
	criConn      *grpc.ClientConn
	proc         *process
}

// StartContainerd starts containerd (the pinned build of
// opts.ContainerdVersion) as a child process with its root, state, sockets
// and plugin directories under a new temporary directory, NRI enabled, and
// the pause image imported as SandboxImage. It returns once CRI serves. It
// fails the test if containerd reports an unknown configuration key, if a
// plugin the configuration configures is not loaded (a wrong key or plugin
// would silently test something else), or if the binary is another release
// than the one asked for.
//
// On cleanup it removes every pod, stops containerd (SIGTERM, then SIGKILL),
// kills any shim and container left behind, unmounts what they left mounted
// and deletes the directory; it logs the tail of containerd's log if the test
// failed.
func StartContainerd(t TB, opts Options) *Node {
	t.Helper()
	tools, err := FindToolsFor(opts.ContainerdVersion)
	if err != nil {
		t.Fatalf("%v", err)
	}
	release, err := ReleaseOf(tools.Versions.Containerd)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if (opts.RequireTrustd || opts.RequirePlugin != "") && !release.NRIValidation {
		t.Fatalf("containerd %s has no NRI validation (default_validator, required_plugins): RequireTrustd needs 2.2 or later", release)
	}
	// Unix socket paths are limited to 108 bytes: keep the directory short
	// rather than under a (possibly long) test name.
	dir, err := os.MkdirTemp("", "trustd-node-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	n := &Node{
		Release:           release,
		Dir:               dir,
		Address:           filepath.Join(dir, "containerd.sock"),
		TTRPCAddress:      filepath.Join(dir, "containerd.sock.ttrpc"),
		NRISocket:         filepath.Join(dir, "nri.sock"),
		VerifierBinDir:    opts.VerifierBinDir,
		ConfigPath:        filepath.Join(dir, "config.toml"),
		LogPath:           filepath.Join(dir, "containerd.log"),
		RegistryConfigDir: filepath.Join(dir, "certs.d"),
		tools:             tools,
		opts:              opts,
		runcDir:           filepath.Join(dir, "runc"),
		cgroupParent:      "/trustd-e2e/" + filepath.Base(dir),
	}
	if n.VerifierBinDir == "" {
		n.VerifierBinDir = filepath.Join(dir, "verifiers")
	}
	t.Cleanup(func() { n.cleanup(t) })

	for _, d := range []string{"root", "state", "tmp", "opt", "nri/plugins", "nri/conf.d", "cni/bin", "cni/net.d", "pods", "runc", "certs.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("%v", err)
		}
	}
	if err := os.MkdirAll(n.VerifierBinDir, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	cfg, err := n.config()
	if err != nil {
		t.Fatalf("containerd config: %v", err)
	}
	if err := os.WriteFile(n.ConfigPath, cfg, 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	for _, r := range opts.Registries {
		if err := n.AddRegistry(r); err != nil {
			t.Fatalf("%v", err)
		}
	}

	n.criConn, err = grpc.NewClient("unix://"+n.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("CRI client: %v", err)
	}
	n.Runtime = runtimeapi.NewRuntimeServiceClient(n.criConn)
	n.Images = runtimeapi.NewImageServiceClient(n.criConn)
	n.Client, err = client.New(n.Address, client.WithDefaultNamespace(Namespace))
	if err != nil {
		t.Fatalf("containerd client: %v", err)
	}

	start := time.Now()
	if err := n.start(); err != nil {
		t.Fatalf("start containerd %s: %v\n%s", tools.Versions.Containerd, err, n.LogTail(40))
	}
	if unknown := n.unknownConfigKeys(); unknown != "" {
		t.Fatalf("containerd ignored keys of %s (check them against containerd %s's source):\n%s", n.ConfigPath, tools.Versions.Containerd, unknown)
	}
	if err := n.checkRelease(); err != nil {
		t.Fatalf("%v\n%s", err, n.LogTail(40))
	}
	t.Logf("containerd %s serving on %s (NRI %s) in %v", tools.Versions.Containerd, n.Address, n.NRISocket, time.Since(start).Round(time.Millisecond))

	tar := filepath.Join(dir, "pause.tar")
	DockerSaveTar(t, tar, map[string]v1.Image{SandboxImage: PauseImage(t)})
	n.ImportArchive(t, tar, SandboxImage)
	return n
}

// configTemplate is containerd's config.toml, the same for every release of
// the matrix: version 3, which 2.2 reads natively and 2.3 and 2.4 migrate to
// 4 in memory (moving [grpc] and [ttrpc] to the io.containerd.server.v1.*
// plugins and keys of io.containerd.grpc.v1.cri, unused here), as on a node
// upgraded in place. Every key was checked against the source of containerd
// v2.2.9, v2.3.7 and v2.4.2 (cmd/containerd/server/config,
// internal/cri/config, internal/nri/config.go, the default-validator of nri
// v0.11.0, v0.12.0 and v0.12.3, pkg/imageverifier/bindir, plugins/transfer,
// plugins/services/opt, core/remotes/docker/config for hosts.toml): the keys
// used here are the same in all three (see Release for what differs).
// [ttrpc] address is set explicitly: containerd 2.2's default configuration
// leaves it empty. StartContainerd fails on any key containerd reports as
// unknown and on a configured plugin it did not load; the runc options
// (decoded leniently into runc's options.Options) are proven by use: runc is
// not on PATH, and the harness finds containers under Root. A key that only
// some releases know goes in a {{if}} on .Release.
var configTemplate = template.Must(template.New("config.toml").Funcs(template.FuncMap{"q": tomlString}).Parse(`# containerd configuration generated by trustd's test harness (test/harness/containerd.go).
version = 3
root = {{q (.Path "root")}}
state = {{q (.Path "state")}}
temp = {{q (.Path "tmp")}}

[grpc]
  address = {{q .Node.Address}}

[ttrpc]
  address = {{q .Node.TTRPCAddress}}

[debug]
  level = {{q .LogLevel}}

[plugins]
  # Adds <path>/bin to containerd's PATH: not the host's /opt/containerd.
  [plugins.'io.containerd.internal.v1.opt']
    path = {{q (.Path "opt")}}

  [plugins.'io.containerd.nri.v1.nri']
    disable = false
    socket_path = {{q .Node.NRISocket}}
    # NRI launches every plugin found here at start: none of the host's.
    plugin_path = {{q (.Path "nri/plugins")}}
    plugin_config_path = {{q (.Path "nri/conf.d")}}
{{- if .RequireTrustd}}
    [plugins.'io.containerd.nri.v1.nri'.default_validator]
      enable = true
      required_plugins = [{{q .PluginName}}]
{{- end}}

  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = {{q .Node.VerifierBinDir}}

  # Pulls through the transfer service (ctr, and CRI's default) read registry
  # hosts from here.
  [plugins.'io.containerd.transfer.v1.local']
    config_path = {{q .Node.RegistryConfigDir}}

  [plugins.'io.containerd.cri.v1.images']
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = {{q .SandboxImage}}
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = {{q .Node.RegistryConfigDir}}

  [plugins.'io.containerd.cri.v1.runtime']
    # Without it the pause container fails in sandboxes that forbid lowering
    # oom_score_adj: "failed to update /proc/self/oom_score_adj: Permission denied".
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [{{q (.Path "cni/bin")}}]
      conf_dir = {{q (.Path "cni/net.d")}}
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = {{q .Runc}}
        Root = {{q .RuncRoot}}
`))

// configData is what configTemplate renders.
type configData struct {
	Node          *Node
	Release       Release
	LogLevel      string
	RequireTrustd bool
	PluginName    string
	SandboxImage  string
	Runc          string
	RuncRoot      string
}

// Path joins rel to the node's directory.
func (d configData) Path(rel string) string { return filepath.Join(d.Node.Dir, rel) }

// config renders the node's config.toml.
func (n *Node) config() ([]byte, error) {
	d := configData{
		Node:          n,
		Release:       n.Release,
		LogLevel:      "info",
		RequireTrustd: n.opts.RequireTrustd || n.opts.RequirePlugin != "",
		PluginName:    cmp.Or(n.opts.RequirePlugin, NRIPluginName),
		SandboxImage:  SandboxImage,
		Runc:          n.tools.Runc,
		RuncRoot:      n.runcDir,
	}
	if n.opts.Debug {
		d.LogLevel = "debug"
	}
	var buf bytes.Buffer
	if err := configTemplate.Execute(&buf, d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) (string, error) {
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("control character in TOML string %q", s)
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`, nil
}

// hostsTOML makes a registry reachable over plain HTTP.
const hostsTOML = `# Generated by trustd's test harness: a loopback registry over plain HTTP.
server = "http://%[1]s"

[host."http://%[1]s"]
  capabilities = ["pull", "resolve", "push"]
`

// AddRegistry lets containerd reach the registry at host (host:port) over
// plain HTTP, for CRI and transfer-service pulls alike. It takes effect on
// the next pull.
func (n *Node) AddRegistry(host string) error {
	if h, p, err := net.SplitHostPort(host); err != nil || h == "" || p == "" || strings.ContainsAny(host, "/\\\"\n") {
		return fmt.Errorf("registry host %q: want host:port", host)
	}
	dir := filepath.Join(n.RegistryConfigDir, host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "hosts.toml"), fmt.Appendf(nil, hostsTOML, host), 0o644)
}
