package harness

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	"github.com/containerd/nri/pkg/stub"
)

// AnnotationImageName is the annotation containerd's CRI plugin sets on
// every container to the reference the pod asked for (kubelet's
// UserSpecifiedImage).
const AnnotationImageName = "io.kubernetes.cri.image-name"

// NRIContainer is what the runtime told NRI plugins about a container it
// was creating, in CreateContainer.
type NRIContainer struct {
	Name string
	// Image is container.image; nil when the runtime sent none (containerd
	// before 2.4).
	Image *api.Image
	// ImageName is the io.kubernetes.cri.image-name annotation.
	ImageName string
}

// String shows the container's image facts as NRI gave them.
func (c NRIContainer) String() string {
	img := "none"
	if c.Image != nil {
		img = fmt.Sprintf("{name: %q, digest: %q, config_digest: %q}", c.Image.GetName(), c.Image.GetDigest(), c.Image.GetConfigDigest())
	}
	return fmt.Sprintf("container %s: container.image = %s, annotation %s = %q", c.Name, img, AnnotationImageName, c.ImageName)
}

// NRIObserver is an NRI plugin in the test process that records the
// CreateContainer messages the runtime sends, and changes nothing: it
// shows what a plugin such as trustd is given on each containerd release.
// It is not a validator, so it never decides a creation. Safe for
// concurrent use.
type NRIObserver struct {
	stub stub.Stub

	mu      sync.Mutex
	seen    []NRIContainer
	changed chan struct{} // closed and replaced on each message
}

// ObserveNRI connects an NRIObserver to the node's NRI socket, as the
// plugin "trustd-e2e-observer" (index 90, after trustd's 50). It is
// disconnected on cleanup.
func (n *Node) ObserveNRI(t TB) *NRIObserver {
	t.Helper()
	o := &NRIObserver{changed: make(chan struct{})}
	o.stub = n.connectNRI(t, o, "trustd-e2e-observer", "90")
	return o
}

// CreateContainer implements NRI's CreateContainer: it records the message.
func (o *NRIObserver) CreateContainer(_ context.Context, _ *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	c := NRIContainer{Name: ctr.GetName(), ImageName: ctr.GetAnnotations()[AnnotationImageName]}
	if img := ctr.GetImage(); img != nil {
		c.Image = &api.Image{Name: img.GetName(), Digest: img.GetDigest(), ConfigDigest: img.GetConfigDigest()}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen = append(o.seen, c)
	close(o.changed)
	o.changed = make(chan struct{})
	return nil, nil, nil
}

// Containers returns the containers seen so far, in order.
func (o *NRIObserver) Containers() []NRIContainer {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.seen)
}

// WaitContainer returns what the runtime said about the container named
// name (its CRI metadata name), waiting up to timeout for the message.
func (o *NRIObserver) WaitContainer(name string, timeout time.Duration) (NRIContainer, error) {
	deadline := time.After(timeout)
	for {
		o.mu.Lock()
		i := slices.IndexFunc(o.seen, func(c NRIContainer) bool { return c.Name == name })
		var c NRIContainer
		if i >= 0 {
			c = o.seen[i]
		}
		changed := o.changed
		o.mu.Unlock()
		if i >= 0 {
			return c, nil
		}
		select {
		case <-changed:
		case <-deadline:
			return NRIContainer{}, fmt.Errorf("NRI observer: no CreateContainer for %q within %v", name, timeout)
		}
	}
}

// quietNRILog drops the NRI stub's own log lines: they would be written
// from its goroutines, possibly after the test has ended.
type quietNRILog struct{}

var _ nrilog.Logger = quietNRILog{}

func (quietNRILog) Debugf(context.Context, string, ...any) {}
func (quietNRILog) Infof(context.Context, string, ...any)  {}
func (quietNRILog) Warnf(context.Context, string, ...any)  {}
func (quietNRILog) Errorf(context.Context, string, ...any) {}

// NoopValidator runs, in a process of its own as trustd runs, a validator
// plugin named name (test/cmd/noop-validator) that allows every container
// and does nothing else: with Options.RequirePlugin set to name, it is the
// floor of what NRI validation costs a creation, whatever the validator
// does. It is stopped on cleanup; its process ID is returned.
func (n *Node) NoopValidator(t TB, name string) int {
	t.Helper()
	bin, err := noopValidatorBinary()
	if err != nil {
		t.Fatalf("build noop-validator: %v", err)
	}
	cmd := exec.Command(bin, "-name", name, "-socket", n.NRISocket)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("%v", err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("noop-validator: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("noop-validator did not register: %q %v", line, err)
	}
	return cmd.Process.Pid
}

// connectNRI connects plugin to the node's NRI socket under name and
// index; it is disconnected on cleanup.
func (n *Node) connectNRI(t TB, plugin any, name, idx string) stub.Stub {
	t.Helper()
	st, err := stub.New(plugin,
		stub.WithPluginName(name),
		stub.WithPluginIdx(idx),
		stub.WithSocketPath(n.NRISocket),
		stub.WithLogger(quietNRILog{}),
	)
	if err != nil {
		t.Fatalf("NRI plugin %s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.Start(ctx); err != nil {
		t.Fatalf("NRI plugin %s: connect to %s: %v", name, n.NRISocket, err)
	}
	t.Cleanup(st.Stop)
	return st
}
