package plugin

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"

	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	"github.com/containerd/nri/pkg/stub"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/verify"
)

// Annotations set by containerd's CRI plugin on every container.
const (
	AnnotationImageName = "io.kubernetes.cri.image-name"
	AnnotationNamespace = "io.kubernetes.cri.sandbox-namespace"
)

// PluginName is the name trustd registers with NRI; containerd's default
// validator must list it in required_plugins for enforcement to fail closed.
const PluginName = "trustd"

// ImageStore looks up an image by name in containerd's image store and
// returns its manifest (or index) digest and its config digest for this
// platform. It supplies the facts when NRI does not (containerd < 2.4).
type ImageStore interface {
	ImageFacts(ctx context.Context, name string) (dgst, config digest.Digest, err error)
}

// ContainerImageStore is an ImageStore that can also check which image a
// container's root filesystem was made from.
type ContainerImageStore interface {
	ImageStore
	ContainerImageFacts(ctx context.Context, containerID, name string) (dgst, config digest.Digest, err error)
}

// NRIPlugin validates container creations. Its ValidateContainerAdjustment
// returns an error (rejecting the creation) for every image that is not
// allowed; containerd's NRI fails closed on that error and on a timeout.
type NRIPlugin struct {
	Engine *Engine
	Images ImageStore
	Log    *slog.Logger
	// OnSynchronize, if set, is called with the containers running when
	// the plugin (re)connects.
	OnSynchronize func(ctx context.Context, pods []*api.PodSandbox, ctrs []*api.Container)
	// OnConfigure, if set, is told the runtime and the decision point
	// chosen for it.
	OnConfigure func(runtime, version string, mode NRIMode)
}

// NRIMode is where trustd decides, by what the runtime supports.
type NRIMode string

const (
	// ModeValidate decides in ValidateContainerAdjustment (NRI validation,
	// containerd >= 2.2): fails closed on error, time-out and crash.
	ModeValidate NRIMode = "validate"
	// ModeCreate decides in CreateContainer (containerd 2.0 and 2.1): an
	// error rejects, but a plugin time-out or crash lets the container
	// through.
	ModeCreate NRIMode = "create"
)

var containerdVersion = regexp.MustCompile(`^v?(\d+)\.(\d+)`)

