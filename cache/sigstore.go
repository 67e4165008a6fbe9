package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache/cosign"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// Bounds on what one repository's signatures may cost.
const (
	maxSigTags       = 1024     // signature tags read per repository and round
	maxSigManifest   = 1 << 20  // bytes of one signature manifest
	maxSigLayers     = 64       // signatures in one signature manifest
	maxSigPayload    = 64 << 10 // bytes of one payload
	maxSigsPerRepo   = 8192     // verified signatures kept per repository
	maxSigstoreRepos = 4096     // repositories kept in sync
	// Why signatures found for a digest were refused, kept in memory to
	// explain the digest's denial: at most this many digests, reasons per
	// digest, and bytes per reason.
	maxRefusedDigests = 1024
	maxRefusedReasons = 3
	maxRefusedReason  = 300
	sigstoreTimeout   = 60 * time.Second
)

var sigTagRE = regexp.MustCompile(`^sha256-([0-9a-f]{64})\.sig$`)

// SigstoreSignature is one verified cosign signature, as cached: enough to
// verify it again offline (Load does) and nothing that was not verified.
type SigstoreSignature struct {
	Digest digest.Digest `json:"digest"` // the image digest signed
	// Signer is who signed (cosign.Result.Signer): a key's ID, or a
	// keyless certificate's identity.
	Signer string `json:"key"`
	// Matches are the IDs of the policy's keys and identities that Signer
	// satisfies (cosign.Result.Matches); not cached: verifying again sets
	// them.
	Matches []string `json:"-"`
	cosign.Artifact
}

// SigstoreBundle is the cached signatures of one repository.
type SigstoreBundle struct {
	Repository string              `json:"repository"`
	Signatures []SigstoreSignature `json:"signatures"`
}

// SigstoreSource is a `kind = "sigstore"` source: cosign signatures in the
// tag scheme (<repo>:sha256-<hex>.sig) and Sigstore bundles attached to
// image digests through OCI 1.1 referrers (cosign v3's default, or its
// tag-scheme fallback), fetched from the registries for the repositories
// it covers that are wanted (the images the node has) or pulled, verified
// (cache/cosign) with the keys and keyless identities the policy's rules
// name and, keyless, the source's trusted root, and cached per repository
// as verified signatures only. Signatures are only ever added: a registry
// that stops serving one, or serves another manifest, does not remove what
// verified. Methods are safe for concurrent use.
type SigstoreSource struct {
	SourceName   string
	Dir          string
	Repositories []policy.Pattern
	// Verifier holds the keys and identities the policy's rules against
	// the source name, and the trusted root for keyless signatures.
	Verifier *cosign.Verifier
	// Root loads and refreshes Verifier.Root (nil: none configured).
	Root *SigstoreRoot
	// Options are added to the registry calls (tests: a transport).
	Options []remote.Option

	mu     sync.Mutex
	repos  map[string]*SigstoreBundle
	wanted map[string]bool
	// wantedDigests are the digests of images the node has, per wanted
	// repository (WantDigest).
	wantedDigests map[string][]digest.Digest
	locks         repoMutexes // one fetch or write of a repository at a time
	// refused holds, per "repository@digest", why the signatures found
	// for that digest at its last fetch were refused (noteRefused).
	refused map[string][]string
}

// Name implements Source.
func (s *SigstoreSource) Name() string { return s.SourceName }

// Kind implements Source.
func (s *SigstoreSource) Kind() string { return policy.KindSigstore }

// Covers reports whether the source covers repo per its repositories.
func (s *SigstoreSource) Covers(repo string) bool { return covers(s.Repositories, repo) }

// Want adds repositories to keep in sync (those the source covers).
func (s *SigstoreSource) Want(repos ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wanted = addWanted(s.wanted, s.Repositories, repos, maxSigstoreRepos)
}

// PullDiscovered implements RepositorySource: pulled repositories are
// kept in sync only when they have signatures.
func (s *SigstoreSource) PullDiscovered(time.Time) int { return 0 }

func (s *SigstoreSource) bundlePath(repo string) string {
	return filepath.Join(s.Dir, "sigstore", url.PathEscape(repo)+".json")
}

