package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
	"github.com/trustd/trustd/verify/notary"
)

// maxExportBytes bounds an export bundle read by import.
const maxExportBytes = 2 << 30

// Export is a bundle of verified trust data carried to an air-gapped node:
// per source the metadata exactly as signed, and the signed manifests the
// node needs to match side-loaded images. Nothing in it is trusted as is:
// import re-verifies everything against the node's own pinned roots and
// rollback state.
type Export struct {
	Format    int                      `json:"format"`
	Created   time.Time                `json:"created"`
	Sources   map[string]SourceExport  `json:"sources"`
	Manifests map[digest.Digest][]byte `json:"manifests,omitempty"`
}

// SourceExport is one source's part of an Export.
type SourceExport struct {
	Kind   string          `json:"kind"`
	TUF    *TUFBundle      `json:"tuf,omitempty"`
	Notary []*NotaryBundle `json:"notary,omitempty"`
	// Sigstore are a sigstore source's cached signatures, per repository
	// (each verified again on import, with the node's keys).
	Sigstore []*SigstoreBundle `json:"sigstore,omitempty"`
}

// ExportTo writes a bundle of the cached trust data of every source — or,
// for Notary sources, only of the repositories matching one of patterns
// when patterns are given (a TUF repository is exported whole: its
// metadata signs all its targets together). It re-verifies what it
// exports, offline, and says per source how much it wrote.
func (s *Store) ExportTo(w io.Writer, patterns []policy.Pattern, now time.Time) ([]string, error) {
	ex := &Export{Format: 1, Created: now.UTC(), Sources: map[string]SourceExport{}, Manifests: map[digest.Digest][]byte{}}
	var lines []string
	match := func(repo string) bool {
		if len(patterns) == 0 {
			return true
		}
		for _, p := range patterns {
			if p.Match(repo) {
				return true
			}
		}
		return false
	}
	addManifests := func(names []string, ix *verify.SourceIndex) {
		for _, n := range names {
			r, ok := ix.Lookup(n)
			if !ok {
				continue
			}
			for tg := range r.Targets() {
				s.addManifest(ex, tg.Digest)
			}
		}
	}
	for _, src := range s.sources {
		switch t := src.(type) {
		case *tufSource:
			ix, err := t.TUFSource.Load()
			if err != nil {
				if errors.Is(err, ErrNoData) {
					continue
				}
				return nil, fmt.Errorf("source %q: %w", t.TUFSource.Name, err)
			}
			b, err := t.readBundle()
			if err != nil {
				return nil, fmt.Errorf("source %q: %w", t.TUFSource.Name, err)
			}
			ex.Sources[t.TUFSource.Name] = SourceExport{Kind: policy.KindTUF, TUF: b}
			var repos []string
			for _, name := range ix.RepoNames() {
				if match(name) {
					repos = append(repos, name)
				}
			}
			addManifests(repos, ix)
			lines = append(lines, fmt.Sprintf("%s: tuf, %d repositories (%s)", t.TUFSource.Name, ix.NumRepos(), ix.Version))
		case *NotarySource:
			if _, err := t.Load(); err != nil {
				return nil, fmt.Errorf("source %q: %w", t.SourceName, err)
			}
			se := SourceExport{Kind: policy.KindNotary}
			var repos []string
			for _, gun := range t.cachedGUNs() {
				if !match(gun) {
					continue
				}
				b, err := t.readBundle(gun)
				if err != nil || b.Unsigned {
					continue
				}
				se.Notary = append(se.Notary, b)
				repos = append(repos, gun)
			}
			ex.Sources[t.SourceName] = se
			addManifests(repos, t.index())
			lines = append(lines, fmt.Sprintf("%s: notary, %d repositories", t.SourceName, len(se.Notary)))
		case *SigstoreSource:
			ix, err := t.Load()
			if err != nil {
				return nil, fmt.Errorf("source %q: %w", t.SourceName, err)
			}
			se := SourceExport{Kind: policy.KindSigstore}
			var repos []string
			nsigs := 0
			for _, repo := range ix.RepoNames() {
				if b := t.cached(repo); b != nil && match(repo) {
					se.Sigstore = append(se.Sigstore, b)
					repos = append(repos, repo)
					nsigs += len(b.Signatures)
				}
			}
			ex.Sources[t.SourceName] = se
			addManifests(repos, ix)
			lines = append(lines, fmt.Sprintf("%s: sigstore, %d repositories, %d signatures", t.SourceName, len(se.Sigstore), nsigs))
		}
	}
	lines = append(lines, fmt.Sprintf("%d signed manifests", len(ex.Manifests)))
	enc := json.NewEncoder(w)
	return lines, enc.Encode(ex)
}

func (s *Store) addManifest(ex *Export, d digest.Digest) {
	if _, ok := ex.Manifests[d]; ok {
		return
	}
	b, err := s.Manifests.ReadBlob(context.Background(), d)
	if err != nil {
		return
	}
	ex.Manifests[d] = b
	if kids, err := manifestChildren(b); err == nil {
		for _, k := range kids {
			s.addManifest(ex, k)
		}
	}
}

func manifestChildren(b []byte) ([]digest.Digest, error) {
	var idx struct {
		Manifests []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, err
	}
	var out []digest.Digest
	for _, m := range idx.Manifests {
		if m.Digest.Validate() == nil {
			out = append(out, m.Digest)
		}
	}
	return out, nil
}

