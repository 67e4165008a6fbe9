package gen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/trustd/trustd/verify/notary"
)

// DatasetOptions size a benchmark data set.
type DatasetOptions struct {
	// Repos repositories of TagsPerRepo tags in one TUF repository with
	// succinct hash bins (source "corp").
	Repos, TagsPerRepo int
	// NotaryTags tags (NotaryReleases of them also in targets/releases) in
	// one Notary repository, BigGUN (source "hub").
	NotaryTags, NotaryReleases int
	// NotaryRepos Notary repositories of NotaryRepoTags tags each, in a
	// cache of their own (ManyCacheDir).
	NotaryRepos, NotaryRepoTags int
	// SigstoreRepos repositories (SigstoreRepo) and SigstoreCriticalRepos
	// more (SigstoreCriticalRepo, a threshold-2 rule) of SigstoreDigests
	// cosign-signed digests each (source "cosign", in CacheDir).
	SigstoreRepos, SigstoreCriticalRepos, SigstoreDigests int
}

// DefaultDatasetOptions is issue 7's data set: 100k tags over 10k
// repositories (TUF), a Notary repository of 100k tags (a targets.json of
// about 9 MB), 1000 small Notary repositories, and 10,000 cosign-signed
// digests over 1000 repositories (10,900 signatures: the 100 repositories
// of the threshold-2 rule have two on 9 digests of 10).
func DefaultDatasetOptions() DatasetOptions {
	return DatasetOptions{Repos: 10000, TagsPerRepo: 10, NotaryTags: 100000, NotaryReleases: 1000, NotaryRepos: 1000, NotaryRepoTags: 10,
		SigstoreRepos: 900, SigstoreCriticalRepos: 100, SigstoreDigests: 10}
}

// datasetFormat changes whenever what a data set holds changes.
const datasetFormat = 3

// maxDatasetAge bounds the reuse of a data set: its Notary timestamps
// expire after 14 days.
const maxDatasetAge = 7 * 24 * time.Hour

// BigGUN is the Notary repository with very many tags.
const BigGUN = NotaryPrefix + "big"

// ManyGUN is the i-th of the small Notary repositories.
func ManyGUN(i int) string { return fmt.Sprintf("%sservice%04d", NotaryPrefix, i) }

// UnreachableURL is where generated policies send their sources: a port
// nothing listens on, so a daemon's background sync fails at once and
// keeps the cached data.
const UnreachableURL = "http://127.0.0.1:9"

// Dataset is a generated data set on disk: the signed repositories, and
// trustd caches filled from them by the cache package's own sync code.
type Dataset struct {
	Dir     string         `json:"-"`
	Format  int            `json:"format"`
	Options DatasetOptions `json:"options"`
	Created time.Time      `json:"created"`
	TUF     *TUFRepo       `json:"tuf"`
	// NotaryTargetsBytes is the size of BigGUN's targets.json.
	NotaryTargetsBytes int `json:"notary_targets_bytes"`
	// SigstoreSignatures is how many cosign signatures source "cosign"
	// holds.
	SigstoreSignatures int `json:"sigstore_signatures"`
	// Took is how long generating the data set took.
	Took time.Duration `json:"took"`
}

// CacheDir holds sources "corp" (the TUF repository), "hub" (BigGUN) and
// "cosign" (the cosign signatures).
func (d *Dataset) CacheDir() string { return filepath.Join(d.Dir, "cache") }

// ManyCacheDir holds source "hub" with the NotaryRepos small repositories.
func (d *Dataset) ManyCacheDir() string { return filepath.Join(d.Dir, "cache-many") }

// CAPath is the CA that the generated Notary root certificates chain to.
func (d *Dataset) CAPath() string { return filepath.Join(d.Dir, "ca.pem") }

func (d *Dataset) notaryDir(gun string) string {
	return filepath.Join(d.Dir, "notary", url.PathEscape(gun))
}

