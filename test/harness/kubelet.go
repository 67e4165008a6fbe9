package harness

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/trustd/trustd/internal/testtuf"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// KubeletNodeName is the node name the harness's kubelet runs as: kubelet
	// names a static pod "<pod name>-<node name>" (KubeletPodName).
	KubeletNodeName = "trustd-e2e"

	// kubeletStopGrace is how long the harness waits after SIGTERM.
	kubeletStopGrace = 10 * time.Second
	// kubeletReadyTimeout bounds kubelet's start until its sync loop runs.
	kubeletReadyTimeout = 60 * time.Second
)

// kubeletSysctls are the kernel tunables kubelet sets at start when they
// differ from what it wants (it has no option to only warn); the harness
// gives it files of its own in their place (see StartKubelet).
var kubeletSysctls = []string{
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

// kubeletConfig is the KubeletConfiguration of a standalone kubelet: no API
// server, static pods from a directory, cgroupfs as the harness's
// containerd (runc's default), no QoS cgroups or node allocatable
// enforcement, no swap or cgroup v1 refusal, no server listening (the tests
// read kubelet's log and CRI), no image garbage collection and no disk
// eviction (the machine's disk is not the test's).
type kubeletConfig struct {
	APIVersion                  string            `json:"apiVersion"`
	Kind                        string            `json:"kind"`
	StaticPodPath               string            `json:"staticPodPath"`
	FileCheckFrequency          string            `json:"fileCheckFrequency"`
	ContainerRuntimeEndpoint    string            `json:"containerRuntimeEndpoint"`
	ImageServiceEndpoint        string            `json:"imageServiceEndpoint"`
	CgroupDriver                string            `json:"cgroupDriver"`
	CgroupsPerQOS               bool              `json:"cgroupsPerQOS"`
	EnforceNodeAllocatable      []string          `json:"enforceNodeAllocatable"`
	FailSwapOn                  bool              `json:"failSwapOn"`
	FailCgroupV1                bool              `json:"failCgroupV1"`
	EnableServer                bool              `json:"enableServer"`
	Address                     string            `json:"address"`
	ReadOnlyPort                int               `json:"readOnlyPort"`
	HealthzBindAddress          string            `json:"healthzBindAddress"`
	HealthzPort                 int               `json:"healthzPort"`
	PodLogsDir                  string            `json:"podLogsDir"`
	ImageGCHighThresholdPercent int               `json:"imageGCHighThresholdPercent"`
	EvictionHard                map[string]string `json:"evictionHard"`
	Authentication              map[string]any    `json:"authentication"`
	Authorization               map[string]any    `json:"authorization"`
}

// Kubelet is a standalone kubelet (no API server) driving a Node's
// containerd through CRI, as on a Kubernetes node: it runs the static pods
// whose manifests are in ManifestDir. Pod status is published nowhere:
// tests read kubelet's own words in its log (WaitLog) and the containers
// through CRI (WaitRunning). Its methods without a TB are safe for
// concurrent use.
type Kubelet struct {
	// Dir holds the configuration, the root directory (RootDir), the
	// manifests and the pod logs.
	Dir         string
	RootDir     string
	ManifestDir string
	// LogPath is kubelet's stderr (klog's text lines).
	LogPath string

	node    *Node
	podLogs string
	proc    *process
	logs    *logBuffer
}

// StartKubelet starts the pinned kubelet (KubeletPrereqs checks it) in
// standalone mode with the node's containerd socket as its runtime and
// image endpoint and everything under a new temporary directory, and
// returns once its sync loop runs. It listens on no port.
//
// kubelet sets six kernel tunables (vm.overcommit_memory, kernel.panic,
// ...) when they differ from its wishes: it runs in a mount namespace of
// its own (unshare, slave propagation: it sees containerd's mounts, the
// host does not see its) in which each of those /proc/sys files is a
// regular file holding the host's value, so the host's kernel is left as
// it is. What kubelet still writes outside its directory: the
// /var/lib/kubelet/device-plugins socket directory and the symbolic
// links of /var/log/containers (removed on cleanup); both paths are
// fixed in kubelet.
//
// On cleanup it stops kubelet (SIGTERM, then SIGKILL); the pods it ran
// are left to the node's cleanup. If the test failed, it logs the tail of
// kubelet's log.
func StartKubelet(t TB, n *Node) *Kubelet {
	t.Helper()
	tools, err := FindTools()
	if err != nil {
		t.Fatalf("%v", err)
	}
	dir := shortTempDir(t, "trustd-kubelet-")
	k := &Kubelet{
		Dir:         dir,
		RootDir:     filepath.Join(dir, "root"),
		ManifestDir: filepath.Join(dir, "manifests"),
		LogPath:     filepath.Join(dir, "kubelet.log"),
		node:        n,
		podLogs:     filepath.Join(dir, "pod-logs"),
	}
	sysctlDir := filepath.Join(dir, "sysctl")
	for _, d := range []string{k.RootDir, k.ManifestDir, k.podLogs, sysctlDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("%v", err)
		}
	}
	endpoint := "unix://" + n.Address
	cfg, err := json.MarshalIndent(kubeletConfig{
		APIVersion:               "kubelet.config.k8s.io/v1beta1",
		Kind:                     "KubeletConfiguration",
		StaticPodPath:            k.ManifestDir,
		FileCheckFrequency:       "1s",
		ContainerRuntimeEndpoint: endpoint,
		ImageServiceEndpoint:     endpoint,
		CgroupDriver:             "cgroupfs",
		CgroupsPerQOS:            false,
		EnforceNodeAllocatable:   []string{},
		FailSwapOn:               false,
		FailCgroupV1:             false,
		EnableServer:             false,
		Address:                  "127.0.0.1",
		ReadOnlyPort:             0,
		HealthzBindAddress:       "127.0.0.1",
		HealthzPort:              0,
		PodLogsDir:               k.podLogs,
		// 100 turns image garbage collection off.
		ImageGCHighThresholdPercent: 100,
		EvictionHard:                map[string]string{"nodefs.available": "0%", "nodefs.inodesFree": "0%", "imagefs.available": "0%"},
		Authentication:              map[string]any{"anonymous": map[string]any{"enabled": false}, "webhook": map[string]any{"enabled": false}},
		Authorization:               map[string]any{"mode": "AlwaysAllow"},
	}, "", "  ")
	if err != nil {
		t.Fatalf("kubelet config: %v", err)
	}
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	// The script run in kubelet's mount namespace: each tunable kubelet
	// manages becomes a file of its own, then kubelet replaces the shell.
	var script strings.Builder
	script.WriteString("set -e\n")
	for i, name := range kubeletSysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", name))
		if err != nil {
			t.Fatalf("kubelet: %v", err)
		}
		file := filepath.Join(sysctlDir, fmt.Sprint(i))
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatalf("%v", err)
		}
		fmt.Fprintf(&script, "mount --bind %s /proc/sys/%s\n", file, name)
	}
	script.WriteString(`exec "$@"` + "\n")

	logFile, err := os.Create(k.LogPath)
	if err != nil {
		t.Fatalf("%v", err)
	}
	k.logs = newLogBuffer(logFile)
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "--",
		"/bin/sh", "-c", script.String(), "sh",
		tools.Kubelet,
		"--config", cfgPath,
		"--root-dir", k.RootDir,
		"--cert-dir", filepath.Join(dir, "pki"),
		"--hostname-override", KubeletNodeName,
		"--node-ip", "127.0.0.1",
		"--v", "1",
	)
	cmd.Stdout, cmd.Stderr = k.logs, k.logs
	start := time.Now()
	k.proc, err = startProcess(cmd)
	if err != nil {
		logFile.Close()
		t.Fatalf("start kubelet: %v", err)
	}
	t.Cleanup(func() {
		if err := k.proc.stop(kubeletStopGrace); err != nil {
			t.Logf("kubelet stop: %v", err)
		}
		logFile.Close()
		k.removeLogLinks()
		if t.Failed() {
			t.Logf("kubelet log %s, last lines:\n%s", k.LogPath, tailLines(k.logs.Bytes(), 60))
		}
	})
	ready := make(chan error, 1)
	go func() {
		_, err := k.logs.waitLine(kubeletReadyTimeout, []string{"Starting kubelet main sync loop"})
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("kubelet %s: %v\nkubelet log (last lines):\n%s", tools.Versions.Kubelet, err, tailLines(k.logs.Bytes(), 40))
		}
	case <-k.proc.done:
		t.Fatalf("kubelet %s exited at start: %v\nkubelet log (last lines):\n%s", tools.Versions.Kubelet, k.proc.err, tailLines(k.logs.Bytes(), 40))
	}
	t.Logf("kubelet %s syncing in %v (root %s)", tools.Versions.Kubelet, time.Since(start).Round(time.Millisecond), k.RootDir)
	return k
}

