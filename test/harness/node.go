package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pelletier/go-toml/v2"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// start starts containerd and waits until CRI serves and the NRI socket exists.
func (n *Node) start() error {
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(n.tools.Containerd, "--config", n.ConfigPath)
	// The shim is found next to containerd or on PATH; runc by BinaryName.
	cmd.Env = append(envWithPath(filepath.Dir(n.tools.Shim)), n.opts.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProcess(cmd)
	if err != nil {
		return err
	}
	n.proc = p
	return n.waitServing(p)
}

// envWithPath is this process's environment with dir first on PATH.
func envWithPath(dir string) []string {
	env := os.Environ()
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			env[i] = "PATH=" + dir + string(os.PathListSeparator) + v
			return env
		}
	}
	return append(env, "PATH="+dir+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

// waitServing polls until CRI reports the runtime ready and NRI's socket
// exists, failing early if containerd exits.
func (n *Node) waitServing(p *process) error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = n.ready(ctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("containerd exited: %v", p.err)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not serving after %v: %w", startTimeout, last)
		}
	}
}

func (n *Node) ready(ctx context.Context) error {
	// Stat first: a gRPC dial that fails backs off for a second or more.
	if _, err := os.Stat(n.Address); err != nil {
		return err
	}
	resp, err := n.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return err
	}
	for _, c := range resp.GetStatus().GetConditions() {
		if c.GetType() == runtimeapi.RuntimeReady && !c.GetStatus() {
			return fmt.Errorf("CRI runtime not ready: %s %s", c.GetReason(), c.GetMessage())
		}
	}
	if _, err := os.Stat(n.NRISocket); err != nil {
		return fmt.Errorf("NRI socket: %w", err)
	}
	return nil
}

// unknownConfigKeys returns containerd's log lines about configuration keys
// it ignored, if any.
func (n *Node) unknownConfigKeys() string {
	b, _ := os.ReadFile(n.LogPath)
	var lines []string
	for l := range strings.Lines(string(b)) {
		if strings.Contains(l, "Ignoring unknown key") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return strings.Join(lines, "\n")
}

// checkRelease checks that the containerd serving is the release asked for
// and that it loaded, without error, every plugin the configuration
// configures: containerd ignores the section of a plugin it does not have.
func (n *Node) checkRelease() error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	v, err := n.Client.Version(ctx)
	if err != nil {
		return fmt.Errorf("containerd version: %w", err)
	}
	if !sameRelease(n.Release.Version, v.Version) {
		return fmt.Errorf("%s is containerd %s, want %s: rebuild it with test/tools.sh", n.tools.Containerd, v.Version, n.Release.Version)
	}
	b, err := os.ReadFile(n.ConfigPath)
	if err != nil {
		return err
	}
	var cfg struct {
		Plugins map[string]any `toml:"plugins"`
	}
	if err := toml.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s: %w", n.ConfigPath, err)
	}
	resp, err := n.Client.IntrospectionService().Plugins(ctx)
	if err != nil {
		return fmt.Errorf("containerd plugins: %w", err)
	}
	loaded := map[string]string{} // type.id → init error, "" if none
	for _, p := range resp.GetPlugins() {
		loaded[p.GetType()+"."+p.GetID()] = p.GetInitErr().GetMessage()
	}
	var errs []error
	for _, id := range slices.Sorted(maps.Keys(cfg.Plugins)) {
		initErr, ok := loaded[id]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("containerd %s has no plugin %s, which %s configures", n.Release, id, n.ConfigPath))
		case initErr != "":
			errs = append(errs, fmt.Errorf("containerd %s: plugin %s failed to load: %s", n.Release, id, initErr))
		}
	}
	return errors.Join(errs...)
}

// Pid is containerd's process ID (it changes when Restart starts a new one).
func (n *Node) Pid() int { return n.proc.cmd.Process.Pid }

