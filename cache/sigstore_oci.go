package cache

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache/cosign"
	"github.com/trustd/trustd/verify"
)

// Bounds on the referrers (OCI 1.1) part of a repository's signatures.
const (
	// maxReferrerDigests bounds the digests whose referrers are asked per
	// repository and round (a pulled digest is always asked).
	maxReferrerDigests = 64
	// maxReferrers bounds the referrer manifests read per digest.
	maxReferrers = 64
	// maxWantedDigests bounds the image digests kept per wanted repository.
	maxWantedDigests = 256
	// maxSigBundle bounds one Sigstore bundle (a certificate chain and a
	// log entry or two: a few KiB in practice).
	maxSigBundle = 256 << 10
	// maxSigResponse bounds every response body a sigstore source reads
	// (a tag list page, a referrers index, a manifest, a blob).
	maxSigResponse = 4 << 20
)

// emptyMediaType is the OCI empty descriptor's media type: the config of a
// cosign bundle manifest, which some registries report as the artifact
// type of a referrer that sets none in its descriptor.
const emptyMediaType = "application/vnd.oci.empty.v1+json"

// refTagRE matches the referrers tag scheme's fallback index tag of a
// digest (registries without the referrers API).
var refTagRE = regexp.MustCompile(`^sha256-([0-9a-f]{64})$`)

// WantDigest adds image digests of repo (images the node has) whose
// referrers are asked for Sigstore bundles while they are unsigned. repo
// is kept in sync (Want) too.
func (s *SigstoreSource) WantDigest(repo string, ds ...digest.Digest) {
	if !s.Covers(repo) {
		return
	}
	s.Want(repo)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.wanted[repo] {
		return // beyond maxSigstoreRepos
	}
	if s.wantedDigests == nil {
		s.wantedDigests = map[string][]digest.Digest{}
	}
	for _, d := range ds {
		cur := s.wantedDigests[repo]
		if d.Validate() != nil || d.Algorithm() != digest.SHA256 || slices.Contains(cur, d) || len(cur) >= maxWantedDigests {
			continue
		}
		s.wantedDigests[repo] = append(cur, d)
	}
}

