package publish

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// Binding is a tag bound to the manifest (or index) it names: one target.
type Binding struct {
	// Name is the target name, "<normalised repository>:<tag>".
	Name string
	// Digest and Length are those of the manifest or index bytes.
	Digest digest.Digest
	Length int64
}

// ErrNotCovered is matched when a role's paths do not cover a target.
var ErrNotCovered = errors.New("not in the role's paths")

// TargetName returns the target name trustd's TUF source reads for an
// image reference with a tag: "<normalised repository>:<tag>" (registry
// host in canonical lower case, Docker Hub names in full). A reference
// without a tag is an error; a digest in it is returned as want.
func TargetName(image string) (name string, want digest.Digest, err error) {
	ref, err := policy.ParseRef(image)
	if err != nil {
		return "", "", err
	}
	if ref.Tag == "" {
		return "", "", fmt.Errorf("image %q has no tag: a target binds a tag to a digest", image)
	}
	name = ref.Repo + ":" + ref.Tag
	if r, t, err := verify.SplitTargetName(name); err != nil || r != ref.Repo || t != ref.Tag {
		return "", "", fmt.Errorf("image %q: its target name %q would not read back", image, name)
	}
	return name, ref.Digest, nil
}

// NewBinding checks a digest and length given by hand for an image.
func NewBinding(image string, d digest.Digest, length int64) (Binding, error) {
	name, want, err := TargetName(image)
	if err != nil {
		return Binding{}, err
	}
	if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
		return Binding{}, fmt.Errorf("digest %q: want sha256:<64 hex digits>", d)
	}
	if want != "" && want != d {
		return Binding{}, fmt.Errorf("image %q names digest %s, not %s", image, want, d)
	}
	if length <= 0 {
		return Binding{}, fmt.Errorf("image %q: the manifest length must be given and positive (got %d)", image, length)
	}
	return Binding{Name: name, Digest: d, Length: length}, nil
}

// SignResult says what Sign or Unsign did.
type SignResult struct {
	Saved
	// Changed lists the targets added, replaced or removed.
	Changed []string
}

// Sign binds each target in role (RoleTargets or a delegated role) and
// signs the role with the keys at hand; keys, when given, are the only
// keys used for the role, and each must be one the role lists. Nothing
// changes when a target is outside the role's paths, a key is not the
// role's, or no key at hand is the role's. When the role's threshold is
// met the repository is published, else the role stays pending.
func (r *Repo) Sign(role string, bs []Binding, keys []string) (*SignResult, error) {
	if len(bs) == 0 {
		return nil, errors.New("no image to sign")
	}
	return r.editTargets(role, keys, func(t *metadata.Metadata[metadata.TargetsType]) ([]string, error) {
		var changed []string
		for _, b := range bs {
			c, err := r.bind(role, t, b, nil)
			if err != nil {
				return nil, err
			}
			if c {
				changed = append(changed, b.Name+" → "+string(b.Digest))
			}
		}
		return changed, nil
	})
}

// bind sets b as a target of role's working metadata t, with custom as
// the target's custom field (nil: none), and reports whether that changed
// it. A target outside role's paths is an error.
func (r *Repo) bind(role string, t *metadata.Metadata[metadata.TargetsType], b Binding, custom json.RawMessage) (bool, error) {
	if err := r.covers(role, b.Name); err != nil {
		return false, err
	}
	h, err := hex.DecodeString(b.Digest.Encoded())
	if err != nil || b.Digest.Algorithm() != digest.SHA256 {
		return false, fmt.Errorf("target %s: digest %s is not sha256", b.Name, b.Digest)
	}
	if old := t.Signed.Targets[b.Name]; old != nil && old.Length == b.Length && hex.EncodeToString(old.Hashes["sha256"]) == b.Digest.Encoded() && sameCustom(old.Custom, custom) {
		return false, nil
	}
	tf := metadata.TargetFile()
	tf.Length = b.Length
	tf.Hashes = metadata.Hashes{"sha256": h}
	if custom != nil {
		c := slices.Clone(custom)
		tf.Custom = (*json.RawMessage)(&c)
	}
	t.Signed.Targets[b.Name] = tf
	return true, nil
}

func sameCustom(old *json.RawMessage, c json.RawMessage) bool {
	if old == nil || c == nil {
		return old == nil && c == nil
	}
	return bytes.Equal(*old, c)
}

// Unsign removes each image's target from role. An image that the role
// does not sign is an error, and nothing changes.
func (r *Repo) Unsign(role string, images []string, keys []string) (*SignResult, error) {
	if len(images) == 0 {
		return nil, errors.New("no image to unsign")
	}
	return r.editTargets(role, keys, func(t *metadata.Metadata[metadata.TargetsType]) ([]string, error) {
		var changed []string
		for _, img := range images {
			name, _, err := TargetName(img)
			if err != nil {
				return nil, err
			}
			if t.Signed.Targets[name] == nil {
				return nil, fmt.Errorf("role %s does not sign %s", role, name)
			}
			delete(t.Signed.Targets, name)
			changed = append(changed, name)
		}
		return changed, nil
	})
}

// editTargets applies edit to a copy of role's working metadata; only
// when it succeeds and the role can be signed is the copy kept and saved.
func (r *Repo) editTargets(role string, keys []string, edit func(*metadata.Metadata[metadata.TargetsType]) ([]string, error)) (*SignResult, error) {
	defer r.keepRing()()
	changed, undo, err := r.stageTargets(role, keys, edit)
	if err != nil {
		return nil, err
	}
	if len(changed) == 0 {
		return &SignResult{Saved: Saved{Pending: r.pendingSummary()}}, nil
	}
	saved, err := r.save()
	if err != nil {
		undo()
		return nil, err
	}
	return &SignResult{Saved: *saved, Changed: changed}, nil
}

