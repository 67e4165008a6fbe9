package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/trustd/trustd/cache/cosign"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
	"github.com/trustd/trustd/verify/notary"
)

// Source is one policy source backed by the cache: it can load its
// verified data from disk (offline) and refresh it from the network.
type Source interface {
	Name() string
	Kind() string
	// Load verifies the cached data offline and returns its index.
	Load() (*verify.SourceIndex, error)
	// Sync refreshes from the network, verifies, and writes the cache
	// when something changed. On error the cache is untouched.
	Sync(ctx context.Context, now time.Time) (*SyncResult, error)
}

// A Source may also implement the optional interfaces below; the Store
// asks for them by interface, never by concrete type, so that a new kind of
// source is a new file implementing Source (and whichever of these apply).

// RepositorySource is a source that fetches trust data per repository
// (Notary): at a pull it can fetch one repository at once, and it keeps in
// sync the repositories it is told are wanted.
type RepositorySource interface {
	Source
	// Covers reports whether the source has trust data for repo.
	Covers(repo string) bool
	// SyncPulled fetches repo's trust data now for a pull; a repository
	// left without any is kept in sync in memory for a while only.
	SyncPulled(ctx context.Context, repo string, now time.Time) error
	// Want asks the source to keep these repositories in sync.
	Want(repos ...string)
	// PullDiscovered counts the repositories seen at pulls, without trust
	// data, kept in sync at now.
	PullDiscovered(now time.Time) int
	// Index returns the source's current index.
	Index() *verify.SourceIndex
}

// DigestSource is a RepositorySource whose trust data hangs off image
// digests (cosign's referrers): at a pull it is told the digest pulled,
// and it is told the digests of the images the node has.
type DigestSource interface {
	RepositorySource
	// SyncPulledDigest is SyncPulled for a pull of digest d.
	SyncPulledDigest(ctx context.Context, repo string, d digest.Digest, now time.Time) error
	// WantDigest asks the source to keep repo in sync, and to look for
	// the trust data of these digests of it.
	WantDigest(repo string, ds ...digest.Digest)
}

// KeysSource is a source that can show a repository's keys (Notary's
// `trustd inspect`).
type KeysSource interface {
	Source
	Keys(repo string) *notary.Keys
}

// Status is what the cache records about the last syncs of one source; it
// is shown by `trustd status`.
type Status struct {
	Source      string    `json:"source"`
	Kind        string    `json:"kind"`
	URL         string    `json:"url"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastChange  time.Time `json:"last_change,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Summary     string    `json:"summary,omitempty"`
	// LastManifestFetch is when signed manifests were last fetched from
	// the registries.
	LastManifestFetch time.Time `json:"last_manifest_fetch,omitzero"`
	// Unreachable is set while syncs fail to reach the source, since
	// UnreachableSince.
	Unreachable      bool      `json:"unreachable,omitempty"`
	UnreachableSince time.Time `json:"unreachable_since,omitzero"`
}

// Store is the trust cache of one policy: one Source per [[source]].
// Its methods may be called from several goroutines; writes to the disk
// are serialised by a lock file, so a daemon and a `trustd sync` can share
// a cache directory.
type Store struct {
	Dir string
	// Manifests holds the signed manifests fetched from registries.
	Manifests *ManifestCache
	// Registry fetches signed manifests; nil disables fetching.
	Registry *Registry
	// Clock is the time decisions and syncs use: the wall clock with a
	// persisted floor against a clock set back.
	Clock   *Clock
	sources []Source
	urls    map[string]string
}

