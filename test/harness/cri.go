package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod is a pod sandbox run through CRI, with the configuration its
// containers are created with (CRI wants it again on every CreateContainer).
type Pod struct {
	ID     string
	Config *runtimeapi.PodSandboxConfig
}

// RunPod runs a pod sandbox the way kubelet does for a host-network pod
// (no CNI needed), with a log directory under the node's and a cgroup
// parent of the node's. The pod is stopped and removed on cleanup.
func (n *Node) RunPod(t TB, name, namespace string) *Pod {
	t.Helper()
	cfg, err := n.PodConfig(name, namespace)
	if err != nil {
		t.Fatalf("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := n.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("run pod %s/%s: %v", namespace, name, err)
	}
	pod := &Pod{ID: resp.GetPodSandboxId(), Config: cfg}
	t.Cleanup(func() {
		// Best effort: the node's cleanup removes whatever is left.
		_ = n.StopPod(pod.ID)
		_ = n.RemovePod(pod.ID)
	})
	return pod
}

// PodConfig is the configuration of a host-network pod (no CNI needed)
// as kubelet writes it, with a new UID, a log directory under the node's
// (created here) and a cgroup parent of the node's, removed on cleanup.
func (n *Node) PodConfig(name, namespace string) (*runtimeapi.PodSandboxConfig, error) {
	uid := randomHex(8)
	logDir := filepath.Join(n.Dir, "pods", namespace+"_"+name+"_"+uid)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name:      name,
			Namespace: namespace,
			Uid:       uid,
		},
		LogDirectory: logDir,
		Labels:       map[string]string{"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: n.cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
			},
		},
	}, nil
}

// StopPod stops a pod's containers and its sandbox.
func (n *Node) StopPod(podID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := n.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
	return err
}

// RemovePod removes a stopped pod and its containers.
func (n *Node) RemovePod(podID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := n.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
	return err
}

// PullImage pulls ref through CRI, as kubelet does, and returns the image
// reference CRI reports (the image ID, sha256 of the config). With an image
// verifier configured, a rejected pull returns the verifier's reason in the
// error.
func (n *Node) PullImage(ref string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := n.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return "", err
	}
	return resp.GetImageRef(), nil
}

// ImageID returns the CRI image ID (sha256 of the image config) of ref, or
// "" and no error if CRI does not have the image.
func (n *Node) ImageID(ref string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := n.Images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return "", err
	}
	return resp.GetImage().GetId(), nil
}

// RemoveImage removes an image from the node (no error if it is absent).
func (n *Node) RemoveImage(ref string) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := n.Images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	return err
}

// CreateContainer creates a container named name in the pod from ref, the
// way kubelet does: it resolves ref to its image ID with ImageStatus and asks
// for ImageSpec{Image: <image ID>, UserSpecifiedImage: ref}, from which CRI
// sets the io.kubernetes.cri.image-name annotation that NRI plugins see.
// A rejection by an NRI plugin returns the plugin's message in the error.
func (n *Node) CreateContainer(podID string, podConfig *runtimeapi.PodSandboxConfig, name, ref string) (string, error) {
	id, err := n.ImageID(ref)
	if err != nil {
		return "", fmt.Errorf("image status %s: %w", ref, err)
	}
	if id == "" {
		return "", fmt.Errorf("image %s is not on the node", ref)
	}
	return n.CreateContainerFromImageID(podID, podConfig, name, id, ref)
}

// CreateContainerFromImageID creates a container named name in the pod
// from the image with ID imageID, telling CRI the pod asked for ref
// (ImageSpec{Image: imageID, UserSpecifiedImage: ref}), as CreateContainer
// does once it has resolved ref. Given an imageID that ref does not name on
// the node, it is a kubelet that raced a re-tag (or any other CRI client).
func (n *Node) CreateContainerFromImageID(podID string, podConfig *runtimeapi.PodSandboxConfig, name, imageID, ref string) (string, error) {
	return n.CreateContainerWith(podID, podConfig, name, &runtimeapi.ImageSpec{Image: imageID, UserSpecifiedImage: ref})
}

// ImageVolume is the CRI mount of an OCI image volume, as kubelet asks
// for a pod volume `image: {reference: ref}` mounted at path.
func ImageVolume(path, ref string) *runtimeapi.Mount {
	return &runtimeapi.Mount{ContainerPath: path, Readonly: true, Image: &runtimeapi.ImageSpec{Image: ref}}
}

// CreateContainerWith creates a container named name in the pod with the
// given image spec (any CRI client's: an image ID, a short ID, a name, a
// UserSpecifiedImage of its choice) and mounts (image volumes among them).
func (n *Node) CreateContainerWith(podID string, podConfig *runtimeapi.PodSandboxConfig, name string, image *runtimeapi.ImageSpec, mounts ...*runtimeapi.Mount) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := n.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  podID,
		Config:        ContainerConfig(podConfig, name, image, mounts...),
		SandboxConfig: podConfig,
	})
	if err != nil {
		return "", err
	}
	return resp.GetContainerId(), nil
}

// ContainerConfig is the configuration of a container named name in the
// pod configured by podConfig (host network as its pod, a PID namespace
// of its own, its log in the pod's log directory), with the given image
// spec and mounts.
func ContainerConfig(podConfig *runtimeapi.PodSandboxConfig, name string, image *runtimeapi.ImageSpec, mounts ...*runtimeapi.Mount) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    image,
		Mounts:   mounts,
		LogPath:  name + ".log",
		Labels: map[string]string{
			"io.kubernetes.container.name": name,
			"io.kubernetes.pod.name":       podConfig.GetMetadata().GetName(),
			"io.kubernetes.pod.namespace":  podConfig.GetMetadata().GetNamespace(),
		},
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
}

// StartContainer starts a created container.
func (n *Node) StartContainer(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := n.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	return err
}

// StopContainer stops a container, waiting up to timeout for it to exit on
// SIGTERM before it is killed.
func (n *Node) StopContainer(id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := n.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: int64(timeout / time.Second)})
	return err
}

// RemoveContainer removes a container, stopping it first if it runs.
func (n *Node) RemoveContainer(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := n.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
	return err
}

// ContainerLog returns a container's log file (CRI's format: one
// "<time> <stream> <tag> <line>" per line).
func (n *Node) ContainerLog(id string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := n.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(resp.GetStatus().GetLogPath())
	return string(b), err
}

// WaitContainerLog polls a container's log until it contains substr.
func (n *Node) WaitContainerLog(id, substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		log, err := n.ContainerLog(id)
		if err == nil && strings.Contains(log, substr) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("container %s: no %q in its log after %v (err %v), log:\n%s", id, substr, timeout, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Reason extracts what a plugin said from a CRI error: the image verifier's
// output from a blocked pull ("... rejected image (exit code N): <reason>"),
// or an NRI validator's from a rejected creation ("... rejected container
// adjustment, reason: <reason>"); otherwise the gRPC status message. The
// text containerd wraps around a reason (the name, the digest) is dropped,
// so that assertions on the reason test the plugin's words.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	msg := status.Convert(err).Message()
	if _, after, ok := strings.Cut(msg, "rejected image (exit code "); ok {
		if _, reason, ok := strings.Cut(after, "): "); ok {
			return reason
		}
	}
	if _, reason, ok := strings.Cut(msg, "rejected container adjustment, reason: "); ok {
		return reason
	}
	return msg
}
