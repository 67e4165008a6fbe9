package local

import (
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/cache/cosign"
	"github.com/trustd/trustd/plugin/archive"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// ArchiveSignatures reads the cosign signatures an archive carries — an
// OCI layout written by `cosign save`: its tag-scheme signature manifests,
// and the Sigstore bundles attached to its images (referrers) — verifies
// them, for each image under each name it would be loaded as, with the
// policy's sigstore sources (their rules' keys), and adds those that verify
// to l's index, so that JudgeArchive then judges the images with them.
// With persist they are also written to the cache (under its lock), so
// that the node judges the side-loaded images from its cache like pulled
// ones. Nothing that does not verify is added. asName is JudgeArchive's.
// It returns a line per image, name and source.
func (l *Local) ArchiveSignatures(a *archive.Archive, asName string, persist bool) ([]string, error) {
	as, _ := unnamedAs(a, asName) // JudgeArchive reports a name that fits no image
	// The tag scheme's payloads name the digest they sign: routed by it
	// (Verify checks it, with the repository).
	tagScheme := map[digest.Digest][]cosign.Artifact{}
	var errs []error
	for _, m := range a.SignatureManifests {
		mf, ok := a.Blob(m)
		if !ok {
			errs = append(errs, fmt.Errorf("signature manifest %s is not in the archive", m))
			continue
		}
		arts, problems := cache.CosignArtifacts(mf, "", archiveBlob(a))
		errs = append(errs, problems...)
		for _, art := range arts {
			d := cosign.PayloadDigest(art.Payload)
			tagScheme[d] = append(tagScheme[d], art)
		}
	}
	var lines []string
	for _, img := range a.Images {
		if len(img.Problems) > 0 || img.ManifestDigest == "" {
			continue // denied whatever its signatures
		}
		d := img.ManifestDigest
		arts := tagScheme[d]
		for _, r := range a.Referrers(d) {
			mf, _ := a.Blob(r)
			more, problems := cache.CosignArtifacts(mf, d, archiveBlob(a))
			arts = append(arts, more...)
			errs = append(errs, problems...)
		}
		if len(arts) == 0 {
			continue
		}
		names := img.Names
		if len(names) == 0 && as != "" {
			names = []string{as}
		}
		seen := map[string]bool{}
		for _, n := range names {
			ref, err := policy.ParseRef(n)
			if err != nil {
				continue
			}
			repo := l.Policy.Origin(ref.Repo)
			if seen[repo] {
				continue
			}
			seen[repo] = true
			sis, ls, err := l.Store.AddCosignSignatures(repo, d, arts, persist)
			lines = append(lines, ls...)
			if err != nil {
				errs = append(errs, err)
			}
			for _, si := range sis {
				l.Engine.SwapIndex(func(ix *verify.Index) *verify.Index { return ix.With(si) })
			}
		}
	}
	return lines, errors.Join(errs...)
}

// archiveBlob reads a signature's payload or bundle from the archive.
func archiveBlob(a *archive.Archive) func(v1.Descriptor, int64) ([]byte, error) {
	return func(l v1.Descriptor, max int64) ([]byte, error) {
		b, ok := a.Blob(digest.Digest(l.Digest.String()))
		if !ok {
			return nil, errors.New("not in the archive")
		}
		if int64(len(b)) > max {
			return nil, cache.ErrTooLarge
		}
		return b, cache.CheckBlob(l, b)
	}
}
