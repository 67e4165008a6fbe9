package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
	"github.com/trustd/trustd/verify/notary"
)

// NotaryData is the verified trust data of a Notary source, as trustd's
// cache holds it: the index the decision path reads, and the keys,
// versions and expiry of each repository's roles.
type NotaryData struct {
	// Source is the policy name of the Notary source.
	Source string
	Index  *verify.SourceIndex
	// Keys returns a repository's keys (nil when unknown).
	Keys func(repo string) *notary.Keys
	// Problems are cached repositories that failed verification (moved
	// aside by the cache) or could not be fetched.
	Problems []string
}

// LoadNotary reads the verified trust data of the Notary source named
// source from trustd's cache (store), after fetching and verifying it now
// when fetch is set: the repositories the source keeps in sync, those
// already cached, and the literal repositories among patterns. A fetch that
// fails is an error: stale data is not imported in its place.
func LoadNotary(ctx context.Context, store *cache.Store, source string, patterns []policy.Pattern, fetch bool, now time.Time) (*NotaryData, error) {
	var ns *cache.NotarySource
	var kinds []string
	for _, s := range store.Sources() {
		if s.Name() == source {
			var ok bool
			if ns, ok = s.(*cache.NotarySource); !ok {
				return nil, fmt.Errorf("source %q is of kind %q: import-notary reads a source of kind %q", source, s.Kind(), policy.KindNotary)
			}
		}
		kinds = append(kinds, s.Name())
	}
	if ns == nil {
		return nil, fmt.Errorf("the policy has no source %q (it has: %s)", source, strings.Join(kinds, ", "))
	}
	out := &NotaryData{Source: source, Keys: ns.Keys}
	if _, err := ns.Load(); err != nil {
		out.Problems = append(out.Problems, err.Error())
	}
	if fetch {
		var lit []string
		for _, p := range patterns {
			if p.IsLiteral() {
				if !ns.Covers(p.Normalized()) {
					return nil, fmt.Errorf("source %q does not cover repository %s (its repositories patterns)", source, p.Normalized())
				}
				lit = append(lit, p.Normalized())
			}
		}
		ns.Want(lit...)
		if _, _, err := store.SyncSource(ctx, ns, now); err != nil {
			return nil, fmt.Errorf("fetching the trust data of source %q: %w", source, err)
		}
	}
	out.Index = ns.Index()
	return out, nil
}

// ImportOptions say how Notary trust data becomes TUF targets.
type ImportOptions struct {
	// Patterns select the repositories to import (all cached ones when
	// empty). A literal repository without verified data is an error.
	Patterns []policy.Pattern
	// PerSigner signs each Notary role's tags into a role of its own:
	// "targets" into the top-level targets role, a delegation
	// "targets/NAME" into the delegated role NAME (delegated now, with a
	// new key in the key directory, when the repository has no such role).
	PerSigner bool
	// Otherwise (the default) each tag's digest is the one Notary's rule
	// decides with Signers (Docker's default: targets/releases, then
	// targets), threshold 1, and it is signed into Role (default targets).
	Signers []string
	Role    string
	// AllowExpired imports trust data that has expired at Now (with a
	// warning); otherwise such a repository is an error.
	AllowExpired bool
	// Keys are the private key files to sign with (as Sign's).
	Keys []string
}

// Provenance is what a target imported from Notary records in its custom
// field, under "notary".
type Provenance struct {
	// Repository is the Notary repository (GUN) the binding came from.
	Repository string `json:"repository"`
	// RootKeyIDs are the Notary repository's root key IDs.
	RootKeyIDs []string `json:"root_key_ids"`
	// Role is the Notary role that signed the binding (targets,
	// targets/releases, ...), Version and Expires that role's metadata's.
	Role    string    `json:"role"`
	Version int       `json:"version"`
	Expires time.Time `json:"expires"`
}

// notaryCustom is a target's custom field as ImportNotary writes it.
type notaryCustom struct {
	Notary *Provenance `json:"notary"`
}

// ImportResult says what ImportNotary did.
type ImportResult struct {
	Saved
	// Changed lists the targets added, replaced or removed, by role.
	Changed map[string][]string
	// Roles maps each Notary role imported to its TUF role: the policy's
	// rules for the TUF source name these as signers.
	Roles map[string]string
	// Skipped lists the tags not imported (flat import: signed by no role
	// of Signers; Notary's rule does not accept them either).
	Skipped []string
	// Warnings are expired data imported with AllowExpired, and
	// delegations Notary's client ignores.
	Warnings []string
	// Delegated lists roles delegated by this import, with their key files.
	Delegated []string
}