// ImportFrom re-verifies a bundle against this node's policy (its pinned
// roots and pins) and its cached state, and installs what is newer. A
// bundle older than what the node has is refused for that source or
// repository; the node's data is then kept. It returns a line per source.
func (s *Store) ImportFrom(r io.Reader, now time.Time) ([]string, error) {
	var ex Export
	dec := json.NewDecoder(io.LimitReader(r, maxExportBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ex); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if ex.Format != 1 {
		return nil, fmt.Errorf("bundle: unknown format %d", ex.Format)
	}
	lock, err := LockDir(s.Dir)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	var lines []string
	var errs []error
	names := make([]string, 0, len(ex.Sources))
	for n := range ex.Sources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		se := ex.Sources[name]
		var src Source
		for _, x := range s.sources {
			if x.Name() == name {
				src = x
			}
		}
		if src == nil {
			lines = append(lines, fmt.Sprintf("%s: skipped: no such source in this node's policy", name))
			continue
		}
		if src.Kind() != se.Kind {
			errs = append(errs, fmt.Errorf("%s: bundle has kind %q, the policy says %q", name, se.Kind, src.Kind()))
			continue
		}
		switch t := src.(type) {
		case *tufSource:
			msg, err := t.importBundle(se.TUF, now)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
			lines = append(lines, name+": "+msg)
		case *NotarySource:
			n, old := 0, 0
			for _, b := range se.Notary {
				changed, err := t.importBundle(b, now)
				switch {
				case errors.Is(err, notary.ErrRollback):
					old++
					errs = append(errs, fmt.Errorf("%s: %s: refusing data older than the node's: %w", name, b.GUN, err))
				case err != nil:
					errs = append(errs, fmt.Errorf("%s: %s: %w", name, b.GUN, err))
				case changed:
					n++
				}
			}
			lines = append(lines, fmt.Sprintf("%s: %d of %d repositories updated", name, n, len(se.Notary)))
		case *SigstoreSource:
			n, total := 0, 0
			for _, b := range se.Sigstore {
				added, err := t.importBundle(b)
				n += added
				if b != nil {
					total += len(b.Signatures)
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
				}
			}
			lines = append(lines, fmt.Sprintf("%s: %d of %d signatures new (%d repositories)", name, n, total, len(se.Sigstore)))
		}
	}
	stored := 0
	for d, b := range ex.Manifests {
		if err := s.Manifests.Put(d, b); err != nil {
			errs = append(errs, fmt.Errorf("manifest %s: %w", d, err))
			continue
		}
		stored++
	}
	lines = append(lines, fmt.Sprintf("%d signed manifests stored", stored))
	return lines, errors.Join(errs...)
}

// importBundle verifies b from the pinned root at now and installs it if it
// is not older than the cached bundle.
func (t *tufSource) importBundle(b *TUFBundle, now time.Time) (string, error) {
	if b == nil {
		return "", errors.New("bundle has no TUF metadata for this source")
	}
	tm, del, err := t.verifyBundle(b, now)
	if err != nil {
		return "", fmt.Errorf("bundle does not verify against this node's pinned root: %w", err)
	}
	cur, err := t.readBundle()
	if err == nil {
		ctm, cdel, cerr := t.verifyBundle(cur, time.Time{})
		if cerr == nil {
			if tm.Timestamp.Signed.Version < ctm.Timestamp.Signed.Version || tm.Snapshot.Signed.Version < ctm.Snapshot.Signed.Version {
				return "", fmt.Errorf("refusing a bundle older than the node's data (timestamp v%d < v%d)", tm.Timestamp.Signed.Version, ctm.Timestamp.Signed.Version)
			}
			if sameBundle(cur, b) {
				return "unchanged (" + versionOf(ctm, cdel) + ")", nil
			}
		}
	}
	nb := *b
	nb.Source, nb.Verified = t.TUFSource.Name, now.UTC()
	if _, err := t.writeBundle(&nb); err != nil {
		return "", err
	}
	return "imported (" + versionOf(tm, del) + ")", nil
}

// importBundle verifies one GUN's bundle against the node's pins and
// cached state (rollback) at now and installs it.
func (s *NotarySource) importBundle(b *NotaryBundle, now time.Time) (bool, error) {
	if b == nil || b.Format != 1 || b.GUN == "" {
		return false, errors.New("malformed repository bundle")
	}
	if !s.Covers(b.GUN) {
		return false, fmt.Errorf("not covered by the source's repositories")
	}
	if b.Unsigned {
		return false, nil
	}
	defer s.lockGUN(b.GUN)()
	var prev *notary.Trusted
	if cur, err := s.readBundle(b.GUN); err == nil && !cur.Unsigned {
		st := cur.State
		prev = &st
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	res, err := notary.Verify(notary.Files{Root: b.Root, Timestamp: b.Timestamp, Snapshot: b.Snapshot, Targets: b.Targets, Delegations: b.Delegations}, prev, s.opts(b.GUN, now))
	if err != nil {
		return false, err
	}
	nb := &NotaryBundle{Format: 1, GUN: b.GUN, Verified: now.UTC(), Root: b.Root, Timestamp: b.Timestamp, Snapshot: b.Snapshot, Targets: b.Targets, Delegations: b.Delegations, State: res.State}
	if err := os.MkdirAll(filepath.Dir(s.bundlePath(b.GUN)), 0o700); err != nil {
		return false, err
	}
	data, err := s.writeBundle(nb)
	if err != nil {
		return false, err
	}
	s.install(b.GUN, res)
	s.saveDerived(b.GUN, s.derivedKey(b.GUN, data))
	return true, nil
}