// referrerDigests returns the digests of repo whose referrers are asked:
// the pulled ones always, then, while not signed yet, the digests of the
// images the node has (WantDigest) and those the repository's tags name
// in the referrers tag scheme (sha256-<hex>), at most maxReferrerDigests.
func (s *SigstoreSource) referrerDigests(repo string, tags []string, pulled []digest.Digest) ([]digest.Digest, error) {
	s.mu.Lock()
	signed := map[digest.Digest]bool{}
	if b := s.repos[repo]; b != nil {
		for _, sig := range b.Signatures {
			signed[sig.Digest] = true
		}
	}
	candidates := slices.Clone(s.wantedDigests[repo])
	s.mu.Unlock()
	for _, t := range tags {
		if m := refTagRE.FindStringSubmatch(t); m != nil {
			candidates = append(candidates, digest.NewDigestFromEncoded(digest.SHA256, m[1]))
		}
	}
	var out []digest.Digest
	for _, d := range pulled {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	for _, d := range candidates {
		if signed[d] || slices.Contains(out, d) {
			continue
		}
		if len(out) >= maxReferrerDigests+len(pulled) {
			return out, fmt.Errorf("more than %d unsigned digests to ask referrers of; the rest are asked in later rounds or at their pull", maxReferrerDigests)
		}
		out = append(out, d)
	}
	return out, nil
}

// fetchReferrers asks the registry for the referrers of digest d of repo
// (OCI 1.1 referrers API, or the referrers tag scheme when the registry
// has no such API) and returns the Sigstore bundles among them that
// verify (why the others were refused goes to why).
func (s *SigstoreSource) fetchReferrers(r name.Repository, repo string, d digest.Digest, opts []remote.Option, why refusals) ([]SigstoreSignature, error) {
	idx, err := remote.Referrers(r.Digest(d.String()), opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("referrers index: %w", err)
	}
	var out []SigstoreSignature
	var problems []error
	n := 0
	for _, desc := range im.Manifests {
		if at := desc.ArtifactType; at != "" && at != cosign.BundleMediaType && at != cosign.SigArtifactType && at != emptyMediaType {
			continue // an attestation, an SBOM, ...: not a signature
		}
		if n++; n > maxReferrers {
			problems = append(problems, fmt.Errorf("more than %d referrers; the rest are not read", maxReferrers))
			break
		}
		if desc.Size <= 0 || desc.Size > maxSigManifest {
			problems = append(problems, fmt.Errorf("referrer %s: size %d", desc.Digest, desc.Size))
			continue
		}
		got, err := remote.Get(r.Digest(desc.Digest.String()), opts...)
		if err != nil {
			problems = append(problems, fmt.Errorf("referrer %s: %w: %w", desc.Digest, ErrUnreachable, err))
			continue
		}
		arts, more := CosignArtifacts(got.Manifest, d, remoteBlobs(r, opts))
		problems = append(problems, more...)
		sigs, more := s.verifyArtifacts(repo, d, arts, why)
		out = append(out, sigs...)
		problems = append(problems, more...)
	}
	return out, errors.Join(problems...)
}

// CosignArtifacts reads the cosign signatures of one manifest, as found in
// a registry or an archive: a tag-scheme signature manifest (simple-signing
// payload layers, each with its signature annotation), or a Sigstore bundle
// manifest (artifact type cosign.BundleMediaType, attached to subject, the
// image digest; subject "" accepts no bundle manifest). A manifest that
// names a subject must name subject when subject is given (a referrer). blob returns the
// content of a layer (at most max bytes, checked against the descriptor).
// A manifest of neither kind yields nothing. Nothing is verified here but
// the bytes; problems name what was skipped and why.
func CosignArtifacts(manifest []byte, subject digest.Digest, blob func(l v1.Descriptor, max int64) ([]byte, error)) ([]cosign.Artifact, []error) {
	if len(manifest) > maxSigManifest {
		return nil, []error{fmt.Errorf("signature manifest: %w", ErrTooLarge)}
	}
	var mf v1.Manifest
	if err := json.Unmarshal(manifest, &mf); err != nil {
		return nil, []error{fmt.Errorf("signature manifest: %w", err)}
	}
	if len(mf.Layers) > maxSigLayers {
		return nil, []error{fmt.Errorf("signature manifest has %d layers (at most %d are read)", len(mf.Layers), maxSigLayers)}
	}
	isBundle := mf.ArtifactType == cosign.BundleMediaType || (mf.ArtifactType == "" && string(mf.Config.MediaType) == cosign.BundleMediaType)
	switch {
	case isBundle && subject == "":
		return nil, []error{errors.New("a Sigstore bundle manifest attached to no image")}
	case (isBundle || mf.Subject != nil) && subject != "" && (mf.Subject == nil || digest.Digest(mf.Subject.Digest.String()) != subject):
		return nil, []error{fmt.Errorf("a signature manifest that refers to another image than %s", subject)}
	}
	var out []cosign.Artifact
	var problems []error
	for _, l := range mf.Layers {
		switch {
		case isBundle && string(l.MediaType) == cosign.BundleMediaType:
			if l.Size <= 0 || l.Size > maxSigBundle {
				problems = append(problems, fmt.Errorf("bundle %s: size %d", l.Digest, l.Size))
				continue
			}
			b, err := blob(l, maxSigBundle)
			if err != nil {
				problems = append(problems, fmt.Errorf("bundle %s: %w", l.Digest, err))
				continue
			}
			if !json.Valid(b) {
				problems = append(problems, fmt.Errorf("bundle %s: not JSON", l.Digest))
				continue
			}
			out = append(out, cosign.Artifact{Bundle: json.RawMessage(b)})
		case !isBundle && string(l.MediaType) == cosign.PayloadMediaType:
			b64, ok := l.Annotations[cosign.SignatureAnn]
			if !ok {
				continue
			}
			if l.Size <= 0 || l.Size > maxSigPayload {
				problems = append(problems, fmt.Errorf("payload %s: size %d", l.Digest, l.Size))
				continue
			}
			sig, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				problems = append(problems, fmt.Errorf("payload %s: signature annotation: %w", l.Digest, err))
				continue
			}
			payload, err := blob(l, maxSigPayload)
			if err != nil {
				problems = append(problems, fmt.Errorf("payload %s: %w", l.Digest, err))
				continue
			}
			a := cosign.Artifact{
				Payload: payload, Signature: sig,
				Certificate: []byte(l.Annotations[cosign.CertificateAnn]),
				Chain:       []byte(l.Annotations[cosign.ChainAnn]),
			}
			if rb := l.Annotations[cosign.BundleAnn]; rb != "" {
				a.RekorBundle = json.RawMessage(rb)
			}
			if ts := l.Annotations[cosign.TimestampAnn]; ts != "" {
				a.Timestamp = []byte(ts)
			}
			out = append(out, a)
		}
	}
	return out, problems
}

// CheckBlob checks that b is the content descriptor l names.
func CheckBlob(l v1.Descriptor, b []byte) error {
	if int64(len(b)) != l.Size {
		return fmt.Errorf("%d bytes, the manifest says %d", len(b), l.Size)
	}
	if sum := sha256.Sum256(b); l.Digest.Algorithm != "sha256" || fmt.Sprintf("%x", sum) != l.Digest.Hex {
		return errors.New("other bytes than the manifest names")
	}
	return nil
}

// remoteBlobs reads layers of repo from its registry.
func remoteBlobs(repo name.Repository, opts []remote.Option) func(v1.Descriptor, int64) ([]byte, error) {
	return func(l v1.Descriptor, max int64) ([]byte, error) {
		layer, err := remote.Layer(repo.Digest(l.Digest.String()), opts...)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, max+1))
		if err != nil {
			return nil, err
		}
		if err := CheckBlob(l, b); err != nil {
			return nil, fmt.Errorf("the registry served %w", err)
		}
		return b, nil
	}
}

