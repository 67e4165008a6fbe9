package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Crictl runs the pinned crictl (CrictlPrereqs checks it) against a Node's
// CRI endpoint, as an operator does on a node. It reads a configuration
// file of its own, never the host's /etc/crictl.yaml. Its methods without a
// TB are safe for concurrent use.
type Crictl struct {
	// Bin is the crictl binary.
	Bin string
	// Endpoint is the node's CRI socket as crictl names it (unix://...),
	// for both the runtime and the image service.
	Endpoint string
	// Dir holds crictl's configuration and the pod and container
	// configurations written by PodConfig and ContainerConfig.
	Dir string

	node       *Node
	configPath string
}

// CrictlResult is the outcome of one crictl command: a non-zero exit is a
// result, not a failure.
type CrictlResult struct {
	Args []string
	CLIResult
}

// String is the command and what it said, for failure messages.
func (r CrictlResult) String() string {
	return fmt.Sprintf("crictl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.Args, " "), r.ExitCode, r.Stdout, r.Stderr)
}

// NewCrictl returns a crictl for the node's CRI endpoint, with its
// configuration in a new temporary directory.
func NewCrictl(t TB, n *Node) *Crictl {
	t.Helper()
	tools, err := FindTools()
	if err != nil {
		t.Fatalf("%v", err)
	}
	c := &Crictl{Bin: tools.Crictl, Endpoint: "unix://" + n.Address, Dir: t.TempDir(), node: n}
	c.configPath = filepath.Join(c.Dir, "crictl.yaml")
	cfg := fmt.Sprintf("runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 60\ndebug: false\npull-image-on-create: false\n", c.Endpoint, c.Endpoint)
	if err := os.WriteFile(c.configPath, []byte(cfg), 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	return c
}

// Run runs `crictl --config ... --runtime-endpoint E --image-endpoint E
// --timeout 60s args...` to completion (2 min at most). Failing to run
// the binary fails the test.
func (c *Crictl) Run(t TB, args ...string) CrictlResult {
	t.Helper()
	full := append([]string{"--config", c.configPath, "--runtime-endpoint", c.Endpoint, "--image-endpoint", c.Endpoint, "--timeout", "60s"}, args...)
	return CrictlResult{Args: args, CLIResult: runToExit(t, "crictl", c.Bin, nil, full...)}
}

// writeJSON writes v as JSON to a new file of c.Dir named after name, and
// returns its path: crictl reads its pod and container configurations so
// (the CRI messages' JSON field names).
func (c *Crictl) writeJSON(t TB, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	f, err := os.CreateTemp(c.Dir, name+"-*.json")
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatalf("%v", err)
	}
	return f.Name()
}

// PodConfig writes the configuration of a host-network pod (Node.PodConfig)
// for `crictl runp`, `create` and `run`, and returns its path.
func (c *Crictl) PodConfig(t TB, name, namespace string) string {
	t.Helper()
	cfg, err := c.node.PodConfig(name, namespace)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return c.writeJSON(t, "pod-"+name, cfg)
}

// ContainerConfig writes the configuration of a container named name from
// image (a reference, a digest reference, an image ID or a short one, as
// crictl passes it on) with mounts (image volumes among them: ImageVolume),
// for `crictl create` and `run`, and returns its path.
func (c *Crictl) ContainerConfig(t TB, name, image string, mounts ...*runtimeapi.Mount) string {
	t.Helper()
	// The labels name the pod for a reader of `crictl ps`; crictl's pod
	// configuration gives the pod itself.
	cfg := ContainerConfig(&runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "crictl", Namespace: "default"}}, name, &runtimeapi.ImageSpec{Image: image}, mounts...)
	return c.writeJSON(t, "container-"+name, cfg)
}

// CrictlImage is a row of `crictl images`.
type CrictlImage struct {
	Image, Tag, ID string // ID as crictl prints it: 13 hex digits
}

// Images runs `crictl images` and returns its rows.
func (c *Crictl) Images(t TB) []CrictlImage {
	t.Helper()
	res := c.Run(t, "images")
	if res.ExitCode != 0 {
		t.Fatalf("%s", res)
	}
	var rows []CrictlImage
	for i, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 3 {
			continue // the header: IMAGE TAG IMAGE ID SIZE
		}
		rows = append(rows, CrictlImage{Image: f[0], Tag: f[1], ID: f[2]})
	}
	return rows
}
