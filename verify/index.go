package verify

import (
	"sort"
	"time"
)

// SourceIndex is the verified trust data of one policy source: every
// repository it has data for. It is immutable once built.
type SourceIndex struct {
	// Name and Kind are the source's policy name and kind ("tuf", "notary").
	Name string
	Kind string
	// parts hold the trust data (one Trust for a TUF source, one per
	// repository for a Notary source); byRepo finds a repository's part
	// when there is more than one.
	parts  []*Trust
	byRepo map[string]RepoView
	nrepos int
	// Err is set when the source has no usable data (never synced, or its
	// cached data failed verification); decisions that need the source deny
	// with this error as the reason.
	Err error
	// Version is a human-readable summary of what the data rests on
	// (e.g. "timestamp v12, snapshot v9"); informational.
	Version string
	// Updated is when the data was last verified from the source.
	Updated time.Time
	// Unreachable is set while the source cannot be reached (the last sync
	// failed to connect, timed out or got a server error), since
	// UnreachableSince; offline grace applies only then.
	Unreachable      bool
	UnreachableSince time.Time
	// Failed lists the delegated roles of a TUF source that could not be
	// used: a tag no usable role signs, in one's paths, is denied naming it.
	Failed []FailedRole
	// SignerMatches, of a sigstore source, maps each signer that signed a
	// digest in the index (a key ID, or a keyless certificate's identity:
	// the roles of its tags) to the IDs of the policy's keys and
	// identities it satisfies. A rule's threshold counts distinct signers
	// that satisfy one of its keys or identities. Nil: each signer
	// satisfies itself only.
	SignerMatches map[string][]string
	// Refused, of a sigstore source, holds per "repository@digest" why the
	// signatures found for that digest at its last fetch were refused (a
	// certificate that did not verify, an identity no rule names, ...): a
	// denial of that digest says so. Informational; never trust data.
	Refused map[string][]string
}

// NewSourceIndex returns the index of source name (of kind "tuf" or
// "notary") over verified repositories, frozen into one Trust.
func NewSourceIndex(name, kind string, repos map[string]*Repo) *SourceIndex {
	return NewSourceIndexOf(name, kind, NewTrust(repos))
}

// NewSourceIndexOf returns the index of source name over the given parts.
// A repository must appear in one part only; if it appears in several,
// the first part that has it wins.
func NewSourceIndexOf(name, kind string, parts ...*Trust) *SourceIndex {
	s := &SourceIndex{Name: name, Kind: kind}
	for _, p := range parts {
		if p.Len() > 0 {
			s.parts = append(s.parts, p)
		}
	}
	switch len(s.parts) {
	case 0:
	case 1:
		s.nrepos = s.parts[0].Len()
	default:
		s.byRepo = map[string]RepoView{}
		for _, p := range s.parts {
			for i := 0; i < p.Len(); i++ {
				rv := p.RepoAt(i)
				if _, dup := s.byRepo[rv.Name()]; !dup {
					s.byRepo[rv.Name()] = rv
				}
			}
		}
		s.nrepos = len(s.byRepo)
	}
	return s
}

// Lookup returns the trust data of a repository (normalised name).
func (s *SourceIndex) Lookup(repo string) (RepoView, bool) {
	if s == nil {
		return RepoView{}, false
	}
	if s.byRepo != nil {
		rv, ok := s.byRepo[repo]
		return rv, ok
	}
	if len(s.parts) == 1 {
		return s.parts[0].Repo(repo)
	}
	return RepoView{}, false
}

// Repo returns a repository's trust data as a Repo, or nil (allocates;
// for tools and tests, not decisions).
func (s *SourceIndex) Repo(repo string) *Repo {
	rv, ok := s.Lookup(repo)
	if !ok {
		return nil
	}
	return rv.Materialize(s.Name)
}

// NumRepos returns how many repositories the source has trust data for.
func (s *SourceIndex) NumRepos() int {
	if s == nil {
		return 0
	}
	return s.nrepos
}

// NumTags returns how many signed tags the source has, over every repository.
func (s *SourceIndex) NumTags() int {
	n := 0
	for _, p := range s.Parts() {
		n += p.NumTags()
	}
	return n
}

// RepoNames returns the names of the repositories, sorted (allocates).
func (s *SourceIndex) RepoNames() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, s.nrepos)
	if s.byRepo != nil {
		for n := range s.byRepo {
			out = append(out, n)
		}
		sort.Strings(out)
		return out
	}
	for _, p := range s.parts {
		for i := 0; i < p.Len(); i++ {
			out = append(out, p.RepoAt(i).Name())
		}
	}
	return out
}

// Parts returns the Trust values the index is made of (shared; read only).
func (s *SourceIndex) Parts() []*Trust {
	if s == nil {
		return nil
	}
	return s.parts
}

// WithReachability returns a copy of s with its reachability set.
func (s *SourceIndex) WithReachability(unreachable bool, since time.Time) *SourceIndex {
	c := *s
	c.Unreachable, c.UnreachableSince = unreachable, since
	return &c
}

// Index is the whole verified trust data trustd decides from: one
// SourceIndex per policy source. An Index is immutable once built and safe
// for concurrent readers; a sync builds a new Index and swaps it in whole.
type Index struct {
	Sources map[string]*SourceIndex
}

// NewIndex returns an Index over the given source indexes.
func NewIndex(sources ...*SourceIndex) *Index {
	ix := &Index{Sources: make(map[string]*SourceIndex, len(sources))}
	for _, s := range sources {
		ix.Sources[s.Name] = s
	}
	return ix
}

// With returns a copy of ix in which the source s.Name is replaced by s.
// ix itself is not modified.
func (ix *Index) With(s *SourceIndex) *Index {
	n := &Index{Sources: make(map[string]*SourceIndex, len(ix.Sources)+1)}
	for k, v := range ix.Sources {
		n.Sources[k] = v
	}
	n.Sources[s.Name] = s
	return n
}

// Source returns the named source's index, or nil.
func (ix *Index) Source(name string) *SourceIndex {
	if ix == nil {
		return nil
	}
	return ix.Sources[name]
}

// SortedTags returns the repository's signed tags in lexical order.
func (r *Repo) SortedTags() []string {
	tags := make([]string, 0, len(r.Tags))
	for t := range r.Tags {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	return tags
}

// RolesInOrder returns the roles that signed tag, in resolution order:
// Order[tag] when known, then any remaining roles sorted by name.
func (r *Repo) RolesInOrder(tag string) []string {
	roles := r.Tags[tag]
	out := make([]string, 0, len(roles))
	seen := make(map[string]bool, len(roles))
	for _, role := range r.Order[tag] {
		if _, ok := roles[role]; ok && !seen[role] {
			out = append(out, role)
			seen[role] = true
		}
	}
	if len(out) == len(roles) {
		return out
	}
	rest := make([]string, 0, len(roles)-len(out))
	for role := range roles {
		if !seen[role] {
			rest = append(rest, role)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}
