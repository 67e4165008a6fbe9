package verify

import (
	"crypto/sha256"
	"encoding/hex"
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

// IndexTUF derives the repository index from a fully loaded, verified TUF
// trusted metadata set (top-level targets and every delegated role that
// could be loaded). A target counts for a role only when the delegation
// chain from the top-level targets authorises that role for the target's
// name, with TUF's pre-order, terminating-aware search; `path_hash_prefixes`
// are matched on the hex SHA-256 of the name as the TUF specification says.
// Expiry is the earliest of root, targets and delegations; freshness that
// of timestamp and snapshot.
func IndexTUF(source string, tm *trustedmetadata.TrustedMetadata) (map[string]*Repo, []string) {
	var problems []string
	expires, expRole := tm.Root.Signed.Expires, "root"
	for name, t := range tm.Targets {
		if t.Signed.Expires.Before(expires) || t.Signed.Expires.Equal(expires) && expRole != "root" && name < expRole {
			expires, expRole = t.Signed.Expires, name
		}
	}
	var fresh time.Time
	var freshRole string
	if tm.Timestamp != nil {
		fresh, freshRole = tm.Timestamp.Signed.Expires, "timestamp"
	}
	if tm.Snapshot != nil && (fresh.IsZero() || tm.Snapshot.Signed.Expires.Before(fresh)) {
		fresh, freshRole = tm.Snapshot.Signed.Expires, "snapshot"
	}

	// Every name any loaded role lists.
	names := map[string]struct{}{}
	for _, t := range tm.Targets {
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
	repos := map[string]*Repo{}
	for _, name := range sorted {
		roles := resolveTUF(tm, name)
		if len(roles) == 0 {
			continue
		}
		repo, tag, err := SplitTargetName(name)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		for _, role := range roles {
			tf := tm.Targets[role].Signed.Targets[name]
			h, ok := tf.Hashes["sha256"]
			if !ok || len(h) != sha256.Size {
				problems = append(problems, fmt.Sprintf("target %q in role %s has no sha256 hash", name, role))
				continue
			}
			r := repos[repo]
			if r == nil {
				r = &Repo{Source: source, Name: repo, Tags: map[string]RoleTargets{}, Order: map[string][]string{}, Expires: expires, ExpiresRole: expRole, FreshUntil: fresh, FreshRole: freshRole}
				repos[repo] = r
			}
			if r.Tags[tag] == nil {
				r.Tags[tag] = RoleTargets{}
			}
			t := Target{Digest: digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h)), Length: tf.Length}
			k := roleTag{repo, tag, role}
			if first, ok := spelled[k]; ok {
				if r.Tags[tag][role] != t && !conflicts[k] {
					conflicts[k] = true
					problems = append(problems, fmt.Sprintf("targets %q and %q of role %s name the same image %s:%s with different digests: neither counts", first, name, role, repo, tag))
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
		if len(r.Tags) == 0 {
			delete(repos, k.repo)
		}
	}
	sort.Strings(problems)
	return repos, problems
}

// resolveTUF returns the loaded roles that list name and are authorised for
// it, in the order a TUF client's pre-order search would consult them,
// stopping at a terminating delegation that covers name.
func resolveTUF(tm *trustedmetadata.TrustedMetadata, name string) []string {
	var out []string
	visited := map[string]bool{}
	var visit func(role string) (stop bool)
	visit = func(role string) bool {
		if visited[role] || len(visited) > 10000 {
			return false
		}
		visited[role] = true
		t := tm.Targets[role]
		if t == nil {
			return false
		}
		if _, ok := t.Signed.Targets[name]; ok {
			out = append(out, role)
		}
		del := t.Signed.Delegations
		if del == nil {
			return false
		}
		if del.SuccinctRoles != nil {
			for _, rr := range del.SuccinctRoles.GetRolesForTarget(name) {
				visit(rr.Name)
				return true // succinct bins are terminating (TAP 15)
			}
			return false
		}
		for i := range del.Roles {
			dr := &del.Roles[i]
			if !delegatedPath(dr, name) {
				continue
			}
			if visit(dr.Name) {
				return true
			}
			if dr.Terminating {
				return true
			}
		}
		return false
	}
	visit(metadata.TARGETS)
	return out
}

// delegatedPath reports whether the delegation covers name: glob `paths`
// as go-tuf matches them, and `path_hash_prefixes` against the hex SHA-256
// of the name (go-tuf v2.4.2 compares against base64url, which is wrong).
func delegatedPath(dr *metadata.DelegatedRole, name string) bool {
	if len(dr.Paths) > 0 {
		ok, err := dr.IsDelegatedPath(name)
		return err == nil && ok
	}
	if len(dr.PathHashPrefixes) > 0 {
		sum := sha256.Sum256([]byte(name))
		h := hex.EncodeToString(sum[:])
		for _, p := range dr.PathHashPrefixes {
			if strings.HasPrefix(h, strings.ToLower(p)) {
				return true
			}
		}
	}
	return false
}
