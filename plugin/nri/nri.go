package nri

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"

	"github.com/trustd/trustd/plugin/engine"

	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	"github.com/containerd/nri/pkg/stub"

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

// NRIPlugin validates container creations. Its ValidateContainerAdjustment
// returns an error (rejecting the creation) for every image that is not
// allowed; containerd's NRI fails closed on that error and on a timeout.
type NRIPlugin struct {
	Engine *engine.Engine
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
	return nil, nil, p.decideContainer(ctx, pod, ctr, nil, engine.ViaNRICreate)
}

// ValidateContainerAdjustment implements NRI's validation hook: the
// decision point, since NRI fails closed on its errors and time-outs. The
// mounts other plugins add are judged too.
func (p *NRIPlugin) ValidateContainerAdjustment(ctx context.Context, req *api.ValidateContainerAdjustmentRequest) error {
	return p.decideContainer(ctx, req.GetPod(), req.GetContainer(), req.GetAdjust(), engine.ViaNRI)
}

func (p *NRIPlugin) decideContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, adjust *api.ContainerAdjustment, via engine.Via) error {
	return p.Judge(ctx, pod, ctr, adjust, via).Err()
}

// Judge decides on everything a container can run code from: its image,
// then each image volume. Every decision is recorded; the first denial is
// returned, or else the image's allow.
func (p *NRIPlugin) Judge(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, adjust *api.ContainerAdjustment, via engine.Via) verify.Decision {
	c := engine.Context{Pod: pod.GetName(), Container: ctr.GetName(), Via: via}
	var first verify.Decision
	for i, j := range ContainerImages(ctx, p.Images, pod, ctr, adjust) {
		c.Volume = j.Volume
		var d verify.Decision
		if j.Err != nil {
			d = p.Engine.Unjudged(ctx, ctr.GetAnnotations()[AnnotationImageName], pod.GetNamespace(), j.Volume, j.Err, c)
		} else {
			d = p.Engine.DecideAny(ctx, j.Candidates, c)
		}
		if !d.Allowed {
			return d
		}
		if i == 0 {
			first = d
		}
	}
	return first
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