// LogTail returns the last lines of containerd's log.
func (n *Node) LogTail(lines int) string { return tailFile(n.LogPath, lines) }

// Restart stops containerd (SIGTERM) and starts it again with the same
// configuration, as a node's service manager would. Containers keep running
// in their shims; the clients reconnect by themselves.
func (n *Node) Restart() error {
	if n.proc != nil {
		n.proc.stop(20 * time.Second)
	}
	if err := n.start(); err != nil {
		return fmt.Errorf("restart containerd: %w\n%s", err, n.LogTail(40))
	}
	return nil
}

// Ctr runs the pinned ctr against the node, in the k8s.io namespace, and
// returns its combined output.
func (n *Node) Ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	full := append([]string{"--address", n.Address, "--namespace", Namespace}, args...)
	out, err := exec.CommandContext(ctx, n.tools.Ctr, full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// ImportArchive loads an image archive (docker save or OCI layout tar) with
// `ctr images import`, the way images are side-loaded onto a node: no pull,
// so no image verifier. It waits until CRI sees each of refs.
func (n *Node) ImportArchive(t TB, path string, refs ...string) {
	t.Helper()
	if _, err := n.Ctr("images", "import", path); err != nil {
		t.Fatalf("import %s: %v", path, err)
	}
	for _, ref := range refs {
		if err := n.waitImage(ref, 30*time.Second); err != nil {
			t.Fatalf("after importing %s: %v", path, err)
		}
	}
}

// waitImage polls CRI's ImageStatus until it knows ref: CRI learns about
// images that ctr imports from containerd's events, not at once.
func (n *Node) waitImage(ref string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		id, err := n.ImageID(ref)
		if err == nil && id != "" {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("not found")
			}
			return fmt.Errorf("CRI image %s: %w", ref, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cleanup removes the node: pods first (their containers stop, so their
// shims exit), then containerd, then whatever a crash left behind.
func (n *Node) cleanup(t TB) {
	if t.Failed() {
		t.Logf("containerd log %s, last lines:\n%s", n.LogPath, n.LogTail(60))
	}
	if n.proc != nil && !n.proc.exited() {
		if err := n.removeAllPods(); err != nil {
			t.Logf("cleanup: remove pods: %v", err)
		}
		n.proc.stop(15 * time.Second)
	}
	if n.Client != nil {
		n.Client.Close()
	}
	if n.criConn != nil {
		n.criConn.Close()
	}
	for _, msg := range n.reapLeftovers() {
		t.Logf("cleanup: %s", msg)
	}
	if err := removeCgroups(n.cgroupParent); err != nil {
		t.Logf("cleanup: %v", err)
	}
	if err := unmountUnder(n.Dir); err != nil {
		t.Logf("cleanup: keeping %s: %v", n.Dir, err)
		return
	}
	if err := os.RemoveAll(n.Dir); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// removeAllPods stops and removes every pod, as a drained node would.
func (n *Node) removeAllPods() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := n.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range resp.GetItems() {
		if _, err := n.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			errs = append(errs, err)
		}
		if _, err := n.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reapLeftovers kills what outlived containerd: shims (started with
// `-address <dir>/containerd.sock`) and containers (found in runc's state
// under the node's runc root). It returns what it had to do.
func (n *Node) reapLeftovers() []string {
	var did []string
	for _, pid := range processesReferencing(n.Dir + "/") {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			did = append(did, fmt.Sprintf("killed leftover process %d: %s", pid, bytes.TrimSpace(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))))
		}
	}
	for root, ids := range runcContainers(n.runcDir) {
		for _, id := range ids {
			out, err := exec.Command(n.tools.Runc, "--root", root, "delete", "--force", id).CombinedOutput()
			msg := fmt.Sprintf("deleted leftover container %s", id)
			if err != nil {
				msg = fmt.Sprintf("runc delete --force %s: %v: %s", id, err, bytes.TrimSpace(out))
			}
			did = append(did, msg)
		}
	}
	return did
}
