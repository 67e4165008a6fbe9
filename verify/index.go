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
	// Repos maps a normalised repository name to its trust data.
	Repos map[string]*Repo
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
