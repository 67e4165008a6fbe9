package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/trustd/trustd/policy"
)

// SplitTargetName splits a TUF target name "<repository>:<tag>" into its
// normalised repository and tag. The tag separator is the last ':' after
// the last '/', so registry ports are kept in the repository.
func SplitTargetName(name string) (repo, tag string, err error) {
	slash := strings.LastIndexByte(name, '/')
	colon := strings.LastIndexByte(name, ':')
	if colon <= slash || colon == len(name)-1 {
		return "", "", fmt.Errorf("target %q is not named <repository>:<tag>", name)
	}
	repo, err = policy.NormalizeRepo(name[:colon])
	if err != nil {
		return "", "", fmt.Errorf("target %q: %w", name, err)
	}
	return repo, name[colon+1:], nil
}

// TUFDelegations is what a TUF sync loaded of the delegated targets roles,
// for IndexTUF: each role's metadata once it passed the checks that do not
// depend on who delegated to it (listed in the snapshot with that version,
// length and hashes; of type targets; not expired when it was fetched), and
// why each other role could not be loaded. The signatures are checked by
// IndexTUF, against the delegator on each path that reaches the role.
type TUFDelegations struct {
	Roles  map[string]*metadata.Metadata[metadata.TargetsType]
	Failed map[string]string
}

// IndexTUF derives the repository index from verified TUF metadata: tm
// holds the verified root, timestamp, snapshot and top-level targets (any
// delegated role in tm.Targets is ignored: del has them). A target counts
// for a role only when the specification's pre-order search for the
// target's name reaches that role (TUF 5.6.7): delegations in order, a
// role visited once per search, a terminating delegation that covers the
// name ending the search, each role's signatures verified against the
// keys and threshold of the delegator through which this search reaches
// it. A role whose metadata failed to load or verify on that path ends the
// search with an error, as it does in the specification: the name is
// denied (Repo.Denied names the role), never resolved by a lower-priority
// role. So is a name whose first role signs it without a sha256 hash
// (trustd's digests are sha256). `paths` are matched with the
// specification's shell-style wildcards (see MatchTUFPath),
// `path_hash_prefixes` against the hex SHA-256 of the name.
// Expiry is the earliest of root, targets and delegations; freshness that
// of timestamp and snapshot.
func IndexTUF(source string, tm *trustedmetadata.TrustedMetadata, del TUFDelegations) (map[string]*Repo, []string) {
	top := tm.Targets[metadata.TARGETS]
	expires, expRole := tm.Root.Signed.Expires, "root"
	consider := func(name string, t *metadata.Metadata[metadata.TargetsType]) {
		if t.Signed.Expires.Before(expires) || t.Signed.Expires.Equal(expires) && expRole != "root" && name < expRole {
			expires, expRole = t.Signed.Expires, name
		}
	}
	consider(metadata.TARGETS, top)
	for name, t := range del.Roles {
		consider(name, t)
	}
	var fresh time.Time
	var freshRole string
	if tm.Timestamp != nil {
		fresh, freshRole = tm.Timestamp.Signed.Expires, "timestamp"
	}
	if tm.Snapshot != nil && (fresh.IsZero() || tm.Snapshot.Signed.Expires.Before(fresh)) {
		fresh, freshRole = tm.Snapshot.Signed.Expires, "snapshot"
	}

	res := &tufResolver{top: top, del: del, edges: map[[2]string]error{}}
	// Every name any loaded role lists.
	names := map[string]struct{}{}
	for n := range top.Signed.Targets {
		names[n] = struct{}{}
	}
	for _, t := range del.Roles {
		for n := range t.Signed.Targets {
			names[n] = struct{}{}
		}
	}
	// Several names may be spellings of one image ("nginx:1",
	// "docker.io/library/nginx:1", "REGISTRY.corp.example/app:1"): they are
	// read in a fixed order, and a role that signs different digests under
	// two spellings of one tag signs neither.
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	type roleTag struct{ repo, tag, role string }
	spelled := map[roleTag]string{}
	conflicts := map[roleTag]bool{}
	problems := map[string]bool{}
	repos := map[string]*Repo{}
	repoOf := func(repo string) *Repo {
		r := repos[repo]
		if r == nil {
			r = &Repo{Source: source, Name: repo, Tags: map[string]RoleTargets{}, Order: map[string][]string{}, Expires: expires, ExpiresRole: expRole, FreshUntil: fresh, FreshRole: freshRole}
			repos[repo] = r
		}
		return r
	}
	for _, name := range sorted {
		roles, failed := res.resolve(name)
		if len(roles) == 0 && failed == nil {
			continue
		}
		repo, tag, err := SplitTargetName(name)
		if err != nil {
			problems[err.Error()] = true
			continue
		}
		if len(roles) == 0 {
			repoOf(repo).deny(tag, fmt.Sprintf("target %q is in the paths of %s", name, failed))
			continue
		}
		for i, binOrRole := range roles {
			tf := res.meta(binOrRole).Signed.Targets[name]
			// A succinct hash bin signs for the role that delegates to its
			// bins (TAP 15: that role keeps no targets of its own): rules
			// name that role in `signers`, and a threshold counts it once.
			role := res.signer(binOrRole)
			h, ok := tf.Hashes["sha256"]
			if !ok || len(h) != sha256.Size {
				why := fmt.Sprintf("target %q in role %s has no sha256 hash (trustd matches images by sha256 digest)", name, role)
				if i == 0 { // the role the specification's search returns
					repoOf(repo).deny(tag, why)
					break
				}
				problems[why] = true
				continue
			}
			r := repoOf(repo)
			if r.Tags[tag] == nil {
				r.Tags[tag] = RoleTargets{}
			}
			t := Target{Digest: digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h)), Length: tf.Length}
			k := roleTag{repo, tag, role}
			if first, ok := spelled[k]; ok {
				if r.Tags[tag][role] != t && !conflicts[k] {
					conflicts[k] = true
					problems[fmt.Sprintf("targets %q and %q of role %s name the same image %s:%s with different digests: neither counts", first, name, role, repo, tag)] = true
				}
				continue
			}
			spelled[k] = name
			r.Tags[tag][role] = t
			r.Order[tag] = append(r.Order[tag], role)
		}
	}
	for k := range conflicts {
		r := repos[k.repo]
		delete(r.Tags[k.tag], k.role)
		r.Order[k.tag] = slices.DeleteFunc(r.Order[k.tag], func(role string) bool { return role == k.role })
		if len(r.Tags[k.tag]) == 0 {
			delete(r.Tags, k.tag)
			delete(r.Order, k.tag)
		}
		if len(r.Tags) == 0 && len(r.Denied) == 0 {
			delete(repos, k.repo)
		}
	}
	for role, why := range del.Failed {
		problems[fmt.Sprintf("delegated role %s could not be loaded: %s", role, why)] = true
	}
	for e, err := range res.edges {
		if err != nil && del.Failed[e[1]] == "" {
			problems[(&roleFailure{e[1], e[0], err}).String()] = true
		}
	}
	out := make([]string, 0, len(problems))
	for p := range problems {
		out = append(out, p)
	}
	sort.Strings(out)
	return repos, out
}