// TUFRoleOf maps a Notary role to the TUF role ImportNotary signs it into:
// "targets" to the top-level targets role, "targets/NAME" to the
// delegated role NAME. A deeper Notary delegation (targets/a/b) has no
// role: TUF clients fetch a role named with a '/' under different file
// names (go-tuf escapes it as %2F, a static server reads a directory), so
// such names are not used.
func TUFRoleOf(notaryRole string) (string, error) {
	if notaryRole == RoleTargets {
		return RoleTargets, nil
	}
	name, ok := strings.CutPrefix(notaryRole, "targets/")
	if !ok || strings.Contains(name, "/") {
		return "", fmt.Errorf("notary role %s: only targets and targets/NAME map to TUF roles (import it without --per-signer)", notaryRole)
	}
	if err := CheckRoleName(name); err != nil {
		return "", fmt.Errorf("notary role %s: %w", notaryRole, err)
	}
	return name, nil
}

type importTarget struct {
	b    Binding
	prov Provenance
}

// ImportNotary signs the tag→digest bindings of the verified Notary data
// as targets, each with its provenance, and removes the targets an earlier
// import made for a repository whose Notary data no longer signs them.
// Every role is signed and published in one new version. When a
// repository, tag or role fails, no binding changes; a role delegated by
// this import (--per-signer) may then stay pending, unpublished, with its
// key in the key directory, and the next import uses it.
func (r *Repo) ImportNotary(nd *NotaryData, o ImportOptions) (*ImportResult, error) {
	if nd == nil || nd.Index == nil {
		return nil, errors.New("no Notary trust data to import")
	}
	res := &ImportResult{Changed: map[string][]string{}, Roles: map[string]string{}}
	signers := o.Signers
	if len(signers) == 0 {
		signers = verify.DefaultNotarySigners()
	}
	flatRole := o.Role
	if flatRole == "" {
		flatRole = RoleTargets
	}
	repos, err := selectRepos(nd.Index, o.Patterns, nd.Source)
	if err != nil {
		return nil, err
	}
	byRole := map[string][]importTarget{}
	for _, name := range repos {
		rv, _ := nd.Index.Lookup(name)
		keys := nd.Keys(name)
		if keys == nil {
			return nil, fmt.Errorf("repository %s: the cache has no keys for it (run trustd sync, or --fetch)", name)
		}
		if why := expired(rv, r.now); why != "" {
			if !o.AllowExpired {
				return nil, fmt.Errorf("repository %s: %s: not importing expired trust data (--allow-expired imports it, with a warning)", name, why)
			}
			res.Warnings = append(res.Warnings, fmt.Sprintf("repository %s: %s: imported anyway (--allow-expired); the TUF targets are signed afresh and will not expire with it", name, why))
		}
		for _, p := range rv.Problems() {
			res.Warnings = append(res.Warnings, fmt.Sprintf("repository %s: %s", name, p))
		}
		for i := 0; i < rv.NumTags(); i++ {
			tv := rv.TagAt(i)
			var take []string
			if o.PerSigner {
				take = tv.Roles()
			} else if j := slices.IndexFunc(signers, func(s string) bool { return tv.Find(s) >= 0 }); j >= 0 {
				take = signers[j : j+1]
			} else {
				res.Skipped = append(res.Skipped, fmt.Sprintf("%s:%s (signed only by %s)", name, tv.Name(), strings.Join(tv.Roles(), ", ")))
				continue
			}
			for _, nrole := range take {
				_, t := tv.Sig(tv.Find(nrole))
				b, err := NewBinding(name+":"+tv.Name(), t.Digest, t.Length)
				if err != nil {
					return nil, fmt.Errorf("repository %s: %w", name, err)
				}
				prov, err := provenance(name, nrole, keys)
				if err != nil {
					return nil, err
				}
				role := flatRole
				if o.PerSigner {
					if role, err = TUFRoleOf(nrole); err != nil {
						return nil, fmt.Errorf("repository %s: %w", name, err)
					}
				}
				res.Roles[nrole] = role
				byRole[role] = append(byRole[role], importTarget{b, prov})
			}
		}
	}
	if !o.PerSigner {
		res.Roles = map[string]string{}
		for _, s := range signers {
			res.Roles[s] = flatRole
		}
		if len(byRole) == 0 {
			byRole[flatRole] = nil // removals only
		}
	}

	defer r.keepRing()()
	// Roles the import delegates: a key each in the key directory.
	roles := slices.Sorted(func(yield func(string) bool) {
		for k := range byRole {
			if !yield(k) {
				return
			}
		}
	})
	for _, role := range roles {
		if role == RoleTargets {
			continue
		}
		if d, _ := r.delegation(role); d != nil {
			continue
		}
		if !o.PerSigner {
			return nil, fmt.Errorf("role %s: %w (delegate it first: trustd repo delegate DIR %s ...)", role, ErrNoRole, role)
		}
		keyFile, err := r.delegateImported(role, repos)
		if err != nil {
			return nil, err
		}
		res.Delegated = append(res.Delegated, role+" (key "+keyFile+")")
	}
	imported := map[string]bool{}
	for _, n := range repos {
		imported[n] = true
	}
	var undos []func()
	undoAll := func() {
		for _, u := range slices.Backward(undos) {
			u()
		}
	}
	for _, role := range roles {
		ts := byRole[role]
		changed, undo, err := r.stageTargets(role, o.Keys, func(t *metadata.Metadata[metadata.TargetsType]) ([]string, error) {
			return r.importInto(role, t, ts, imported)
		})
		if err != nil {
			undoAll()
			return nil, err
		}
		if undo != nil {
			undos = append(undos, undo)
		}
		if len(changed) > 0 {
			res.Changed[role] = changed
		}
	}
	if len(res.Changed) == 0 && len(res.Delegated) == 0 {
		res.Pending = r.pendingSummary()
		return res, nil
	}
	saved, err := r.save()
	if err != nil {
		undoAll()
		return nil, err
	}
	res.Saved = *saved
	return res, nil
}