// Load verifies every cached repository's signatures again, offline, with
// the keys the policy names now (signatures by keys no rule names any
// more are dropped from the index), and returns the index. A bundle that
// does not parse, or holds a signature that does not verify, is moved
// aside and reported.
func (s *SigstoreSource) Load() (*verify.SourceIndex, error) {
	repos := map[string]*SigstoreBundle{}
	var errs []error
	if err := s.Root.Load(); err != nil {
		errs = append(errs, err)
	}
	entries, err := os.ReadDir(filepath.Join(s.Dir, "sigstore"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".json") {
			continue
		}
		if repo, err := url.PathUnescape(strings.TrimSuffix(n, ".json")); err == nil {
			names = append(names, repo)
		}
	}
	// Verifying is most of a cold start (an ECDSA verification per
	// signature): the repositories are verified on every CPU.
	bundles := make([]*SigstoreBundle, len(names))
	failed := make([]error, len(names))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(names)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(names); i = int(next.Add(1) - 1) {
				bundles[i], failed[i] = s.loadBundle(names[i])
			}
		})
	}
	wg.Wait()
	for i, repo := range names {
		if failed[i] != nil {
			errs = append(errs, failed[i])
			continue
		}
		repos[repo] = bundles[i]
	}
	s.mu.Lock()
	s.repos = repos
	s.mu.Unlock()
	return s.Index(), errors.Join(errs...)
}

// loadBundle reads and verifies repo's cached signatures. One that fails
// is read again under the repository's lock (another process may have
// been replacing it) and, failing again, moved aside.
func (s *SigstoreSource) loadBundle(repo string) (*SigstoreBundle, error) {
	b, err := s.readBundle(repo)
	if err == nil {
		return b, nil
	}
	l, lerr := lockRepo(s.Dir, repo)
	if lerr != nil {
		return nil, fmt.Errorf("cached signatures of %s failed verification: %w", repo, err)
	}
	defer l.Unlock()
	if b, err = s.readBundle(repo); err == nil {
		return b, nil
	}
	return nil, fmt.Errorf("cached signatures of %s failed verification (%s): %w", repo, moveAside(s.bundlePath(repo)), err)
}

// reverify verifies a cached (or exported) signature of repo again with
// the source's verifier as it is now, and sets its signer and the keys and
// identities it satisfies. It returns false, and no error, for a signature
// made by a signer no rule names any more; an error for one that does not
// verify (altered), and cosign.ErrNoRoot for a keyless one the source has
// no trusted root for.
func (s *SigstoreSource) reverify(repo string, sig *SigstoreSignature) (bool, error) {
	res, err := s.Verifier.Verify(&sig.Artifact, repo, sig.Digest)
	switch {
	case errors.Is(err, cosign.ErrNoSigner) && !s.Verifier.Names(sig.Signer):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("signature of %s by %s: %w", sig.Digest, sig.Signer, err)
	}
	sig.Signer, sig.Matches = res.Signer, res.Matches
	return true, nil
}

func (s *SigstoreSource) readBundle(repo string) (*SigstoreBundle, error) {
	data, err := readFileLimit(s.bundlePath(repo), maxSigsPerRepo*(2*maxSigPayload))
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b SigstoreBundle
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if b.Repository != repo {
		return nil, fmt.Errorf("bundle names repository %q", b.Repository)
	}
	kept := b.Signatures[:0]
	for _, sig := range b.Signatures {
		ok, err := s.reverify(repo, &sig)
		switch {
		case errors.Is(err, cosign.ErrNoRoot):
			continue // keyless, and no trusted root now (Load reports why)
		case err != nil:
			return nil, err
		case ok:
			kept = append(kept, sig)
		}
	}
	b.Signatures = kept
	return &b, nil
}