// deny records that tag is refused, and why.
func (r *Repo) deny(tag, why string) {
	if r.Denied == nil {
		r.Denied = map[string]string{}
	}
	r.Denied[tag] = why
}

// maxTUFSearch bounds the roles one pre-order search visits (TUF 5.6.7.1:
// an application-specific maximum; the search then ends without the
// target).
const maxTUFSearch = 1 << 14

// roleFailure is a delegated role that could not be used on a search path.
type roleFailure struct {
	role, delegator string
	err             error
}

func (f *roleFailure) String() string {
	return fmt.Sprintf("delegated role %s (delegated by %s), which could not be used: %v", f.role, f.delegator, f.err)
}

// tufResolver runs the specification's target search over loaded
// metadata, verifying each delegation edge once.
type tufResolver struct {
	top   *metadata.Metadata[metadata.TargetsType]
	del   TUFDelegations
	edges map[[2]string]error // (delegator, role) → nil when the role verifies under it
	binOf map[string]string   // a succinct hash bin → the role delegating to the bins
}

// signer is the role that signs through role: its delegator when role is a
// succinct hash bin, role itself otherwise.
func (r *tufResolver) signer(role string) string {
	if p, ok := r.binOf[role]; ok {
		return p
	}
	return role
}

func (r *tufResolver) meta(role string) *metadata.Metadata[metadata.TargetsType] {
	if role == metadata.TARGETS {
		return r.top
	}
	return r.del.Roles[role]
}

// edge verifies role against the delegation of delegator (memoised).
func (r *tufResolver) edge(delegator, role string) error {
	k := [2]string{delegator, role}
	if err, ok := r.edges[k]; ok {
		return err
	}
	var err error
	md := r.del.Roles[role]
	switch {
	case r.del.Failed[role] != "":
		err = errors.New(r.del.Failed[role])
	case md == nil:
		err = errors.New("its metadata was not loaded")
	default:
		err = r.meta(delegator).VerifyDelegate(role, md)
	}
	r.edges[k] = err
	return err
}