// importInto sets the imported targets of one role and removes those an
// earlier import made for an imported repository that are no longer there.
func (r *Repo) importInto(role string, t *metadata.Metadata[metadata.TargetsType], ts []importTarget, imported map[string]bool) ([]string, error) {
	var changed []string
	keep := map[string]bool{}
	for _, it := range ts {
		custom, err := json.Marshal(notaryCustom{Notary: &it.prov})
		if err != nil {
			return nil, err
		}
		keep[it.b.Name] = true
		c, err := r.bind(role, t, it.b, custom)
		if err != nil {
			return nil, err
		}
		if c {
			changed = append(changed, it.b.Name+" → "+string(it.b.Digest))
		}
	}
	for name, tf := range t.Signed.Targets {
		if keep[name] || tf.Custom == nil {
			continue
		}
		var c notaryCustom
		if json.Unmarshal(*tf.Custom, &c) != nil || c.Notary == nil || !imported[c.Notary.Repository] {
			continue
		}
		if repo, _, err := verify.SplitTargetName(name); err == nil && repo == c.Notary.Repository {
			delete(t.Signed.Targets, name)
			changed = append(changed, name+" removed (no longer signed in Notary)")
		}
	}
	sort.Strings(changed)
	return changed, nil
}

// delegateImported delegates role from targets for the imported
// repositories, with a new key written to the key directory (kept when an
// earlier, interrupted import wrote it), and returns the key file.
func (r *Repo) delegateImported(role string, repos []string) (string, error) {
	path := filepath.Join(r.KeyDir, role+".key")
	k, err := ReadKeyFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(r.KeyDir, 0o700); err != nil {
			return "", err
		}
		k, err = GenerateKeyPair(path, r.cfg.KeyType, r.ring.passphrase)
	}
	if err != nil {
		return "", fmt.Errorf("role %s: %w", role, err)
	}
	k.Path = path
	r.ring.keys[k.ID] = k
	if _, err := r.Delegate(role, DelegateOptions{Keys: []*metadata.Key{k.Public}, Repositories: repos}); err != nil {
		return "", err
	}
	return path, nil
}

// selectRepos returns the repositories of ix that patterns select (all
// when none), sorted; a literal pattern without data is an error, as is
// a selection of nothing.
func selectRepos(ix *verify.SourceIndex, patterns []policy.Pattern, source string) ([]string, error) {
	var out []string
	for _, name := range ix.RepoNames() {
		if len(patterns) == 0 || slices.ContainsFunc(patterns, func(p policy.Pattern) bool { return p.Match(name) }) {
			out = append(out, name)
		}
	}
	for _, p := range patterns {
		if p.IsLiteral() && !slices.Contains(out, p.Normalized()) {
			return nil, fmt.Errorf("repository %s: source %q has no verified trust data for it in trustd's cache (trustd sync, or --fetch)", p.Normalized(), source)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("source %q has no verified trust data for the repositories asked (trustd sync, or --fetch)", source)
	}
	sort.Strings(out)
	return out, nil
}

// expired says why a repository's Notary data has expired at now, "" if
// it has not.
func expired(rv verify.RepoView, now time.Time) string {
	if exp := rv.Expires(); !exp.IsZero() && now.After(exp) {
		return fmt.Sprintf("its %s expired at %s", rv.ExpiresRole(), exp.UTC().Format(time.RFC3339))
	}
	if f := rv.FreshUntil(); !f.IsZero() && now.After(f) {
		return fmt.Sprintf("its %s expired at %s", rv.FreshRole(), f.UTC().Format(time.RFC3339))
	}
	return ""
}

// provenance is the record of a binding signed by Notary role nrole.
func provenance(repo, nrole string, k *notary.Keys) (Provenance, error) {
	p := Provenance{Repository: repo, RootKeyIDs: slices.Clone(k.Root.KeyIDs), Role: nrole}
	rk := &k.Targets
	if nrole != RoleTargets {
		i := slices.IndexFunc(k.Delegations, func(d notary.RoleKeys) bool { return d.Role == nrole })
		if i < 0 {
			return p, fmt.Errorf("repository %s: role %s signs tags but its keys are not known", repo, nrole)
		}
		rk = &k.Delegations[i]
	}
	p.Version, p.Expires = rk.Version, rk.Expires.UTC()
	return p, nil
}