// removeLogLinks removes the links kubelet made in /var/log/containers to
// this kubelet's pod logs.
func (k *Kubelet) removeLogLinks() {
	const dir = "/var/log/containers"
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, k.podLogs+"/") {
			_ = os.Remove(p)
		}
	}
}

// StaticPod is a host-network pod of one container, "app", as a manifest
// of the kubelet's ManifestDir.
type StaticPod struct {
	// Name is the pod's name; kubelet runs it as KubeletPodName(Name), in
	// namespace "default".
	Name string
	// Image is the container's image reference.
	Image string
	// PullPolicy is the container's imagePullPolicy: Always, IfNotPresent
	// (if empty) or Never.
	PullPolicy string
	// VolumeImage, when set, is an OCI image volume (a pod volume
	// `image: {reference: VolumeImage, pullPolicy: IfNotPresent}`) mounted
	// read-only at /vol in the container.
	VolumeImage string
}

// KubeletPodName is the name kubelet gives the static pod named name.
func KubeletPodName(name string) string { return name + "-" + KubeletNodeName }

// manifest is p as a Pod object (JSON, which kubelet reads as YAML).
func (p StaticPod) manifest() ([]byte, error) {
	container := map[string]any{
		"name":            "app",
		"image":           p.Image,
		"imagePullPolicy": cmp.Or(p.PullPolicy, "IfNotPresent"),
	}
	spec := map[string]any{
		"hostNetwork":                   true,
		"dnsPolicy":                     "Default",
		"terminationGracePeriodSeconds": 1,
		"containers":                    []any{container},
	}
	if p.VolumeImage != "" {
		container["volumeMounts"] = []any{map[string]any{"name": "vol", "mountPath": "/vol", "readOnly": true}}
		spec["volumes"] = []any{map[string]any{"name": "vol", "image": map[string]any{"reference": p.VolumeImage, "pullPolicy": "IfNotPresent"}}}
	}
	return json.MarshalIndent(map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": p.Name, "namespace": "default"},
		"spec":       spec,
	}, "", "  ")
}