// resolve returns the roles that list name, in the order the
// specification's search meets them (the first is the one a TUF client
// returns), and the failure that ended the search before any role listed
// name, if one did. A failure met after the first role ends the
// collection there.
func (r *tufResolver) resolve(name string) ([]string, *roleFailure) {
	var out []string
	var failed *roleFailure
	visited := map[string]bool{metadata.TARGETS: true}
	var visit func(t *metadata.Metadata[metadata.TargetsType], role string) (stop bool)
	visit = func(t *metadata.Metadata[metadata.TargetsType], role string) bool {
		if _, ok := t.Signed.Targets[name]; ok {
			out = append(out, role)
		}
		del := t.Signed.Delegations
		if del == nil {
			return false
		}
		type child struct {
			name        string
			terminating bool
		}
		var children []child
		if del.SuccinctRoles != nil {
			for _, rr := range del.SuccinctRoles.GetRolesForTarget(name) {
				children = append(children, child{rr.Name, true}) // succinct bins are terminating (TAP 15)
				if r.binOf == nil {
					r.binOf = map[string]string{}
				}
				r.binOf[rr.Name] = role
			}
		}
		for i := range del.Roles {
			dr := &del.Roles[i]
			if MatchTUFDelegation(dr, name) {
				children = append(children, child{dr.Name, dr.Terminating})
			}
		}
		for _, c := range children {
			if !visited[c.name] {
				if len(visited) >= maxTUFSearch {
					return true
				}
				visited[c.name] = true
				if err := r.edge(role, c.name); err != nil {
					if failed == nil {
						failed = &roleFailure{c.name, role, err}
					}
					return true
				}
				if visit(r.meta(c.name), c.name) {
					return true
				}
			}
			if c.terminating {
				return true
			}
		}
		return false
	}
	visit(r.top, metadata.TARGETS)
	if len(out) > 0 {
		return out, nil
	}
	return nil, failed
}

// MatchTUFDelegation reports whether the delegation covers name: any of
// its `paths` (MatchTUFPath), or any of its `path_hash_prefixes` as a
// prefix of the hex SHA-256 of the name, as the TUF specification says.
// (go-tuf v2.4.2 compares the prefixes against the base64url encoding of
// the hash instead: a known difference.)
func MatchTUFDelegation(dr *metadata.DelegatedRole, name string) bool {
	if len(dr.Paths) > 0 {
		for _, p := range dr.Paths {
			if MatchTUFPath(p, name) {
				return true
			}
		}
		return false
	}
	if len(dr.PathHashPrefixes) > 0 {
		sum := sha256.Sum256([]byte(name))
		h := hex.EncodeToString(sum[:])
		for _, p := range dr.PathHashPrefixes {
			if strings.HasPrefix(h, p) {
				return true
			}
		}
	}
	return false
}

// MatchTUFPath reports whether a target name matches a delegation's path
// pattern as the TUF specification (and its reference client) defines
// it: pattern and name are split at '/' and must have as many parts, each
// part matched with Unix shell-style wildcards (fnmatch): '*' matches any
// run of characters within the part, '?' one character, "[seq]" and
// "[!seq]" a character in or not in seq (ranges allowed); a '[' without a
// closing ']' is literal, and there is no escape character. Matching is
// case-sensitive.
func MatchTUFPath(pattern, name string) bool {
	if strings.Count(pattern, "/") != strings.Count(name, "/") {
		return false
	}
	for {
		pp, prest, pmore := strings.Cut(pattern, "/")
		np, nrest, _ := strings.Cut(name, "/")
		if !fnmatch([]rune(pp), []rune(np)) {
			return false
		}
		if !pmore {
			return true
		}
		pattern, name = prest, nrest
	}
}

