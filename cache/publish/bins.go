package publish

import (
	"cmp"
	"fmt"
	"maps"
	"math/bits"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// DefaultBinsThreshold is the number of targets past which a role's
// targets move into succinct hash bins (TAP 15). Measured (docs/PUBLISHING.md):
// a target costs about 135 bytes of role metadata, a bin about 140 bytes
// of snapshot plus its signed envelope; at 1024 targets a role is about
// 140 KB, which every sign rewrites and every node downloads again, while
// in bins a sign rewrites one bin and a snapshot of a few KB.
const DefaultBinsThreshold = 1024

// maxBinBits bounds the bit length of a role's bins (65536 bins).
const maxBinBits = 16

// binBits is the bit length of the bins for n targets: about √n bins of
// about √n targets, which makes the bytes a sign rewrites (one bin plus
// a snapshot that lists every bin) smallest.
func binBits(n int) int {
	return min(max(1, bits.Len(uint(n))/2), maxBinBits)
}

// binPrefix is the name prefix of role's bins: bins are named
// "<role>-bin-<hex>", which no named role can take (CheckRoleName refuses
// a name that is a bin of a role).
func binPrefix(role string) string { return role + "-bin" }

// succinct returns the hash bins t delegates to, nil when it does not.
func succinct(t *metadata.Metadata[metadata.TargetsType]) *metadata.SuccinctRoles {
	if t == nil || t.Signed.Delegations == nil {
		return nil
	}
	return t.Signed.Delegations.SuccinctRoles
}

// binned returns role's bins as it will be published (pending first).
func (r *Repo) binned(role string) *metadata.SuccinctRoles {
	if p := r.pending[role]; p != nil {
		return succinct(p)
	}
	return succinct(r.roles[role])
}

// binOwner returns the role whose hash bin name is, "" when name is no bin.
func (r *Repo) binOwner(name string) string {
	for _, src := range []map[string]*metadata.Metadata[metadata.TargetsType]{r.pending, r.roles} {
		for owner, t := range src {
			if sr := succinct(t); sr != nil && sr.IsDelegatedRole(name) {
				return owner
			}
		}
	}
	return ""
}

// binTargets returns the targets of role's bins (the working version of
// each: pending, else published), merged.
func (r *Repo) binTargets(sr *metadata.SuccinctRoles) map[string]*metadata.TargetFiles {
	all := map[string]*metadata.TargetFiles{}
	for _, bin := range sr.GetRoles() {
		t := r.pending[bin]
		if t == nil {
			t = r.roles[bin]
		}
		if t != nil {
			maps.Copy(all, t.Signed.Targets)
		}
	}
	return all
}

// editBinned applies edit to a merged view of binned role's targets and
// keeps, as pending, a new version of each bin whose targets changed;
// when the bins have outgrown the threshold (more than threshold targets
// per bin on average) the role is put into more bins. w is the role's
// working metadata (a copy, not kept unless the role is re-binned).
func (r *Repo) editBinned(role string, w *metadata.Metadata[metadata.TargetsType], edit func(*metadata.Metadata[metadata.TargetsType]) ([]string, error)) (changed, touched []string, err error) {
	sr := succinct(w)
	view := metadata.Targets()
	view.Signed.Targets = r.binTargets(sr)
	before := maps.Clone(view.Signed.Targets)
	if changed, err = edit(view); err != nil || len(changed) == 0 {
		return nil, nil, err
	}
	if len(view.Signed.Targets) > r.binsThreshold<<sr.BitLength && sr.BitLength < maxBinBits {
		touched, err := r.putInBins(role, w, view.Signed.Targets)
		return changed, touched, err
	}
	dirty := map[string]bool{}
	for name, tf := range view.Signed.Targets {
		if before[name] != tf {
			dirty[sr.GetRolesForTarget(name)[0].Name] = true
		}
	}
	for name := range before {
		if view.Signed.Targets[name] == nil {
			dirty[sr.GetRolesForTarget(name)[0].Name] = true
		}
	}
	for _, bin := range slices.Sorted(maps.Keys(dirty)) {
		bw := r.workingFor(bin)
		if bw == nil {
			return nil, nil, fmt.Errorf("hash bin %s of role %s: %w", bin, role, ErrNoRole)
		}
		bw.Signed.Targets = map[string]*metadata.TargetFiles{}
		for name, tf := range view.Signed.Targets {
			if sr.GetRolesForTarget(name)[0].Name == bin {
				bw.Signed.Targets[name] = tf
			}
		}
		r.pending[bin] = bw
		r.changed(bin, bw)
		touched = append(touched, bin)
	}
	return changed, touched, nil
}

// putInBins makes w (role's working metadata, kept as pending) delegate
// all of targets to binBits(len(targets)) hash bins signed by role's own
// keys and threshold, and keeps a new version of each bin as pending.
// Bins of an earlier, smaller layout that the new one does not name stay
// in the snapshot (a TUF client refuses a snapshot that drops a role) but
// are no longer reachable. It returns the roles changed.
func (r *Repo) putInBins(role string, w *metadata.Metadata[metadata.TargetsType], targets map[string]*metadata.TargetFiles) ([]string, error) {
	ids, th, keys := r.binKeys(role)
	if len(ids) == 0 || th < 1 {
		return nil, fmt.Errorf("role %s has no keys to sign its hash bins with", role)
	}
	sr := &metadata.SuccinctRoles{KeyIDs: slices.Clone(ids), Threshold: th, BitLength: binBits(len(targets)), NamePrefix: binPrefix(role)}
	del := &metadata.Delegations{Keys: map[string]*metadata.Key{}, SuccinctRoles: sr}
	for _, id := range ids {
		if keys[id] == nil {
			return nil, fmt.Errorf("role %s: key %s has no public key at hand", role, short(id))
		}
		del.Keys[id] = keys[id]
	}
	w.Signed.Targets = map[string]*metadata.TargetFiles{}
	w.Signed.Delegations = del
	r.pending[role] = w
	r.changed(role, w)
	byBin := map[string]map[string]*metadata.TargetFiles{}
	for _, bin := range sr.GetRoles() {
		byBin[bin] = map[string]*metadata.TargetFiles{}
	}
	for name, tf := range targets {
		byBin[sr.GetRolesForTarget(name)[0].Name][name] = tf
	}
	out := []string{role}
	for _, bin := range sr.GetRoles() {
		bw := r.workingFor(bin) // an earlier layout's bin of that name: its next version
		if bw == nil {
			bw = metadata.Targets(r.now.Add(r.expiry.Targets))
		}
		bw.Signed.Targets = byBin[bin]
		r.pending[bin] = bw
		r.changed(bin, bw)
		out = append(out, bin)
	}
	return out, nil
}

// binKeys returns the keys and threshold of role as they will be
// published (a pending root's, a pending delegation's): its bins' keys.
func (r *Repo) binKeys(role string) (ids []string, threshold int, keys map[string]*metadata.Key) {
	if role == RoleTargets {
		root := cmp.Or(r.pendingRoot, r.root)
		rl := root.Signed.Roles[RoleTargets]
		keys = map[string]*metadata.Key{}
		for _, id := range rl.KeyIDs {
			keys[id] = root.Signed.Keys[id]
		}
		return rl.KeyIDs, rl.Threshold, keys
	}
	d, ks := r.delegation(role)
	if d == nil {
		return nil, 0, nil
	}
	return d.KeyIDs, d.Threshold, ks
}

// rekeyBins gives role's bins (when it has some) the keys and threshold
// role has now (after a rotation or a new delegation) and signs each bin
// again with the keys at hand.
func (r *Repo) rekeyBins(role string) error {
	w := r.pending[role]
	sr := succinct(w)
	if sr == nil {
		return nil
	}
	ids, th, keys := r.binKeys(role)
	sr.KeyIDs, sr.Threshold = slices.Clone(ids), th
	w.Signed.Delegations.Keys = map[string]*metadata.Key{}
	for _, id := range ids {
		w.Signed.Delegations.Keys[id] = keys[id]
	}
	r.changed(role, w)
	if err := r.signPending(role); err != nil {
		return err
	}
	for _, bin := range sr.GetRoles() {
		bw := r.workingFor(bin)
		if bw == nil {
			continue
		}
		r.pending[bin] = bw
		r.changed(bin, bw)
		if err := r.signPending(bin); err != nil {
			return err
		}
	}
	return nil
}

// pendingBins returns the pending bins of role, sorted.
func (r *Repo) pendingBins(role string) []string {
	sr := r.binned(role)
	if sr == nil {
		return nil
	}
	var out []string
	for name := range r.pending {
		if sr.IsDelegatedRole(name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// BinsStatus describes a role whose targets are in hash bins.
type BinsStatus struct {
	// Prefix and BitLength are the bins' name_prefix and bit_length:
	// 2^BitLength bins named "<Prefix>-<hex>".
	Prefix    string `json:"name_prefix"`
	BitLength int    `json:"bit_length"`
	Bins      int    `json:"bins"`
	// Pending is the number of bins with a pending version.
	Pending int `json:"pending,omitempty"`
}
