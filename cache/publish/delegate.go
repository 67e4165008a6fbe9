package publish

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// MaxRepoDepth is the deepest repository name (registry host included, in
// '/'-separated parts) that a "**" in a delegated pattern covers. TUF path
// patterns match part by part, with as many parts as the name has, so a
// "**" becomes one path pattern per depth; names deeper than this are not
// covered (signing one into the role fails: fail closed).
const MaxRepoDepth = 8

// TUFPaths maps a policy repository pattern ("registry.corp.example/team/**",
// "registry.corp.example/app-*") to the TUF delegation path patterns that
// cover exactly the target names "<repository>:<tag>" of the repositories
// it matches, up to MaxRepoDepth parts: each "**" is expanded to zero or
// more "*" parts, and the last part gets ":*" for the tag. Repository
// names hold no fnmatch metacharacter other than the pattern's '*', and a
// tag no ':' or '/', so a part "seg:*" matches exactly "<seg>:<tag>".
func TUFPaths(pattern string) ([]string, error) {
	p, err := policy.ParsePattern(pattern)
	if err != nil {
		return nil, fmt.Errorf("repository pattern %q: %w", pattern, err)
	}
	if strings.ContainsAny(p.Normalized(), "?[]") {
		return nil, fmt.Errorf("repository pattern %q: '?' and '[' are not pattern characters of trustd's policy", pattern)
	}
	var parts []string
	if p.Normalized() == "**" {
		parts = []string{"**"}
	} else {
		parts = strings.Split(p.Normalized(), "/")
	}
	var out []string
	var expand func(i int, acc []string)
	expand = func(i int, acc []string) {
		if len(acc) > MaxRepoDepth {
			return
		}
		if i == len(parts) {
			// A repository has a registry host and at least one more part.
			if len(acc) >= 2 {
				s := strings.Join(acc, "/") + ":*"
				if !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
			return
		}
		if parts[i] != "**" {
			expand(i+1, append(slices.Clip(acc), parts[i]))
			return
		}
		for n := 0; len(acc)+n <= MaxRepoDepth; n++ {
			next := slices.Clip(acc)
			for range n {
				next = append(next, "*")
			}
			expand(i+1, next)
		}
	}
	expand(0, nil)
	if len(out) == 0 {
		return nil, fmt.Errorf("repository pattern %q covers no repository of at most %d parts", pattern, MaxRepoDepth)
	}
	return out, nil
}

// DelegateOptions describe a delegation from the top-level targets role.
type DelegateOptions struct {
	// Keys are the public keys of the role (ReadPublicKey); Threshold how
	// many of them must sign (default 1).
	Keys      []*metadata.Key
	Threshold int
	// Repositories are policy repository patterns (TUFPaths).
	Repositories []string
	// Terminating stops a search for a name in the role's paths at the
	// role: roles after it are not consulted.
	Terminating bool
}

// Delegate adds (or replaces) the delegation of role from the top-level
// targets role. Targets the role signed that its new paths no longer cover
// are an error, as is a key listed twice or a threshold above the number of
// keys. The role's metadata is published once its keys sign it (its first
// `sign --role` or `sign-metadata`); until then the new delegation stays
// pending with it, so that no client meets a delegation without metadata.
func (r *Repo) Delegate(role string, o DelegateOptions) (*Saved, error) {
	if err := CheckRoleName(role); err != nil {
		return nil, err
	}
	if owner := r.binOwner(role); owner != "" {
		return nil, fmt.Errorf("role name %s is a hash bin of role %s: choose another name", role, owner)
	}
	if o.Threshold == 0 {
		o.Threshold = 1
	}
	if len(o.Keys) == 0 || o.Threshold < 1 || o.Threshold > len(o.Keys) {
		return nil, fmt.Errorf("role %s: threshold %d of %d keys: want 1 <= threshold <= keys", role, o.Threshold, len(o.Keys))
	}
	if len(o.Repositories) == 0 {
		return nil, fmt.Errorf("role %s: no repository pattern: say which repositories the role signs", role)
	}
	dr := metadata.DelegatedRole{Name: role, Threshold: o.Threshold, Terminating: o.Terminating}
	for _, pat := range o.Repositories {
		paths, err := TUFPaths(pat)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			if !slices.Contains(dr.Paths, p) {
				dr.Paths = append(dr.Paths, p)
			}
		}
	}
	keys := map[string]*metadata.Key{}
	for _, k := range o.Keys {
		id, err := k.ID()
		if err != nil {
			return nil, err
		}
		if slices.Contains(dr.KeyIDs, id) {
			return nil, fmt.Errorf("role %s: key %s is given twice: each key counts once towards the threshold", role, short(id))
		}
		if r.root.Signed.Roles[RoleRoot] != nil && slices.ContainsFunc([]string{RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp}, func(top string) bool {
			return slices.Contains(r.root.Signed.Roles[top].KeyIDs, id)
		}) {
			return nil, fmt.Errorf("role %s: key %s is a top-level role's key: a team needs its own (trustd repo keygen)", role, short(id))
		}
		dr.KeyIDs = append(dr.KeyIDs, id)
		keys[id] = k
	}
	if p := r.delegatorOf(role); p != "" && p != RoleTargets {
		return nil, fmt.Errorf("role %s is delegated by %s, not by targets", role, p)
	}
	if err := r.useKeys(RoleTargets, nil); err != nil {
		return nil, err
	}
	// The role's own signed targets must stay in its paths.
	for _, src := range []*metadata.Metadata[metadata.TargetsType]{r.roles[role], r.pending[role]} {
		if src == nil {
			continue
		}
		for name := range src.Signed.Targets {
			if !slices.ContainsFunc(dr.Paths, func(p string) bool { return verify.MatchTUFPath(p, name) }) {
				return nil, fmt.Errorf("role %s signs %s, which the new repositories do not cover: unsign it first", role, name)
			}
		}
	}
	prev, had := r.pending[RoleTargets]
	t := r.workingFor(RoleTargets)
	if t.Signed.Delegations == nil {
		t.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	del := t.Signed.Delegations
	if del.SuccinctRoles != nil {
		return nil, errors.New("the targets role's targets are in hash bins, and a TUF role delegates to named roles or to bins, not both: delegate teams before the targets role grows past the bins threshold")
	}
	i := slices.IndexFunc(del.Roles, func(d metadata.DelegatedRole) bool { return d.Name == role })
	if i >= 0 {
		del.Roles[i] = dr
	} else {
		del.Roles = append(del.Roles, dr)
	}
	for id, k := range keys {
		del.Keys[id] = k
	}
	pruneKeys(del)
	r.pending[RoleTargets] = t
	r.changed(RoleTargets, t)
	if err := r.signPending(RoleTargets); err != nil {
		r.restore(RoleTargets, prev, had)
		return nil, err
	}
	if r.roles[role] == nil && r.pending[role] == nil {
		// Version 1 of the role, empty, waiting for its keys.
		r.pending[role] = metadata.Targets(r.now.Add(r.expiry.Targets))
	} else if w := r.workingFor(role); w != nil {
		// Its keys may have changed: it is signed again.
		r.pending[role] = w
		r.changed(role, w)
		if err := r.signPending(role); err != nil {
			return nil, err
		}
		// Its bins are signed by its keys too.
		if err := r.rekeyBins(role); err != nil {
			return nil, err
		}
	}
	return r.save()
}

// delegatorOf returns a role that delegates to role, "" when none does.
func (r *Repo) delegatorOf(role string) string {
	for p := range r.delegators(role) {
		return p
	}
	return ""
}

// pruneKeys removes the delegation keys no role lists any more.
func pruneKeys(d *metadata.Delegations) {
	for id := range d.Keys {
		if !slices.ContainsFunc(d.Roles, func(dr metadata.DelegatedRole) bool { return slices.Contains(dr.KeyIDs, id) }) {
			delete(d.Keys, id)
		}
	}
}