// Open prepares the cache for the policy's sources. It reads each TUF
// source's pinned root file; it does no network I/O.
func Open(p *policy.Policy, f Fetcher) (*Store, error) {
	if f == nil {
		f = &HTTPFetcher{UserAgent: "trustd"}
	}
	s := &Store{
		Dir:       p.Daemon.CacheDir,
		Manifests: &ManifestCache{Dir: filepath.Join(p.Daemon.CacheDir, "manifests")},
		Registry:  &Registry{},
		Clock:     OpenClock(p.Daemon.CacheDir),
		urls:      map[string]string{},
	}
	for _, src := range p.Sources {
		dir := filepath.Join(s.Dir, "sources", src.Name)
		base := src.URL
		if !strings.HasSuffix(base, "/") {
			base += "/"
		}
		s.urls[src.Name] = src.URL
		switch src.Kind {
		case "tuf":
			root, err := readFileLimit(src.Root, maxRootSize)
			if err != nil {
				return nil, fmt.Errorf("source %q: pinned root: %w", src.Name, err)
			}
			s.sources = append(s.sources, &tufSource{TUFSource{Name: src.Name, URL: base, Root: root, Dir: dir, Fetcher: f}})
		case policy.KindNotary:
			ns := &NotarySource{SourceName: src.Name, URL: strings.TrimSuffix(src.URL, "/"), Dir: dir, Fetcher: f, Repositories: src.Repositories, TOFU: src.TrustOnFirstUse}
			for _, pin := range src.Pins {
				np := NotaryPin{Repositories: pin.Repositories, RootKeys: pin.RootKeys}
				if pin.CA != "" {
					ca, err := readFileLimit(pin.CA, 1<<20)
					if err != nil {
						return nil, fmt.Errorf("source %q: pin CA: %w", src.Name, err)
					}
					np.CA = ca
				}
				ns.Pins = append(ns.Pins, np)
			}
			s.sources = append(s.sources, ns)
		case policy.KindSigstore:
			ss := &SigstoreSource{SourceName: src.Name, Dir: dir, Repositories: src.Repositories, Verifier: sigstoreVerifier(p, src.Name)}
			switch {
			case src.TrustedRootData != nil:
				tr, err := cosign.ParseTrustedRoot(src.TrustedRootData)
				if err != nil {
					return nil, fmt.Errorf("source %q: trusted_root %s: %w", src.Name, src.TrustedRoot, err)
				}
				ss.Root = &SigstoreRoot{Pinned: src.TrustedRootData, Root: cosign.NewRoot(tr)}
			case src.URL != "":
				root, err := readFileLimit(src.Root, maxRootSize)
				if err != nil {
					return nil, fmt.Errorf("source %q: pinned root: %w", src.Name, err)
				}
				ss.Root = &SigstoreRoot{Root: &cosign.Root{}, TUF: &TUFSource{Name: src.Name, URL: base, Root: root, Dir: filepath.Join(dir, "trustroot"), Fetcher: f}}
			}
			if ss.Root != nil {
				ss.Verifier.Root = ss.Root.Root
			}
			s.sources = append(s.sources, ss)
		default:
			s.sources = append(s.sources, &unsupported{name: src.Name, kind: src.Kind})
		}
	}
	return s, nil
}

// sigstoreVerifier returns the verifier of source name: the distinct keys
// (read by policy.Load) and keyless identities that the rules against it
// list.
func sigstoreVerifier(p *policy.Policy, name string) *cosign.Verifier {
	v := &cosign.Verifier{}
	var reqs []*policy.Rule
	for _, r := range p.Rules {
		reqs = append(reqs, r.Requirements()...)
	}
	for _, r := range reqs {
		if r.Source != name {
			continue
		}
		for _, k := range r.Keys {
			if k.Public != nil && !slices.ContainsFunc(v.Keys, func(x cosign.Key) bool { return x.ID == k.ID }) {
				v.Keys = append(v.Keys, cosign.Key{ID: k.ID, Public: k.Public})
			}
		}
		for _, id := range r.Identities {
			if !slices.ContainsFunc(v.Identities, func(x cosign.Identity) bool { return x.ID == id.ID }) {
				v.Identities = append(v.Identities, cosign.Identity{ID: id.ID, Issuer: id.Issuer, IssuerRegexp: id.IssuerRegexp, Subject: id.Subject, SubjectRegexp: id.SubjectRegexp})
			}
		}
	}
	return v
}

// Sources returns the store's sources in policy order.
func (s *Store) Sources() []Source { return s.sources }

type tufSource struct{ TUFSource }

func (t *tufSource) Name() string                       { return t.TUFSource.Name }
func (t *tufSource) Kind() string                       { return "tuf" }
func (t *tufSource) Load() (*verify.SourceIndex, error) { return t.TUFSource.Load() }

type unsupported struct{ name, kind string }

func (u *unsupported) Name() string { return u.name }
func (u *unsupported) Kind() string { return u.kind }
func (u *unsupported) Load() (*verify.SourceIndex, error) {
	return nil, fmt.Errorf("source %q: kind %q is not supported by this build", u.name, u.kind)
}
func (u *unsupported) Sync(context.Context, time.Time) (*SyncResult, error) {
	_, err := u.Load()
	return nil, err
}

// LoadIndex verifies every source's cached data offline and returns the
// index. A source whose data is missing or fails verification is present
// with Err set (decisions that need it deny, naming the error); the
// returned errors list those sources.
func (s *Store) LoadIndex() (*verify.Index, []error) {
	var errs []error
	var idx []*verify.SourceIndex
	for _, src := range s.sources {
		si, err := src.Load()
		if si != nil {
			if st := s.readStatus(src); st.Unreachable {
				si = si.WithReachability(true, st.UnreachableSince)
			}
		}
		if err != nil {
			errs = append(errs, err)
			if si == nil { // nothing usable; a partial load keeps what verified
				si = &verify.SourceIndex{Name: src.Name(), Kind: src.Kind(), Err: err}
			}
		}
		idx = append(idx, si)
	}
	return verify.NewIndex(idx...), errs
}

