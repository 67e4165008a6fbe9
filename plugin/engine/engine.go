package engine

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// ErrConfig marks errors in the configuration (the policy file): the
// daemon refuses to start with them, a relayed pull with them is blocked,
// and `trustd` exits 2.
var ErrConfig = errors.New("configuration error")

// Snapshot is what decisions are made from. It is immutable.
type Snapshot struct {
	Policy *policy.Policy
	Index  *verify.Index
}

// Engine makes decisions from the current Snapshot and logs each one. It
// is safe for concurrent use; Swap replaces the snapshot atomically with
// respect to decisions in flight (each decision sees one whole snapshot).
type Engine struct {
	snap atomic.Pointer[Snapshot]
	// Resolver resolves signed digests to the configs they cover; nil
	// means only digests are compared.
	Resolver *Resolver
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
	// OnDecision, if set, is called after every decision (metrics).
	OnDecision func(f verify.Facts, d verify.Decision, c Context, took time.Duration)

	// repeats keeps refusals that repeat (kubelet retries a refused
	// creation every 10–15 s) from flooding the log.
	repeats repeats
}

// Swap installs a new snapshot.
func (e *Engine) Swap(s *Snapshot) { e.snap.Store(s) }

// Snapshot returns the current snapshot (nil before the first Swap).
func (e *Engine) Snapshot() *Snapshot { return e.snap.Load() }

// SwapIndex replaces only the trust index, keeping the policy.
func (e *Engine) SwapIndex(update func(*verify.Index) *verify.Index) {
	if e.Resolver != nil {
		e.Resolver.ContentAdded() // a sync or a fetch may have brought manifests
	}
	for {
		old := e.snap.Load()
		if old == nil {
			return
		}
		n := &Snapshot{Policy: old.Policy, Index: update(old.Index)}
		if e.snap.CompareAndSwap(old, n) {
			return
		}
	}
}

// Context is what is logged about the object of a decision besides the
// facts themselves.
type Context struct {
	Pod       string
	Container string
	// Volume is the mount point of the image volume judged; "" for the
	// container's own image.
	Volume string
	Via    Via
}

// Via says which path asked for a decision: logged as "via" and a label of
// the decision metrics.
type Via string

// The paths that ask for decisions.
const (
	ViaNRI         Via = "nri"          // NRI validation (fail-closed)
	ViaNRICreate   Via = "nri-create"   // NRI CreateContainer (containerd < 2.2)
	ViaSynchronize Via = "synchronize"  // the running containers, at (re)connection
	ViaImageEvent  Via = "image-event"  // an image arriving in containerd's store
	ViaPull        Via = "control:pull" // the pull gate, relayed to the daemon
	ViaLocal       Via = "local"        // the pull gate or a check without a daemon
	ViaCLI         Via = "cli"          // trustd verify
	ViaArchive     Via = "archive"      // trustd verify --archive
	ViaDocker      Via = "docker"       // Docker Engine's authorization plugin (fail-closed)
)

// enforcing reports whether decisions made via via can refuse something
// (a creation, a pull). The others judge what already exists (an image
// that arrived, a running container) and are logged as verdicts, so that
// a search for `"decision":"deny"` finds refusals only.
func enforcing(via Via) bool { return via != ViaImageEvent && via != ViaSynchronize }

// Decide judges f against the current snapshot. Content lookups (to match
// a config digest to a signed manifest) happen only when the digests alone
// do not allow the image.
func (e *Engine) Decide(ctx context.Context, f verify.Facts, c Context) verify.Decision {
	start := time.Now()
	d := e.Evaluate(ctx, f)
	e.Record(f, d, c, time.Since(start))
	return d
}

