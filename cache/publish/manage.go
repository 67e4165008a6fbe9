package publish

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// RoleStatus is one role's published and pending state.
type RoleStatus struct {
	Role    string    `json:"role"`
	Version int64     `json:"version"`
	Expires time.Time `json:"expires"`
	// Signatures is how many of the role's keys validly signed the
	// published version; Threshold how many must.
	Signatures int `json:"signatures"`
	Threshold  int `json:"threshold"`
	Keys       int `json:"keys"`
	// Targets is the number of targets a targets role signs (with its
	// hash bins' when it has some).
	Targets int `json:"targets,omitempty"`
	// Bins describes the role's hash bins, when its targets are in bins
	// (the bins have no row of their own).
	Bins *BinsStatus `json:"bins,omitempty"`
	// Pending is the role's next version, waiting for signatures or for
	// the roles it delegates to.
	Pending *PendingStatus `json:"pending,omitempty"`
}

// PendingStatus is a role's pending version.
type PendingStatus struct {
	Version    int64 `json:"version"`
	Signatures int   `json:"signatures"`
	Threshold  int   `json:"threshold"`
	// Ready is true when the next command that saves publishes it.
	Ready bool `json:"ready"`
}

// Status is the repository's state, per role.
type Status struct {
	Roles []RoleStatus `json:"roles"`
	// WouldPublish lists the pending roles ready to be published.
	WouldPublish []string `json:"would_publish,omitempty"`
	// Waiting says what each other pending role waits for.
	Waiting []string `json:"waiting,omitempty"`
}