// SyncSource refreshes one source under the cache lock and records its
// status. On error the previous cached data stays in force; the returned
// status says whether the source was unreachable.
func (s *Store) SyncSource(ctx context.Context, src Source, now time.Time) (*SyncResult, *Status, error) {
	lock, err := LockDir(s.Dir)
	if err != nil {
		return nil, nil, err
	}
	defer lock.Unlock()
	st := s.readStatus(src)
	st.LastAttempt = now.UTC()
	res, err := src.Sync(ctx, now)
	// Fetch signed manifests when the trust data changed, or at most hourly
	// (to retry those a registry did not serve): never on every round.
	due := st.LastManifestFetch.IsZero() || now.Sub(st.LastManifestFetch) > time.Hour
	if res != nil && res.Index != nil && s.Registry != nil && (res.Changed || due) {
		st.LastManifestFetch = now.UTC()
		refs := map[string][]TargetRef{}
		for _, p := range res.Index.Parts() {
			for i := 0; i < p.Len(); i++ {
				r := p.RepoAt(i)
				for t := range r.Targets() {
					refs[r.Name()] = append(refs[r.Name()], TargetRef{Digest: t.Digest, Length: t.Length})
				}
			}
		}
		n, problems := FetchSignedManifests(ctx, s.Registry, s.Manifests, refs)
		if n > 0 {
			res.Summary += fmt.Sprintf("; %d signed manifests fetched", n)
		}
		if len(problems) > 0 {
			res.Summary += fmt.Sprintf("; %d signed manifests not fetched (first: %s)", len(problems), problems[0])
		}
	}
	switch {
	case err != nil && errors.Is(err, ErrUnreachable):
		if !st.Unreachable {
			st.Unreachable, st.UnreachableSince = true, now.UTC()
		}
		st.LastError = err.Error()
	case err != nil:
		st.LastError = err.Error()
	default:
		st.LastError = ""
		st.LastSuccess = now.UTC()
		st.Unreachable, st.UnreachableSince = false, time.Time{}
	}
	if res != nil {
		st.Summary = res.Summary
		if res.Changed {
			st.LastChange = now.UTC()
		}
	}
	if werr := s.writeStatus(st); werr != nil && err == nil {
		err = werr
	}
	return res, st, err
}

func (s *Store) statusPath(name string) string {
	return filepath.Join(s.Dir, "sources", name, "status.json")
}

func (s *Store) readStatus(src Source) *Status {
	st := &Status{}
	if b, err := readFileLimit(s.statusPath(src.Name()), 1<<20); err == nil {
		_ = json.Unmarshal(b, st)
	}
	st.Source, st.Kind, st.URL = src.Name(), src.Kind(), s.urls[src.Name()]
	return st
}

func (s *Store) writeStatus(st *Status) error {
	p := s.statusPath(st.Source)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	RemoveStaleTemps(p) // under the cache lock: no other writer of p
	return WriteFileAtomic(p, b, 0o600)
}

// Statuses returns the recorded status of every source, in policy order.
func (s *Store) Statuses() []*Status {
	var out []*Status
	for _, src := range s.sources {
		out = append(out, s.readStatus(src))
	}
	return out
}

// Want asks every source that covers them to keep these repositories in
// sync (sources that list their repositories themselves ignore it).
func (s *Store) Want(repos ...string) {
	for _, src := range s.sources {
		if rs, ok := src.(RepositorySource); ok {
			rs.Want(repos...)
		}
	}
}

// WantImage is Want for an image the node has: repo, and digest d for
// the sources that fetch per digest (DigestSource).
func (s *Store) WantImage(repo string, d digest.Digest) {
	for _, src := range s.sources {
		switch ds := src.(type) {
		case DigestSource:
			ds.WantDigest(repo, d)
		case RepositorySource:
			ds.Want(repo)
		}
	}
}

// SyncRepository fetches, for a pull of digest d ("" when unknown), one
// repository's trust data now from the named source, when that source
// fetches per repository (Notary, Sigstore), and returns the source's new
// index; nil when the source does not work that way. A repository left
// without trust data is kept in sync in memory for a while only
// (NotarySource.SyncPulled).
func (s *Store) SyncRepository(ctx context.Context, source, repo string, d digest.Digest, now time.Time) (*verify.SourceIndex, error) {
	if rs := s.repositorySource(source); rs != nil && rs.Covers(repo) {
		var err error
		if ds, ok := rs.(DigestSource); ok {
			err = ds.SyncPulledDigest(ctx, repo, d, now)
		} else {
			err = rs.SyncPulled(ctx, repo, now)
		}
		if err != nil {
			return nil, err
		}
		return rs.Index(), nil
	}
	return nil, nil
}

// PullDiscovered returns how many repositories seen at pulls, without
// trust data, the named Notary source keeps in sync at now (0 for other
// sources).
func (s *Store) PullDiscovered(source string, now time.Time) int {
	if rs := s.repositorySource(source); rs != nil {
		return rs.PullDiscovered(now)
	}
	return 0
}

func (s *Store) source(name string) Source {
	for _, src := range s.sources {
		if src.Name() == name {
			return src
		}
	}
	return nil
}

func (s *Store) repositorySource(name string) RepositorySource {
	rs, _ := s.source(name).(RepositorySource)
	return rs
}

// NotaryKeys returns the keys of a repository cached by a Notary source.
func (s *Store) NotaryKeys(source, repo string) *notary.Keys {
	if ks, ok := s.source(source).(KeysSource); ok {
		return ks.Keys(repo)
	}
	return nil
}

// IsNoData reports whether err means "nothing cached yet".
func IsNoData(err error) bool { return errors.Is(err, ErrNoData) }