// Index returns the source's current index: per repository, each signed
// digest under verify.SigstoreTag, with the actual signers that signed it
// (a key's ID, a keyless certificate's identity) as roles, and in
// SignerMatches the keys and identities of the policy each signer
// satisfies.
func (s *SigstoreSource) Index() *verify.SourceIndex {
	s.mu.Lock()
	defer s.mu.Unlock()
	repos := map[string]*verify.Repo{}
	matches := map[string][]string{}
	for name, b := range s.repos {
		if len(b.Signatures) == 0 {
			continue
		}
		r := &verify.Repo{Source: s.SourceName, Name: name, Tags: map[string]verify.RoleTargets{}}
		for _, sig := range b.Signatures {
			tag := verify.SigstoreTag(sig.Digest)
			if r.Tags[tag] == nil {
				r.Tags[tag] = verify.RoleTargets{}
			}
			r.Tags[tag][sig.Signer] = verify.Target{Digest: sig.Digest}
			for _, m := range sig.Matches {
				if !slices.Contains(matches[sig.Signer], m) {
					matches[sig.Signer] = append(matches[sig.Signer], m)
				}
			}
		}
		repos[name] = r
	}
	si := verify.NewSourceIndex(s.SourceName, policy.KindSigstore, repos)
	for _, m := range matches {
		slices.Sort(m)
	}
	si.SignerMatches = matches
	if len(s.refused) > 0 {
		si.Refused = make(map[string][]string, len(s.refused))
		for k, v := range s.refused {
			si.Refused[k] = slices.Clone(v)
		}
	}
	si.Version, si.Updated = fmt.Sprintf("%d repositories, %d signed digests", si.NumRepos(), si.NumTags()), time.Now()
	return si
}