// Status reports every role. It does not change the repository.
func (r *Repo) Status() *Status {
	st := &Status{}
	rootOK, ready := r.plan()
	add := func(role string, version int64, expires time.Time, md any, sigs []metadata.Signature, rl *metadata.Role, keys map[string]*metadata.Key) *RoleStatus {
		st.Roles = append(st.Roles, RoleStatus{Role: role, Version: version, Expires: expires, Threshold: rl.Threshold, Keys: len(rl.KeyIDs),
			Signatures: validSignatures(md, sigs, rl.KeyIDs, keys)})
		return &st.Roles[len(st.Roles)-1]
	}
	rs := add(RoleRoot, r.root.Signed.Version, r.root.Signed.Expires, r.root, r.root.Signatures, r.root.Signed.Roles[RoleRoot], r.root.Signed.Keys)
	if p := r.pendingRoot; p != nil {
		rs.Pending = &PendingStatus{Version: p.Signed.Version, Threshold: p.Signed.Roles[RoleRoot].Threshold, Ready: rootOK,
			Signatures: validSignatures(p, p.Signatures, p.Signed.Roles[RoleRoot].KeyIDs, p.Signed.Keys)}
	}
	add(RoleTimestamp, r.timestamp.Signed.Version, r.timestamp.Signed.Expires, r.timestamp, r.timestamp.Signatures, r.root.Signed.Roles[RoleTimestamp], r.root.Signed.Keys)
	add(RoleSnapshot, r.snapshot.Signed.Version, r.snapshot.Signed.Expires, r.snapshot, r.snapshot.Signatures, r.root.Signed.Roles[RoleSnapshot], r.root.Signed.Keys)
	names := map[string]bool{}
	for n := range r.roles {
		names[n] = true
	}
	for n := range r.pending {
		names[n] = true
	}
	for n := range names {
		if r.binOwner(n) != "" {
			delete(names, n)
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Slice(sorted, func(i, j int) bool { // targets first
		if (sorted[i] == RoleTargets) != (sorted[j] == RoleTargets) {
			return sorted[i] == RoleTargets
		}
		return sorted[i] < sorted[j]
	})
	for _, n := range sorted {
		ids, th, keys := r.roleKeys(n)
		rl := &metadata.Role{KeyIDs: ids, Threshold: th}
		var s *RoleStatus
		if pub := r.roles[n]; pub != nil {
			s = add(n, pub.Signed.Version, pub.Signed.Expires, pub, pub.Signatures, rl, keys)
			s.Targets = len(pub.Signed.Targets)
		} else {
			st.Roles = append(st.Roles, RoleStatus{Role: n, Threshold: th, Keys: len(ids)})
			s = &st.Roles[len(st.Roles)-1]
		}
		if p := r.pending[n]; p != nil {
			s.Pending = &PendingStatus{Version: p.Signed.Version, Threshold: th, Ready: slices.Contains(ready, n),
				Signatures: validSignatures(p, p.Signatures, ids, keys)}
		}
		if sr := succinct(r.roles[n]); sr != nil {
			_, count := sr.GetSuffixLen()
			s.Bins = &BinsStatus{Prefix: sr.NamePrefix, BitLength: sr.BitLength, Bins: count, Pending: len(r.pendingBins(n))}
			s.Targets = len(r.binTargets(sr))
		}
	}
	if rootOK {
		st.WouldPublish = append(st.WouldPublish, RoleRoot)
	}
	st.WouldPublish = append(st.WouldPublish, ready...)
	for _, line := range r.pendingSummary() {
		st.Waiting = append(st.Waiting, line)
	}
	return st
}

// RefreshResult says what Refresh did.
type RefreshResult struct {
	// Renewed lists the roles signed again with a new expiry.
	Renewed []string
	// Expiring says, for each role that expires within the margin and
	// that Refresh could not sign again, when and why.
	Expiring []string
}

// Refresh signs timestamp again when it expires within margin, and
// snapshot when it does (or when anything pending is ready to publish),
// with the key directory's keys; each role named in renew is also signed
// again with a new expiry (with the keys at hand). Roles that expire within
// margin and were not renewed are listed in Expiring: the caller treats
// them as a failure. A role named in renew whose keys are not at hand is
// an error, and nothing changes.
func (r *Repo) Refresh(margin time.Duration, renew []string) (*RefreshResult, error) {
	res := &RefreshResult{}
	soon := r.now.Add(margin)
	for _, role := range slices.Clone(renew) {
		if sr := r.binned(role); sr != nil {
			renew = append(renew, sr.GetRoles()...) // a role in bins is renewed with its bins
		}
	}
	for _, role := range renew {
		switch role {
		case RoleTimestamp, RoleSnapshot:
			continue
		case RoleRoot:
			r.workingRoot()
			r.pendingRoot.Signed.Expires = r.now.Add(r.expiry.Root)
			r.pendingRoot.ClearSignatures()
		default:
			w := r.workingFor(role)
			if w == nil {
				return nil, fmt.Errorf("role %s: %w", role, ErrNoRole)
			}
			r.pending[role] = w
			r.changed(role, w)
		}
		if err := r.signPending(role); err != nil {
			return nil, err
		}
	}
	rootOK, ready := r.plan()
	for _, role := range renew {
		if role != RoleTimestamp && role != RoleSnapshot && !(role == RoleRoot && rootOK) && !slices.Contains(ready, role) {
			return nil, fmt.Errorf("%w: role %s cannot be signed again with the keys at hand (%s)", ErrThreshold, role, r.pendingLine(role))
		}
	}
	snapDue := !r.snapshot.Signed.Expires.After(soon) || slices.Contains(renew, RoleSnapshot)
	tsDue := !r.timestamp.Signed.Expires.After(soon) || slices.Contains(renew, RoleTimestamp)
	switch {
	case rootOK || len(ready) > 0 || snapDue:
		r.needFreshTop = true
		saved, err := r.save()
		if err != nil {
			return nil, err
		}
		res.Renewed = saved.Published
	case tsDue:
		if err := r.freshTimestamp(); err != nil {
			return nil, err
		}
		res.Renewed = []string{RoleTimestamp}
	}
	check := func(role string, exp time.Time) {
		if !exp.After(soon) && !slices.Contains(res.Renewed, role) {
			res.Expiring = append(res.Expiring, fmt.Sprintf("%s expires %s (within %s): sign it again with its keys (trustd repo refresh DIR --role %s --key KEY)", role, exp.Format(time.RFC3339), margin, role))
		}
	}
	check(RoleRoot, r.root.Signed.Expires)
	names := slices.Sorted(maps.Keys(r.roles))
	for _, n := range names {
		check(n, r.roles[n].Signed.Expires)
	}
	check(RoleSnapshot, r.snapshot.Signed.Expires)
	check(RoleTimestamp, r.timestamp.Signed.Expires)
	return res, nil
}

func (r *Repo) pendingLine(role string) string {
	for _, l := range r.pendingSummary() {
		if len(l) > len(role) && l[:len(role)+1] == role+" " {
			return l
		}
	}
	return "not pending"
}

// freshTimestamp publishes a new timestamp for the same snapshot.
func (r *Repo) freshTimestamp() error {
	ts := clone(r.timestamp, func() *metadata.Metadata[metadata.TimestampType] { return metadata.Timestamp() })
	ts.Signed.Version++
	ts.Signed.Expires = r.now.Add(r.expiry.Timestamp)
	ts.ClearSignatures()
	if err := signTop(ts, r.root, RoleTimestamp, r.ring); err != nil {
		return err
	}
	data, err := ts.ToBytes(false)
	if err != nil {
		return err
	}
	if err := r.publishFiles([]staged{{name: "timestamp.json", data: data}}); err != nil {
		return err
	}
	r.timestamp = ts
	return nil
}

// SignMetadata adds signatures with the given key files to role's pending
// metadata, and publishes what is then ready. Each key must be one of the
// role's keys (for root: of the current or the next root), and the role
// must have pending metadata; otherwise nothing changes.
func (r *Repo) SignMetadata(role string, keys []string) (*Saved, error) {
	if len(keys) == 0 {
		return nil, errors.New("no key given: --key KEYFILE")
	}
	// A role in hash bins is signed with its bins: the same keys.
	roles := r.pendingBins(role)
	if role == RoleRoot && r.pendingRoot != nil || role != RoleRoot && r.pending[role] != nil {
		roles = append([]string{role}, roles...)
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("role %s has no pending metadata: nothing to sign (trustd repo status DIR lists what waits)", role)
	}
	defer r.keepRing()()
	if err := r.useKeys(role, keys); err != nil {
		return nil, err
	}
	for _, name := range roles {
		if err := r.signPending(name); err != nil {
			return nil, err
		}
	}
	return r.save()
}

// Rotated says what Rotate did.
type Rotated struct {
	Saved
	// NewKeys are the new private key files; Retired the old ones, moved
	// to the key directory's retired/ once the new root is published.
	NewKeys, Retired []string
}

// Rotate replaces a top-level role's keys with a new key (root: as many
// new keys as it had, with the same threshold) in a new root version,
// signed by the current root's threshold and the new root's. For targets,
// snapshot and timestamp the role is signed again with the new key in the
// same publication. When the root keys at hand do not meet both
// thresholds, the new root stays pending (sign-metadata adds the others).
// A delegated role's keys are its team's: delegate it again instead.
func (r *Repo) Rotate(role string) (*Rotated, error) {
	switch role {
	case RoleRoot, RoleTargets, RoleSnapshot, RoleTimestamp:
	default:
		return nil, fmt.Errorf("role %s: only root, targets, snapshot and timestamp keys are rotated here; a delegated role's keys are its team's (trustd repo delegate DIR %s --key NEW.pub ...)", role, role)
	}
	if r.pendingRoot != nil {
		return nil, errors.New("a new root is already pending: sign or publish it first (trustd repo status DIR)")
	}
	old := slices.Clone(r.root.Signed.Roles[role].KeyIDs)
	n, th := len(old), r.root.Signed.Roles[role].Threshold
	if role != RoleRoot {
		n, th = 1, 1
	}
	root := r.workingRoot()
	root.Signed.Expires = r.now.Add(r.expiry.Root)
	for _, id := range old {
		if err := root.Signed.RevokeKey(id, role); err != nil {
			return nil, err
		}
	}
	out := &Rotated{}
	for range n {
		k, err := writeKeyFile(filepath.Join(r.KeyDir, fmt.Sprintf(".new-%s-%d.key", role, len(out.NewKeys))), r.cfg.KeyType, r.ring.passphrase)
		if err != nil {
			return nil, err
		}
		final := filepath.Join(r.KeyDir, role+"-"+short(k.ID)+".key")
		if err := os.Rename(k.Path, final); err != nil {
			return nil, err
		}
		k.Path = final
		r.ring.keys[k.ID] = k
		out.NewKeys = append(out.NewKeys, final)
		if err := root.Signed.AddKey(k.Public, role); err != nil {
			return nil, err
		}
	}
	root.Signed.Roles[role].Threshold = th
	if err := r.signPending(RoleRoot); err != nil {
		return nil, err
	}
	if role == RoleTargets {
		w := r.workingFor(RoleTargets)
		r.pending[RoleTargets] = w
		r.changed(RoleTargets, w)
		if err := r.signPending(RoleTargets); err != nil {
			return nil, err
		}
		if err := r.rekeyBins(RoleTargets); err != nil {
			return nil, err
		}
	}
	saved, err := r.save()
	if err != nil {
		return nil, err
	}
	out.Saved = *saved
	if slices.Contains(saved.Published, RoleRoot) {
		if err := os.MkdirAll(filepath.Join(r.KeyDir, "retired"), 0o700); err != nil {
			return out, err
		}
		for _, id := range old {
			if k := r.ring.keys[id]; k != nil && filepath.Dir(k.Path) == filepath.Clean(r.KeyDir) {
				to := filepath.Join(r.KeyDir, "retired", filepath.Base(k.Path))
				if err := os.Rename(k.Path, to); err != nil {
					return out, err
				}
				out.Retired = append(out.Retired, to)
			}
		}
	}
	return out, nil
}
