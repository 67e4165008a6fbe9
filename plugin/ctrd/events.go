package ctrd

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/trustd/trustd/plugin/engine"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/typeurl/v2"

	"github.com/trustd/trustd/verify"
)

// Labels trustd sets on every image it judges in containerd's image store
// (the CRI namespace). They report; they never delete or block anything:
// creation is the gate.
const (
	// LabelVerdict is "allowed", "denied" or "audit" (would be denied).
	LabelVerdict = "trustd.dev/verdict"
	// LabelReason is the verdict's reason, at most 256 bytes.
	LabelReason = "trustd.dev/reason"
	// LabelDigest is the image's target digest when it was judged: a later
	// update of the image to another target is judged again.
	LabelDigest = "trustd.dev/digest"
	// LabelCheckedAt is when the image was judged (RFC 3339).
	LabelCheckedAt = "trustd.dev/checked-at"
)

// ImageWatcher judges every image created or re-tagged in containerd's
// store as soon as it appears — pulled, imported from a tar, or tagged —
// labels it with the verdict, logs it and counts it (through the Engine).
type ImageWatcher struct {
	Ctrd   *Containerd
	Engine *engine.Engine
	Log    *slog.Logger
}

// Run watches until ctx is done, resubscribing after containerd restarts.
func (w *ImageWatcher) Run(ctx context.Context) {
	for ctx.Err() == nil {
		cl, err := w.Ctrd.Client(ctx)
		if err != nil {
			sleepCtx(ctx, 2*time.Second)
			continue
		}
		sctx, cancel := context.WithCancel(ctx)
		ch, errs := cl.Subscribe(sctx, `namespace=="`+w.Ctrd.Namespace+`",topic~="^/images/(create|update|delete)$"`)
		w.Log.Info("watching containerd image events", "namespace", w.Ctrd.Namespace)
		// While subscribed, every event invalidates the name it concerns
		// as it arrives, before any judging, so the name memo stays valid.
		w.Ctrd.TrackNames()
		w.learnAll(ctx)
		w.contentAdded() // images may have arrived while the stream was down
	loop:
		for {
			select {
			case <-ctx.Done():
				w.Ctrd.UntrackNames()
				cancel()
				return
			case err := <-errs:
				if ctx.Err() == nil {
					w.Log.Warn("image event stream ended; resubscribing", "error", errString(err))
				}
				break loop
			case env := <-ch:
				if env == nil {
					break loop
				}
				ev, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					w.Ctrd.TrackNames() // which name it concerns is unknown: start afresh
					continue
				}
				switch e := ev.(type) {
				case *apievents.ImageCreate:
					w.Ctrd.ForgetName(e.Name)
					w.contentAdded()
					w.judge(ctx, e.Name, e.Labels)
				case *apievents.ImageUpdate:
					w.Ctrd.ForgetName(e.Name)
					w.contentAdded()
					w.judge(ctx, e.Name, e.Labels)
				case *apievents.ImageDelete:
					w.Ctrd.ForgetName(e.Name)
				}
			}
		}
		w.Ctrd.UntrackNames()
		cancel()
		w.Ctrd.Close()
		sleepCtx(ctx, time.Second)
	}
}

// contentAdded tells the engine's resolver that an image arrived: content
// it could not find before may be in the store now.
func (w *ImageWatcher) contentAdded() {
	if w.Engine != nil && w.Engine.Resolver != nil {
		w.Engine.Resolver.ContentAdded()
	}
}

// learnAll has the facts of every image in the store computed now (see
// Containerd.Learn), so that no container decision has to read content.
func (w *ImageWatcher) learnAll(ctx context.Context) {
	cl, err := w.Ctrd.Client(ctx)
	if err != nil {
		return
	}
	imgs, err := cl.ImageService().List(namespaces.WithNamespace(ctx, w.Ctrd.Namespace))
	if err != nil {
		w.Log.Debug("listing containerd's images", "error", err.Error())
		return
	}
	for _, img := range imgs {
		if _, err := w.Ctrd.Learn(ctx, img.Target); err != nil {
			w.Log.Debug("image facts", "image", img.Name, "error", err.Error())
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// judge decides one image by name and labels it, unless it was judged
// already for its current target (our own label update fires an event).
func (w *ImageWatcher) judge(ctx context.Context, name string, labels map[string]string) {
	if strings.HasPrefix(name, "sha256:") { // CRI's image-ID alias
		return
	}
	cl, err := w.Ctrd.Client(ctx)
	if err != nil {
		return
	}
	ctx = namespaces.WithNamespace(ctx, w.Ctrd.Namespace)
	img, err := cl.ImageService().Get(ctx, name)
	if err != nil {
		return
	}
	cfg, err := w.Ctrd.Learn(ctx, img.Target) // for the containers made from it
	if err != nil {
		w.Log.Debug("image facts", "image", name, "error", err.Error())
	}
	if img.Labels[LabelDigest] == string(img.Target.Digest) && img.Labels[LabelVerdict] != "" {
		return
	}
	f := verify.Facts{Subject: verify.SubjectCheck, Image: name, Digest: img.Target.Digest, ConfigDigest: cfg}
	d := w.Engine.Decide(ctx, f, engine.Context{Via: engine.ViaImageEvent})
	verdict := "denied"
	switch {
	case d.Audit:
		verdict = "audit"
	case d.Allowed:
		verdict = "allowed"
	}
	reason := d.Reason
	if len(reason) > 256 {
		reason = reason[:253] + "..."
	}
	if img.Labels == nil {
		img.Labels = map[string]string{}
	}
	img.Labels[LabelVerdict] = verdict
	img.Labels[LabelReason] = reason
	img.Labels[LabelDigest] = string(img.Target.Digest)
	img.Labels[LabelCheckedAt] = time.Now().UTC().Format(time.RFC3339)
	if _, err := cl.ImageService().Update(ctx, img, "labels."+LabelVerdict, "labels."+LabelReason, "labels."+LabelDigest, "labels."+LabelCheckedAt); err != nil {
		w.Log.Warn("labelling image failed", "image", name, "error", err.Error())
	}
}