// artifactName names an artifact in errors: its payload's or bundle's digest.
func artifactName(a *cosign.Artifact) string {
	if len(a.Bundle) > 0 {
		return "bundle " + digest.FromBytes(a.Bundle).String()
	}
	return "payload " + digest.FromBytes(a.Payload).String()
}

// limitBodies bounds every response body read through rt to
// maxSigResponse bytes: reading more fails.
func limitBodies(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		if resp.ContentLength > maxSigResponse {
			resp.Body.Close()
			return nil, fmt.Errorf("%s: %d bytes: %w", req.URL.Path, resp.ContentLength, ErrTooLarge)
		}
		resp.Body = &limitedBody{rc: resp.Body, left: maxSigResponse}
		return resp, nil
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// limitedBody fails a read beyond its bound (a truncated body must not
// pass for a whole one).
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		var one [1]byte
		if n, _ := l.rc.Read(one[:]); n > 0 {
			return 0, fmt.Errorf("response body: %w (more than %d bytes)", ErrTooLarge, maxSigResponse)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.rc.Read(p)
	l.left -= int64(n)
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }

// AddSignatures verifies arts as signatures of digest d of repo, found
// outside a registry (a `cosign save` archive), and adds those that verify:
// in memory, and on disk when persist (the caller holds the cache lock).
// It returns the signatures that verified (new or not), how many were new,
// and the problems with the others (an artifact by no signer the policy
// names is not one).
func (s *SigstoreSource) AddSignatures(repo string, d digest.Digest, arts []cosign.Artifact, persist bool) ([]SigstoreSignature, int, error) {
	if !s.Covers(repo) {
		return nil, 0, fmt.Errorf("source %q does not cover %s", s.SourceName, repo)
	}
	defer s.locks.lock(repo)()
	sigs, problems := s.verifyArtifacts(repo, d, arts, nil)
	added, err := s.merge(repo, sigs, persist)
	if err != nil {
		problems = append(problems, err)
	}
	return sigs, added, errors.Join(problems...)
}

// cached returns the cached signatures of repo (nil when none).
func (s *SigstoreSource) cached(repo string) *SigstoreBundle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repos[repo]
}

// importBundle verifies again, with the node's keys, the signatures of one
// repository carried by `cache export`, and caches those that verify (the
// caller holds the cache lock). A signature by a signer the node's policy
// does not name is left out; any other that does not verify (altered on
// the way) is an error, and is not cached.
func (s *SigstoreSource) importBundle(b *SigstoreBundle) (int, error) {
	if b == nil || b.Repository == "" {
		return 0, errors.New("malformed repository bundle")
	}
	if !s.Covers(b.Repository) {
		return 0, fmt.Errorf("%s: not covered by the source's repositories", b.Repository)
	}
	if len(b.Signatures) > maxSigsPerRepo {
		return 0, fmt.Errorf("%s: %d signatures (at most %d)", b.Repository, len(b.Signatures), maxSigsPerRepo)
	}
	var ok []SigstoreSignature
	var errs []error
	for _, sig := range b.Signatures {
		switch kept, err := s.reverify(b.Repository, &sig); {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", b.Repository, err))
		case kept: // else a signer this node's policy does not name
			ok = append(ok, sig)
		}
	}
	defer s.locks.lock(b.Repository)()
	n, err := s.merge(b.Repository, ok, true)
	return n, errors.Join(append(errs, err)...)
}

// AddCosignSignatures verifies signatures found outside a registry (in a
// `cosign save` archive) as signatures of digest d of repo, with each
// sigstore source that covers repo, and adds those that verify to the
// sources' indexes; with persist also to the cache on disk, under the
// cache lock. It returns the sources' new indexes, and a line per source
// saying what verified.
func (s *Store) AddCosignSignatures(repo string, d digest.Digest, arts []cosign.Artifact, persist bool) ([]*verify.SourceIndex, []string, error) {
	if persist {
		lock, err := LockDir(s.Dir)
		if err != nil {
			return nil, nil, err
		}
		defer lock.Unlock()
	}
	var out []*verify.SourceIndex
	var lines []string
	var errs []error
	for _, src := range s.sources {
		ss, ok := src.(*SigstoreSource)
		if !ok || !ss.Covers(repo) {
			continue
		}
		sigs, added, err := ss.AddSignatures(repo, d, arts, persist)
		if err != nil {
			errs = append(errs, fmt.Errorf("source %q: %s@%s: %w", ss.SourceName, repo, d, err))
		}
		var signers []string
		for _, sig := range sigs {
			signers = append(signers, sig.Signer)
		}
		what := "verified"
		if persist {
			what = fmt.Sprintf("verified, %d new in the cache", added)
		}
		lines = append(lines, fmt.Sprintf("%s: %s@%s: %d of %d signatures in the archive %s (signers: %s)", ss.SourceName, repo, d, len(sigs), len(arts), what, strings.Join(signers, ", ")))
		out = append(out, ss.Index())
	}
	return out, lines, errors.Join(errs...)
}