// stageTargets applies edit to a copy of role's working metadata and, when
// it changed something, keeps the copy as role's pending version, signed
// with the keys at hand, without saving; undo puts back what was pending
// before. On error, or when nothing changed, nothing is kept. The caller
// restores the key ring (keepRing).
func (r *Repo) stageTargets(role string, keys []string, edit func(*metadata.Metadata[metadata.TargetsType]) ([]string, error)) (changed []string, undo func(), err error) {
	if role == "" {
		role = RoleTargets
	}
	if role != RoleTargets {
		if err := CheckRoleName(role); err != nil {
			return nil, nil, err
		}
		if d, _ := r.delegation(role); d == nil {
			return nil, nil, fmt.Errorf("role %s: %w (delegate it first: trustd repo delegate DIR %s ...)", role, ErrNoRole, role)
		}
	}
	if owner := r.binOwner(role); owner != "" {
		return nil, nil, fmt.Errorf("role %s is a hash bin of role %s: sign into %s (--role %s)", role, owner, owner, owner)
	}
	if err := r.useKeys(role, keys); err != nil {
		return nil, nil, err
	}
	before := maps.Clone(r.pending)
	undo = func() { r.pending = maps.Clone(before) }
	w := r.workingFor(role)
	if w == nil {
		return nil, nil, fmt.Errorf("role %s: %w", role, ErrNoRole)
	}
	var touched []string
	if succinct(w) != nil {
		changed, touched, err = r.editBinned(role, w, edit)
	} else {
		changed, err = edit(w)
		touched = []string{role}
		if err == nil && len(changed) > 0 {
			r.pending[role] = w
			r.changed(role, w)
			// TUF: a role delegates to named roles or to bins, not both.
			if len(w.Signed.Targets) > r.binsThreshold && (w.Signed.Delegations == nil || len(w.Signed.Delegations.Roles) == 0) {
				touched, err = r.putInBins(role, w, w.Signed.Targets)
			}
		}
	}
	if err != nil || len(changed) == 0 {
		undo()
		return nil, undo, err
	}
	for _, name := range touched {
		if err := r.signPending(name); err != nil {
			undo()
			return nil, nil, err
		}
	}
	return changed, undo, nil
}

// workingFor returns a copy of role's working metadata (not yet kept).
func (r *Repo) workingFor(role string) *metadata.Metadata[metadata.TargetsType] {
	if p := r.pending[role]; p != nil {
		return clone(p, func() *metadata.Metadata[metadata.TargetsType] { return metadata.Targets() })
	}
	pub := r.roles[role]
	if pub == nil {
		if d, _ := r.delegation(role); d != nil {
			// Delegated, never signed yet: version 1 starts empty.
			return metadata.Targets(r.now.Add(r.expiry.Targets))
		}
		return nil
	}
	c := clone(pub, func() *metadata.Metadata[metadata.TargetsType] { return metadata.Targets() })
	c.Signed.Version++
	c.ClearSignatures()
	return c
}

func (r *Repo) restore(role string, prev *metadata.Metadata[metadata.TargetsType], had bool) {
	if had {
		r.pending[role] = prev
	} else {
		delete(r.pending, role)
	}
}

// keepRing returns a function that puts back the key ring as it is now:
// keys given for one command are used for that command only.
func (r *Repo) keepRing() func() {
	ring := r.ring
	return func() { r.ring = ring }
}

// useKeys restricts the ring to the given key files for role (each must
// be one of the role's keys); with none given, the key directory must
// hold at least one of the role's keys.
func (r *Repo) useKeys(role string, paths []string) error {
	ids, th, _ := r.roleKeys(role)
	if len(paths) == 0 {
		for _, id := range ids {
			if r.ring.keys[id] != nil {
				return nil
			}
		}
		return fmt.Errorf("%w: none of role %s's %d keys (threshold %d) is in %s; give the role's key with --key", ErrThreshold, role, len(ids), th, r.KeyDir)
	}
	given, err := (&keyRing{keys: map[string]*PrivateKey{}, passphrase: r.ring.passphrase}).add(paths)
	if err != nil {
		return err
	}
	only := &keyRing{keys: map[string]*PrivateKey{}, passphrase: r.ring.passphrase}
	for _, k := range given {
		if !slices.Contains(ids, k.ID) {
			return fmt.Errorf("key %s (%s) is not one of role %s's keys: signing with it would not count", short(k.ID), k.Path, role)
		}
		only.keys[k.ID] = k
	}
	// The role is signed with the given keys only; other roles (snapshot,
	// timestamp) still with the key directory's.
	for id, k := range r.ring.keys {
		if !slices.Contains(ids, id) {
			only.keys[id] = k
		}
	}
	r.ring = only
	return nil
}

// covers checks that a search for name reaches role: the top-level
// targets role covers every name; a delegated role the names in the paths
// of its delegation (and of each delegation above it).
func (r *Repo) covers(role, name string) error {
	for role != RoleTargets {
		d, _ := r.delegation(role)
		if d == nil {
			return fmt.Errorf("role %s: %w", role, ErrNoRole)
		}
		if !verify.MatchTUFDelegation(d, name) {
			return fmt.Errorf("target %s is %w %s (paths %s): a client would never look for it there", name, ErrNotCovered, role, strings.Join(d.Paths, " "))
		}
		p := ""
		for q := range r.delegators(role) {
			p = q
		}
		role = p
	}
	return nil
}