// Sync fetches the signatures of every wanted repository (and of those
// already cached), verifies them and caches what verified. A repository
// that fails keeps its cached signatures; the error names it.
func (s *SigstoreSource) Sync(ctx context.Context, now time.Time) (*SyncResult, error) {
	s.mu.Lock()
	set := map[string]bool{}
	for r := range s.wanted {
		set[r] = true
	}
	for r := range s.repos {
		set[r] = true
	}
	s.mu.Unlock()
	repos := make([]string, 0, len(set))
	for r := range set {
		repos = append(repos, r)
	}
	sort.Strings(repos)
	res := &SyncResult{Source: s.SourceName}
	var errs []error
	added, unreachable := 0, 0
	if changed, err := s.Root.Sync(ctx, now); err != nil {
		if errors.Is(err, ErrUnreachable) {
			unreachable++
		}
		errs = append(errs, err)
	} else if changed {
		// Verify the cached signatures again under the new root: one
		// under a CA or log it no longer lists no longer counts.
		if _, err := s.Load(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range repos {
		n, err := s.SyncRepo(ctx, r)
		added += n
		if err != nil {
			if errors.Is(err, ErrUnreachable) {
				unreachable++
			}
			errs = append(errs, err)
		}
	}
	res.Index = s.Index()
	res.Changed = added > 0
	res.Summary = fmt.Sprintf("%d repositories, %d new signatures", len(repos), added)
	err := errors.Join(errs...)
	if err != nil {
		res.Error = err.Error()
		res.Unreachable = unreachable > 0 && unreachable == len(errs)
		if len(errs) > 1 {
			err = fmt.Errorf("%d repositories failed (first: %w)", len(errs), errs[0])
		}
		return res, err
	}
	res.OK = true
	return res, nil
}

// SyncPulled fetches repo's signatures now, for a pull; a repository with
// signatures is then kept in sync. It fails only when nothing new could be
// read because the registry could not be reached: a signature that did not
// verify is one more unsigned digest, which the decision then explains
// (the next Sync reports it).
func (s *SigstoreSource) SyncPulled(ctx context.Context, repo string, now time.Time) error {
	return s.SyncPulledDigest(ctx, repo, "", now)
}

// SyncPulledDigest is SyncPulled for a pull of digest d (DigestSource):
// the referrers of d are asked for too, whether or not d is signed
// already (a pull may want another signer).
func (s *SigstoreSource) SyncPulledDigest(ctx context.Context, repo string, d digest.Digest, _ time.Time) error {
	var pulled []digest.Digest
	if d.Validate() == nil {
		pulled = append(pulled, d)
	}
	n, err := s.syncRepo(ctx, repo, pulled)
	if n == 0 && errors.Is(err, ErrUnreachable) {
		return err
	}
	return nil
}

// SyncRepo fetches, verifies and caches the signatures of one repository
// and returns how many new ones verified. Signatures that do not verify
// are skipped (the error names the first); nothing unverified is written.
func (s *SigstoreSource) SyncRepo(ctx context.Context, repo string) (int, error) {
	return s.syncRepo(ctx, repo, nil)
}

// syncRepo is SyncRepo, asking also for the referrers of pulled.
func (s *SigstoreSource) syncRepo(ctx context.Context, repo string, pulled []digest.Digest) (int, error) {
	if !s.Covers(repo) {
		return 0, fmt.Errorf("source %q does not cover %s", s.SourceName, repo)
	}
	defer s.locks.lock(repo)()
	ctx, cancel := context.WithTimeout(ctx, sigstoreTimeout)
	defer cancel()

	found, ferr := s.fetch(ctx, repo, pulled)
	added, err := s.merge(repo, found, true)
	return added, errors.Join(ferr, err)
}

// merge adds verified signatures of repo to the cached ones (installed in
// memory; written when persist) and returns how many were new. Written,
// they are merged with the repository's file as it is on disk (verified
// again), so that what another process (`trustd verify --archive
// --import`) wrote there is kept. The caller holds repo's lock.
func (s *SigstoreSource) merge(repo string, found []SigstoreSignature, persist bool) (int, error) {
	s.mu.Lock()
	old := s.repos[repo]
	s.mu.Unlock()
	merged := &SigstoreBundle{Repository: repo}
	if old != nil {
		merged.Signatures = slices.Clone(old.Signatures)
	}
	add := func(sigs []SigstoreSignature) int {
		n := 0
		for _, sig := range sigs {
			if len(merged.Signatures) >= maxSigsPerRepo {
				break
			}
			if !slices.ContainsFunc(merged.Signatures, func(x SigstoreSignature) bool { return x.Digest == sig.Digest && x.Signer == sig.Signer }) {
				merged.Signatures = append(merged.Signatures, sig)
				n++
			}
		}
		return n
	}
	added := add(found)
	if added == 0 {
		return 0, nil
	}
	if persist {
		// Under the repository's file lock, from reading what is on disk
		// (another process may have added signatures) to the rename.
		l, err := lockRepo(s.Dir, repo)
		if err != nil {
			return 0, err
		}
		defer l.Unlock()
		if disk, err := s.readBundle(repo); err == nil {
			add(disk.Signatures)
		}
		if err := s.writeBundle(merged); err != nil {
			return 0, fmt.Errorf("write signatures of %s: %w", repo, err)
		}
	}
	s.mu.Lock()
	if s.repos == nil {
		s.repos = map[string]*SigstoreBundle{}
	}
	s.repos[repo] = merged
	s.mu.Unlock()
	return added, nil
}

func (s *SigstoreSource) writeBundle(b *SigstoreBundle) error {
	p := s.bundlePath(b.Repository)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return WriteFileAtomic(p, data, 0o600)
}

// fetch lists repo's tags and returns the signatures that verified with
// a configured key: those of the tag scheme (sha256-<hex>.sig), and the
// Sigstore bundles attached to digests through referrers (see
// referrerDigests for which digests are asked). The error reports the
// first problem (unreachable registry, a signature that did not verify).
func (s *SigstoreSource) fetch(ctx context.Context, repo string, pulled []digest.Digest) ([]SigstoreSignature, error) {
	r, err := name.NewRepository(repo, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("signatures of %s: %w", repo, err)
	}
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuth(authn.Anonymous), remote.WithUserAgent("trustd"), remote.WithTransport(limitBodies(remote.DefaultTransport))}, s.Options...)
	tags, err := remote.List(r, opts...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == 404 {
			tags = nil // no repository: no tags (a pulled digest's referrers are still asked)
		} else {
			return nil, fmt.Errorf("signatures of %s: list tags: %w: %w", repo, ErrUnreachable, err)
		}
	}
	var out []SigstoreSignature
	var problems []error
	why := refusals{}
	var asked []digest.Digest
	n := 0
	for _, tag := range tags {
		m := sigTagRE.FindStringSubmatch(tag)
		if m == nil {
			continue
		}
		if n++; n > maxSigTags {
			problems = append(problems, fmt.Errorf("signatures of %s: more than %d signature tags; the rest are not read", repo, maxSigTags))
			break
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, m[1])
		sigs, err := s.fetchSigs(r.Tag(tag), repo, d, opts, why)
		out = append(out, sigs...)
		if !errors.Is(err, ErrUnreachable) {
			asked = append(asked, d)
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("signatures of %s@%s: %w", repo, d, err))
		}
	}
	ask, err := s.referrerDigests(repo, tags, pulled)
	if err != nil {
		problems = append(problems, fmt.Errorf("signatures of %s: %w", repo, err))
	}
	for _, d := range ask {
		sigs, err := s.fetchReferrers(r, repo, d, opts, why)
		out = append(out, sigs...)
		if !errors.Is(err, ErrUnreachable) {
			asked = append(asked, d)
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("signatures of %s@%s (referrers): %w", repo, d, err))
		}
	}
	s.noteRefused(repo, asked, why)
	return out, errors.Join(problems...)
}

