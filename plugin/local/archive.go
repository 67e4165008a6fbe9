package local

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/plugin/archive"
	"github.com/trustd/trustd/plugin/engine"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// Reasons of the denials JudgeArchive makes itself.
const (
	// ReasonNoName is the reason an image the archive gives no name is
	// denied.
	ReasonNoName = "the archive gives this image no name; trustd judges images by the reference they are loaded as"
	// maxReasonProblems bounds how many of an image's problems its reason lists.
	maxReasonProblems = 5
)

// ErrArchiveNames is matched by JudgeArchive's error when asName cannot
// name exactly one image of the archive.
var ErrArchiveNames = errors.New("cannot name the archive's image")

// JudgeArchive decides every image of an archive read before it is loaded,
// from the cache only: one verdict per image and name it would be loaded
// as (names that normalise to one reference are judged once). An image the
// archive has tampered with, lacks content of, or gives no name is denied;
// an index that is not itself signed is allowed when every platform it
// brings is. asName, if set, is the reference the one image without a name
// is loaded as (`ctr images import --index-name`). Every decision is
// recorded on l's engine.
func (l *Local) JudgeArchive(ctx context.Context, a *archive.Archive, asName, namespace string) ([]verify.Decision, error) {
	as, err := unnamedAs(a, asName)
	if err != nil {
		return nil, err
	}
	for i := range a.Images {
		if len(a.Images[i].Names) == 0 && as != "" {
			a.Images[i].Names = []string{as}
		}
	}
	e := archiveEngine(l, a)
	var out []verify.Decision
	for _, img := range a.Images {
		out = append(out, judgeArchiveImage(ctx, e, l.Policy, img, namespace)...)
	}
	return out, nil
}

// unnamedAs returns the name the archive's one image without a name is
// loaded as: asName ("" when not set), or an error when the archive does
// not hold exactly one such image.
func unnamedAs(a *archive.Archive, asName string) (string, error) {
	if asName == "" {
		return "", nil
	}
	unnamed := 0
	for _, img := range a.Images {
		if len(img.Names) == 0 {
			unnamed++
		}
	}
	if unnamed != 1 {
		return "", fmt.Errorf("%w: --name %s: the archive holds %d images without a name; --name names exactly one", ErrArchiveNames, asName, unnamed)
	}
	return asName, nil
}

// archiveEngine is l's engine with the archive's own manifests and indexes
// (content-addressed, verified) as a first source of content, so that a
// signed manifest or index the archive holds can be matched to its configs.
func archiveEngine(l *Local, a *archive.Archive) *engine.Engine {
	readers := []engine.BlobReader{archiveBlobs{a}}
	if l.Engine.Resolver != nil {
		readers = append(readers, l.Engine.Resolver.Readers...)
	}
	e := &engine.Engine{Resolver: &engine.Resolver{Readers: readers}, Log: l.Engine.Log, Now: l.Engine.Now}
	e.Swap(l.Engine.Snapshot())
	return e
}

// archiveBlobs is a plugin.BlobReader of the archive's manifests and indexes.
type archiveBlobs struct{ a *archive.Archive }

func (b archiveBlobs) ReadBlob(_ context.Context, d digest.Digest) ([]byte, error) {
	if data, ok := b.a.Blob(d); ok {
		return data, nil
	}
	return nil, fmt.Errorf("%s is not a manifest of the archive", d)
}

// judgeArchiveImage decides one image of an archive under each of its
// names (names that normalise to the same reference are judged once).
func judgeArchiveImage(ctx context.Context, e *engine.Engine, p *policy.Policy, img archive.Image, namespace string) []verify.Decision {
	deny := func(name, reason string) verify.Decision {
		d := verify.Decision{Image: name, Requested: name, Digest: img.ManifestDigest, ConfigDigest: img.ConfigDigest, Signers: []string{}, Reason: reason}
		if name == "" {
			d.Image = "<none>"
		} else if ref, err := policy.ParseRef(name); err == nil {
			ref.Repo = p.Origin(ref.Repo)
			d.Image = ref.String()
		}
		if namespace != "" {
			d.Namespace = namespace
		}
		// Recorded like every decision (log and metrics), though made
		// here: the archive itself is what denies.
		f := verify.Facts{Subject: verify.SubjectCheck, Image: name, Digest: img.ManifestDigest, ConfigDigest: img.ConfigDigest, Namespace: namespace}
		e.Record(f, d, engine.Context{Via: engine.ViaArchive}, 0)
		return d
	}
	var problems string
	if len(img.Problems) > 0 {
		ps := img.Problems
		if len(ps) > maxReasonProblems {
			ps = append(ps[:maxReasonProblems:maxReasonProblems], fmt.Sprintf("and %d more problems", len(img.Problems)-maxReasonProblems))
		}
		problems = "archive: " + strings.Join(ps, "; ")
	}

	names := uniqueRefs(img.Names)
	if len(names) == 0 {
		reason := ReasonNoName
		if len(img.Tags) > 0 {
			reason = fmt.Sprintf("the archive names this image only by the tag %q, without a repository; trustd judges images by the reference they are loaded as", img.Tags[0])
		}
		reason += " (give it with --name REF, as it will be loaded with `ctr images import --index-name REF`)"
		if problems != "" {
			reason += "; " + problems
		}
		return []verify.Decision{deny("", reason)}
	}
	var out []verify.Decision
	for _, name := range names {
		if problems != "" {
			out = append(out, deny(name, problems))
			continue
		}
		out = append(out, decideArchiveImage(ctx, e, img, name, namespace))
	}
	return out
}

// decideArchiveImage decides an intact image under one name. An index
// that is not itself signed is allowed when every platform it brings is.
func decideArchiveImage(ctx context.Context, e *engine.Engine, img archive.Image, name, namespace string) verify.Decision {
	pc := engine.Context{Via: engine.ViaArchive}
	f := verify.Facts{Subject: verify.SubjectCheck, Image: name, Digest: img.ManifestDigest, ConfigDigest: img.ConfigDigest}
	if namespace != "" {
		f.Subject, f.Namespace = verify.SubjectContainer, namespace
	}
	d := e.Decide(ctx, f, pc)
	if d.Allowed || !img.IsIndex() {
		return d
	}
	var runnable []archive.Platform
	for _, pl := range img.Platforms {
		if pl.Present && !pl.Attestation {
			runnable = append(runnable, pl)
		}
	}
	if len(runnable) < 2 {
		return d // judged with its only platform's config digest already
	}
	var first verify.Decision
	for i, pl := range runnable {
		pf := f
		pf.Digest, pf.ConfigDigest = pl.Manifest, pl.Config
		pd := e.Decide(ctx, pf, pc)
		if !pd.Allowed {
			pd.Reason = fmt.Sprintf("platform %s (manifest %s) of index %s: %s", pl.Platform, pl.Manifest, img.ManifestDigest, pd.Reason)
			return pd
		}
		if i == 0 {
			first = pd
		}
	}
	first.Reason = fmt.Sprintf("each of the %d platforms of index %s is signed; %s: %s", len(runnable), img.ManifestDigest, runnable[0].Platform, first.Reason)
	return first
}

// uniqueRefs drops the names that normalise to a reference already listed
// (RepoTags "x:1" and io.containerd.image.name "docker.io/library/x:1").
func uniqueRefs(names []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		key := n
		if ref, err := policy.ParseRef(n); err == nil {
			key = ref.String()
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, n)
		}
	}
	return out
}