// OpenDataset returns the data set in dir, generating it (into an empty or
// stale dir) when dir holds none of these options, or one older than a
// week.
func OpenDataset(dir string, o DatasetOptions) (*Dataset, error) {
	if b, err := os.ReadFile(filepath.Join(dir, "dataset.json")); err == nil {
		var d Dataset
		if json.Unmarshal(b, &d) == nil && d.Format == datasetFormat && d.Options == o && time.Since(d.Created) < maxDatasetAge {
			d.Dir = dir
			return &d, nil
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	return generate(dir, o)
}

func generate(dir string, o DatasetOptions) (*Dataset, error) {
	start := time.Now()
	now := start
	d := &Dataset{Dir: dir, Format: datasetFormat, Options: o, Created: now}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ctx := context.Background()
	var err error
	if d.TUF, err = WriteTUFRepo(filepath.Join(dir, "tuf"), TUFOptions{Repos: o.Repos, TagsPerRepo: o.TagsPerRepo, Now: now}); err != nil {
		return nil, fmt.Errorf("TUF repository: %w", err)
	}
	if _, err := CacheTUF(ctx, d.CacheDir(), "corp", d.TUF, now); err != nil {
		return nil, fmt.Errorf("TUF cache: %w", err)
	}
	keys, err := NewNotaryKeys(true, now)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(d.CAPath(), keys.CAPEM(), 0o644); err != nil {
		return nil, err
	}
	big, err := NewNotaryRepo(keys, NotaryOptions{GUN: BigGUN, Tags: o.NotaryTags, Releases: o.NotaryReleases, Now: now})
	if err != nil {
		return nil, fmt.Errorf("notary %s: %w", BigGUN, err)
	}
	d.NotaryTargetsBytes = len(big.Files.Targets)
	many := make([]*NotaryRepo, o.NotaryRepos)
	for i := range many {
		if many[i], err = NewNotaryRepo(keys, NotaryOptions{GUN: ManyGUN(i), Tags: o.NotaryRepoTags, Releases: min(2, o.NotaryRepoTags), Now: now}); err != nil {
			return nil, fmt.Errorf("notary %s: %w", ManyGUN(i), err)
		}
	}
	for _, r := range append([]*NotaryRepo{big}, many...) {
		if err := d.writeNotary(r); err != nil {
			return nil, err
		}
	}
	if err := CacheNotary(ctx, d.CacheDir(), "hub", keys.CAPEM(), []*NotaryRepo{big}, now); err != nil {
		return nil, fmt.Errorf("notary cache: %w", err)
	}
	if err := CacheNotary(ctx, d.ManyCacheDir(), "hub", keys.CAPEM(), many, now); err != nil {
		return nil, fmt.Errorf("notary cache: %w", err)
	}
	if d.SigstoreSignatures, err = CacheSigstore(d.CacheDir(), "cosign", [2]string{d.SigstoreKeyPath(0), d.SigstoreKeyPath(1)}, o); err != nil {
		return nil, fmt.Errorf("sigstore cache: %w", err)
	}
	d.Took = time.Since(start)
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return d, os.WriteFile(filepath.Join(dir, "dataset.json"), b, 0o644)
}

var notaryRoles = []string{"root", "timestamp", "snapshot", "targets", roleReleases}

func (d *Dataset) writeNotary(r *NotaryRepo) error {
	dir := d.notaryDir(r.GUN)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, role := range notaryRoles {
		if b := r.File(role); b != nil {
			if err := os.WriteFile(filepath.Join(dir, url.PathEscape(role)+".json"), b, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// NotaryRepo reads a generated Notary repository back (its files only:
// Tags is nil).
func (d *Dataset) NotaryRepo(gun string) (*NotaryRepo, error) {
	dir := d.notaryDir(gun)
	r := &NotaryRepo{GUN: gun, Files: notary.Files{Delegations: map[string][]byte{}}}
	for _, role := range notaryRoles {
		b, err := os.ReadFile(filepath.Join(dir, url.PathEscape(role)+".json"))
		if errors.Is(err, os.ErrNotExist) && role == roleReleases {
			continue
		}
		if err != nil {
			return nil, err
		}
		switch role {
		case "root":
			r.Files.Root = b
		case "timestamp":
			r.Files.Timestamp = b
		case "snapshot":
			r.Files.Snapshot = b
		case "targets":
			r.Files.Targets = b
		default:
			r.Files.Delegations[role] = b
		}
	}
	return r, nil
}

// ManyRepos reads the small Notary repositories back.
func (d *Dataset) ManyRepos() ([]*NotaryRepo, error) {
	out := make([]*NotaryRepo, d.Options.NotaryRepos)
	for i := range out {
		r, err := d.NotaryRepo(ManyGUN(i))
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// Sources say which sources a policy of the data set has.
type Sources int

// The source sets of PolicyOptions.
const (
	SourcesAll       Sources = iota // corp (TUF), hub (Notary) and cosign (sigstore)
	SourcesTUF                      // corp only
	SourcesNotary                   // hub only
	SourcesSigstore                 // cosign only
	SourcesTUFNotary                // corp and hub
)

func (s Sources) tuf() bool      { return s == SourcesAll || s == SourcesTUF || s == SourcesTUFNotary }
func (s Sources) notary() bool   { return s == SourcesAll || s == SourcesNotary || s == SourcesTUFNotary }
func (s Sources) sigstore() bool { return s == SourcesAll || s == SourcesSigstore }

// PolicyOptions returns the options of a policy over cacheDir (one of the
// data set's caches, or a copy) with the given sources and control
// socket; the sources' URLs are UnreachableURL.
func (d *Dataset) PolicyOptions(cacheDir, controlSocket string, s Sources) PolicyOptions {
	o := PolicyOptions{CacheDir: cacheDir, ControlSocket: controlSocket}
	if s.tuf() {
		o.TUF = &PolicyTUF{URL: UnreachableURL + "/metadata/", Root: d.TUF.RootPath}
	}
	if s.notary() {
		o.Notary = &PolicyNotary{URL: UnreachableURL, CA: d.CAPath()}
	}
	if s.sigstore() {
		o.Sigstore = &PolicySigstore{Keys: [2]string{d.SigstoreKeyPath(0), d.SigstoreKeyPath(1)}}
	}
	return o
}

// WritePolicy writes the policy for o to path.
func WritePolicy(path string, o PolicyOptions) error {
	return os.WriteFile(path, Policy(o), 0o600)
}