// ModeFor chooses the decision point for a runtime: CreateContainer only
// on containerd releases without NRI validation (before 2.2).
func ModeFor(runtime, version string) NRIMode {
	if runtime != "containerd" && runtime != "io.containerd" {
		return ModeValidate
	}
	m := containerdVersion.FindStringSubmatch(version)
	if m == nil {
		return ModeValidate
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	if major < 2 || major == 2 && minor < 2 {
		return ModeCreate
	}
	return ModeValidate
}

// Configure implements NRI's configuration: it subscribes to the event
// where the runtime lets trustd decide.
func (p *NRIPlugin) Configure(ctx context.Context, config, runtime, version string) (api.EventMask, error) {
	mode := ModeFor(runtime, version)
	var mask api.EventMask
	if mode == ModeCreate {
		mask.Set(api.Event_CREATE_CONTAINER)
		p.Log.Warn("this containerd has no NRI validation: trustd rejects in CreateContainer, where a plugin time-out or crash lets a container through; upgrade to containerd 2.2 or later to fail closed", "runtime", runtime, "version", version)
	} else {
		mask.Set(api.Event_VALIDATE_CONTAINER_ADJUSTMENT)
		p.Log.Info("deciding in NRI validation (fail-closed)", "runtime", runtime, "version", version)
	}
	if p.OnConfigure != nil {
		p.OnConfigure(runtime, version, mode)
	}
	return mask, nil
}

// CreateContainer decides on runtimes without NRI validation.
func (p *NRIPlugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	return nil, nil, p.decideContainer(ctx, pod, ctr, "nri-create")
}

// ContainerFacts gathers the facts about a container from NRI's message,
// falling back to containerd's image store for what NRI leaves out.
func (p *NRIPlugin) ContainerFacts(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (verify.Facts, error) {
	f := verify.Facts{Subject: verify.SubjectContainer}
	if pod != nil {
		f.Namespace = pod.GetNamespace()
	}
	if f.Namespace == "" {
		f.Namespace = ctr.GetAnnotations()[AnnotationNamespace]
	}
	img := ctr.GetImage()
	f.Image = ctr.GetAnnotations()[AnnotationImageName]
	if f.Image == "" {
		f.Image = img.GetName()
	}
	if f.Image == "" {
		return f, fmt.Errorf("container %s has no image reference (no %s annotation and no image in the NRI message)", ctr.GetName(), AnnotationImageName)
	}
	if img != nil && img.GetConfigDigest() != "" {
		f.ConfigDigest = digest.Digest(img.GetConfigDigest())
		f.Digest = digest.Digest(img.GetDigest())
		if err := f.ConfigDigest.Validate(); err != nil {
			return f, fmt.Errorf("container %s: invalid image config digest from runtime: %w", ctr.GetName(), err)
		}
		if f.Digest != "" && f.Digest.Validate() != nil {
			f.Digest = ""
		}
		return f, nil
	}
	if p.Images == nil {
		return f, fmt.Errorf("container %s: the runtime gave no image digest and no image store is connected", ctr.GetName())
	}
	var dg, cfg digest.Digest
	var err error
	if cv, ok := p.Images.(ContainerImageStore); ok && ctr.GetId() != "" {
		dg, cfg, err = cv.ContainerImageFacts(ctx, ctr.GetId(), f.Image)
	} else {
		dg, cfg, err = p.Images.ImageFacts(ctx, f.Image)
	}
	if err != nil {
		return f, fmt.Errorf("container %s: looking up image %s in containerd's store: %w", ctr.GetName(), f.Image, err)
	}
	f.Digest, f.ConfigDigest = dg, cfg
	return f, nil
}

// ValidateContainerAdjustment implements NRI's validation hook: the
// decision point, since NRI fails closed on its errors and time-outs.
func (p *NRIPlugin) ValidateContainerAdjustment(ctx context.Context, req *api.ValidateContainerAdjustmentRequest) error {
	return p.decideContainer(ctx, req.GetPod(), req.GetContainer(), "nri")
}

func (p *NRIPlugin) decideContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, via string) error {
	c := Context{Pod: pod.GetName(), Container: ctr.GetName(), Via: via}
	f, err := p.ContainerFacts(ctx, pod, ctr)
	if err != nil {
		return p.factsError(f, c, err)
	}
	return p.Engine.Decide(ctx, f, c).Err()
}

// factsError denies a container whose facts could not be gathered. (Out
// of line: decideContainer's frame stays small; see verify.Decide.)
//
//go:noinline
func (p *NRIPlugin) factsError(f verify.Facts, c Context, err error) error {
	d := verify.Decision{Image: f.Image, Requested: f.Image, Namespace: f.Namespace, Signers: []string{}, Reason: "could not gather the image's facts: " + err.Error()}
	p.Engine.log(f, d, c, 0)
	return d.Err()
}

// Synchronize implements NRI's synchronisation at (re)connection.
func (p *NRIPlugin) Synchronize(ctx context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	if p.OnSynchronize != nil {
		p.OnSynchronize(ctx, pods, ctrs)
	}
	return nil, nil
}

// NewStub returns an NRI stub for the plugin, connected to socket.
func (p *NRIPlugin) NewStub(socket string, onClose func()) (stub.Stub, error) {
	opts := []stub.Option{
		stub.WithPluginName(PluginName),
		stub.WithPluginIdx("50"),
		stub.WithSocketPath(socket),
		stub.WithLogger(slogNRI{p.Log}),
	}
	if onClose != nil {
		opts = append(opts, stub.WithOnClose(onClose))
	}
	return stub.New(p, opts...)
}

// slogNRI adapts slog to NRI's logger interface.
type slogNRI struct{ l *slog.Logger }

var _ nrilog.Logger = slogNRI{}

func (s slogNRI) Debugf(ctx context.Context, format string, args ...any) {
	s.l.Debug(fmt.Sprintf(format, args...), "component", "nri")
}
func (s slogNRI) Infof(ctx context.Context, format string, args ...any) {
	s.l.Info(fmt.Sprintf(format, args...), "component", "nri")
}
func (s slogNRI) Warnf(ctx context.Context, format string, args ...any) {
	s.l.Warn(fmt.Sprintf(format, args...), "component", "nri")
}
func (s slogNRI) Errorf(ctx context.Context, format string, args ...any) {
	s.l.Error(fmt.Sprintf(format, args...), "component", "nri")
}