// fetchSigs reads one signature manifest of the tag scheme and returns the
// signatures in it that verify, for digest d of repo (why those that did
// not were refused goes to why).
func (s *SigstoreSource) fetchSigs(tag name.Tag, repo string, d digest.Digest, opts []remote.Option, why refusals) ([]SigstoreSignature, error) {
	desc, err := remote.Get(tag, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	arts, problems := CosignArtifacts(desc.Manifest, "", remoteBlobs(tag.Context(), opts))
	sigs, more := s.verifyArtifacts(repo, d, arts, why)
	return sigs, errors.Join(append(problems, more...)...)
}

// verifyArtifacts returns the signatures among arts that verify as
// signatures of digest d of repo. An artifact made by no signer the
// policy names is skipped silently; any other failure (a signature for
// another image, one that does not verify) is reported. Why each was
// refused goes to why (when not nil), except a bare cosign.ErrNoSigner
// (a key no rule names: the denial says which keys it wants).
func (s *SigstoreSource) verifyArtifacts(repo string, d digest.Digest, arts []cosign.Artifact, why refusals) ([]SigstoreSignature, []error) {
	var out []SigstoreSignature
	var problems []error
	for _, a := range arts {
		res, err := s.Verifier.Verify(&a, repo, d)
		if err != nil && err != cosign.ErrNoSigner { //nolint:errorlint // the bare error says nothing more
			why.add(d, err)
		}
		switch {
		case err == nil:
			out = append(out, SigstoreSignature{Digest: d, Signer: res.Signer, Matches: res.Matches, Artifact: a})
		case !errors.Is(err, cosign.ErrNoSigner):
			// Made by a signer the policy names but not for this image
			// (a replayed or misplaced signature), or not verifiable:
			// refused, and said.
			problems = append(problems, fmt.Errorf("%s: %w", artifactName(&a), err))
		}
	}
	return out, problems
}

// refusals collects, per digest, why signatures found for it were refused.
type refusals map[digest.Digest][]string

func (r refusals) add(d digest.Digest, err error) {
	if r == nil || len(r[d]) >= maxRefusedReasons {
		return
	}
	msg := err.Error()
	if len(msg) > maxRefusedReason {
		msg = strings.ToValidUTF8(msg[:maxRefusedReason], "") + "…"
	}
	if !slices.Contains(r[d], msg) {
		r[d] = append(r[d], msg)
	}
}

// noteRefused records, for the digests of repo whose signatures were just
// read (asked), why those that were refused were (why): the reasons of
// the last fetch replace those of the one before, and a digest with none
// is forgotten. The index carries them to explain a denial.
func (s *SigstoreSource) noteRefused(repo string, asked []digest.Digest, why refusals) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range asked {
		k := repo + "@" + d.String()
		switch {
		case len(why[d]) == 0:
			delete(s.refused, k)
		case s.refused[k] != nil || len(s.refused) < maxRefusedDigests:
			if s.refused == nil {
				s.refused = map[string][]string{}
			}
			s.refused[k] = why[d]
		}
	}
}

var (
	_ RepositorySource = (*SigstoreSource)(nil)
	_ DigestSource     = (*SigstoreSource)(nil)
)