// fnmatch matches one part; '*' backtracks to the last star only, which
// is enough for patterns without '/' (linear in practice).
func fnmatch(p, s []rune) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch p[pi] {
			case '*':
				star, mark = pi, si
				pi++
				continue
			case '?':
				pi++
				si++
				continue
			case '[':
				if ok, next, valid := matchClass(p, pi, s[si]); valid {
					if ok {
						pi, si = next, si+1
						continue
					}
				} else if s[si] == '[' {
					pi++
					si++
					continue
				}
			default:
				if p[pi] == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if star < 0 {
			return false
		}
		pi, mark = star+1, mark+1
		si = mark
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchClass matches c against the class starting at p[i] == '['. valid
// is false when the class has no closing ']' (the '[' is then literal).
func matchClass(p []rune, i int, c rune) (ok bool, next int, valid bool) {
	j := i + 1
	neg := j < len(p) && p[j] == '!'
	if neg {
		j++
	}
	if j < len(p) && p[j] == ']' { // a ']' first is a member
		j++
	}
	for j < len(p) && p[j] != ']' {
		j++
	}
	if j >= len(p) {
		return false, 0, false
	}
	k := i + 1
	if neg {
		k++
	}
	for first := true; k < j; first = false {
		lo := p[k]
		if lo == ']' && !first {
			break
		}
		hi := lo
		if k+2 < j && p[k+1] == '-' {
			hi = p[k+2]
			k += 3
		} else {
			k++
		}
		if lo <= c && c <= hi {
			ok = true
		}
	}
	return ok != neg, j + 1, true
}

// FailedRole is a delegated role of a TUF source that could not be used
// (its metadata failed to load or to verify under its delegator), with the
// delegations that lead to it. A target name that every step of one of
// its chains covers is in the role's paths: a search for it may have been
// ended by the failure, so its denial names the role.
type FailedRole struct {
	Role      string `json:"role"`
	Delegator string `json:"delegator"`
	Why       string `json:"why"`
	// Chains are the delegation paths from the top-level targets to the
	// role, each a list of steps.
	Chains [][]PathStep `json:"chains"`
}

// PathStep is one delegation's `paths` or `path_hash_prefixes`.
type PathStep struct {
	Paths        []string `json:"paths,omitempty"`
	HashPrefixes []string `json:"hash_prefixes,omitempty"`
}

// Covers reports whether name is in the role's paths through one of its
// chains.
func (f *FailedRole) Covers(name string) bool {
	for _, chain := range f.Chains {
		if chainCovers(chain, name) {
			return true
		}
	}
	return false
}

func chainCovers(chain []PathStep, name string) bool {
	for i := range chain {
		dr := metadata.DelegatedRole{Paths: chain[i].Paths, PathHashPrefixes: chain[i].HashPrefixes}
		if !MatchTUFDelegation(&dr, name) {
			return false
		}
	}
	return true
}

// Bounds of FailedTUFRoles: failed roles reported, chains per role, steps
// per chain.
const (
	maxFailedRoles  = 64
	maxFailedChains = 16
	maxChainSteps   = 32
)

// FailedTUFRoles lists the delegated roles that could not be used, each
// with the chains of delegations (verified up to it) that lead to it, in
// the order of a depth-first walk of the delegations; bounded. Succinct
// hash bins are not followed (their paths are hash ranges, not patterns).
func FailedTUFRoles(tm *trustedmetadata.TrustedMetadata, del TUFDelegations) []FailedRole {
	res := &tufResolver{top: tm.Targets[metadata.TARGETS], del: del, edges: map[[2]string]error{}}
	byRole := map[string]*FailedRole{}
	var order []string
	onPath := map[string]bool{metadata.TARGETS: true}
	var walk func(role string, chain []PathStep)
	walk = func(role string, chain []PathStep) {
		t := res.meta(role)
		if t == nil || t.Signed.Delegations == nil || len(chain) >= maxChainSteps {
			return
		}
		for i := range t.Signed.Delegations.Roles {
			dr := &t.Signed.Delegations.Roles[i]
			step := append(chain[:len(chain):len(chain)], PathStep{Paths: dr.Paths, HashPrefixes: dr.PathHashPrefixes})
			if err := res.edge(role, dr.Name); err != nil {
				f := byRole[dr.Name]
				if f == nil {
					if len(order) >= maxFailedRoles {
						continue
					}
					f = &FailedRole{Role: dr.Name, Delegator: role, Why: err.Error()}
					byRole[dr.Name] = f
					order = append(order, dr.Name)
				}
				if len(f.Chains) < maxFailedChains {
					f.Chains = append(f.Chains, step)
				}
				continue
			}
			if onPath[dr.Name] {
				continue
			}
			onPath[dr.Name] = true
			walk(dr.Name, step)
			onPath[dr.Name] = false
		}
	}
	walk(metadata.TARGETS, nil)
	out := make([]FailedRole, 0, len(order))
	for _, r := range order {
		out = append(out, *byRole[r])
	}
	return out
}

// failedRoleCovering is the first failed role of si whose paths cover the
// target name repo:tag, if any.
func failedRoleCovering(si *SourceIndex, repo, tag string) *FailedRole {
	if si == nil || len(si.Failed) == 0 || tag == "" {
		return nil
	}
	name := repo + ":" + tag
	for i := range si.Failed {
		if si.Failed[i].Covers(name) {
			return &si.Failed[i]
		}
	}
	return nil
}