// AddPod writes p's manifest (atomically: kubelet skips the hidden
// temporary file); kubelet sees it at once (inotify) or within a second.
func (k *Kubelet) AddPod(t TB, p StaticPod) {
	t.Helper()
	b, err := p.manifest()
	if err != nil {
		t.Fatalf("pod %s: %v", p.Name, err)
	}
	if err := testtuf.WriteFileAtomic(filepath.Join(k.ManifestDir, p.Name+".json"), b); err != nil {
		t.Fatalf("pod %s: %v", p.Name, err)
	}
}

// RemovePod removes the manifest of the pod named name: kubelet stops the
// pod and stops retrying it.
func (k *Kubelet) RemovePod(t TB, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(k.ManifestDir, name+".json")); err != nil {
		t.Fatalf("pod %s: %v", name, err)
	}
}

// Logs returns what kubelet wrote so far.
func (k *Kubelet) Logs() string { return string(k.logs.Bytes()) }

// WaitLog waits until a line of kubelet's log contains every one of
// substrs, and returns that line.
func (k *Kubelet) WaitLog(timeout time.Duration, substrs ...string) (string, error) {
	line, err := k.logs.waitLine(timeout, substrs)
	if err != nil {
		return "", fmt.Errorf("kubelet log: %w", err)
	}
	return line, nil
}

// LogLines returns the lines of kubelet's log that contain every one of
// substrs.
func (k *Kubelet) LogLines(substrs ...string) []string {
	var lines []string
	for line := range strings.Lines(k.Logs()) {
		if containsAll(line, substrs) {
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	return lines
}

// Containers lists the CRI containers of the static pod named name (in
// every state), newest first as CRI lists them.
func (k *Kubelet) Containers(name string) ([]*runtimeapi.Container, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := k.node.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.name": KubeletPodName(name), "io.kubernetes.pod.namespace": "default"},
	}})
	if err != nil {
		return nil, err
	}
	return resp.GetContainers(), nil
}

// WaitRunning waits until the static pod named name has a running
// container, and returns its ID.
func (k *Kubelet) WaitRunning(name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		cs, err := k.Containers(name)
		for _, c := range cs {
			if c.GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING {
				return c.GetId(), nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("none running")
			}
			return "", fmt.Errorf("pod %s: no running container after %v: %w (containers: %v)", KubeletPodName(name), timeout, err, cs)
		}
		if k.proc.exited() {
			return "", fmt.Errorf("kubelet exited: %v", k.proc.err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