// DecideAny judges one image known under several names (candidates, all
// with the same identity): it is allowed when one name is. Only the
// decision returned is recorded: the first allow, or else the first
// name's denial, which lists the other names it was also judged under.
func (e *Engine) DecideAny(ctx context.Context, candidates []verify.Facts, c Context) verify.Decision {
	start := time.Now()
	var first verify.Decision
	var f0 verify.Facts
	for i, f := range candidates {
		d := e.Evaluate(ctx, f)
		d.Volume = c.Volume
		if d.Allowed && !d.Audit {
			e.Record(f, d, c, time.Since(start))
			return d
		}
		if i == 0 {
			first, f0 = d, f
		}
	}
	if len(candidates) > 1 {
		names := make([]string, 0, len(candidates)-1)
		for _, f := range candidates[1:] {
			names = append(names, f.Image)
		}
		first.Reason += " (nor under its other names in containerd's store: " + strings.Join(names, ", ") + ")"
	}
	e.Record(f0, first, c, time.Since(start))
	return first
}

// Unjudged records and returns the denial of an image that could not be
// judged (its facts could not be gathered or bound to what runs). claim is
// the name the request gave, if any; it is reported as requested, never as
// the image judged.
func (e *Engine) Unjudged(ctx context.Context, claim, namespace, volume string, err error, c Context) verify.Decision {
	f := verify.Facts{Subject: verify.SubjectContainer, Image: claim, Namespace: namespace}
	d := verify.Decision{Requested: claim, Image: claim, Namespace: namespace, Volume: volume, Signers: []string{}, Reason: "could not judge the image: " + err.Error()}
	if volume != "" {
		d.Image, d.Requested, f.Image = "", "", ""
	}
	e.Record(f, d, c, 0)
	return d
}

// Record logs a decision and reports it to OnDecision.
func (e *Engine) Record(f verify.Facts, d verify.Decision, c Context, took time.Duration) {
	e.log(f, d, c, took)
	if e.OnDecision != nil {
		e.OnDecision(f, d, c, took)
	}
}

// Evaluate is Decide without the record of it: the caller records the
// decision it returns (Record), once.
func (e *Engine) Evaluate(ctx context.Context, f verify.Facts) verify.Decision {
	now := e.now()
	s := e.snap.Load()
	if s == nil {
		return verify.Decide(nil, nil, f, now)
	}
	// One pass: digests decide first; only when they do not does Decide
	// ask the resolver what the signed digests cover (content-addressed,
	// memoised).
	if e.Resolver != nil && f.Content == nil {
		f.Content = e.Resolver
	}
	return verify.Decide(s.Policy, s.Index, f, now)
}

func (e *Engine) log(f verify.Facts, d verify.Decision, c Context, took time.Duration) {
	if e.Log == nil {
		return
	}
	verdict := d.Verdict()
	level := slog.LevelInfo
	msg, key := "decision", "decision"
	switch {
	case !enforcing(c.Via):
		msg, key = "verdict", "verdict"
	case verdict != verify.Allow:
		level = slog.LevelWarn
		if !e.repeats.first(e.now(), c, d, e.Log) {
			return
		}
	}
	attrs := []slog.Attr{
		slog.String(key, string(verdict)),
		slog.String("image", d.Image),
		slog.String("requested", f.Image),
		slog.String("digest", string(d.Digest)),
		slog.String("config_digest", string(f.ConfigDigest)),
		slog.String("signed_digest", string(d.SignedDigest)),
		slog.String("rule", d.Rule),
		slog.String("source", d.Source),
		slog.Any("signers", d.Signers),
		slog.String("reason", d.Reason),
		slog.String("via", string(c.Via)),
		slog.Duration("took", took),
	}
	if f.Subject == verify.SubjectContainer {
		attrs = append(attrs, slog.String("namespace", f.Namespace), slog.String("pod", c.Pod), slog.String("container", c.Container))
		if c.Volume != "" {
			attrs = append(attrs, slog.String("volume", c.Volume))
		}
	}
	e.Log.LogAttrs(context.Background(), level, msg, attrs...)
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}
