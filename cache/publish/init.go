package publish

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// InitOptions shape a new repository.
type InitOptions struct {
	// KeyType is KeyEd25519 (default) or KeyECDSAP256.
	KeyType string
	// RootKeys is the number of root keys (default 1), RootThreshold how
	// many must sign a root (default 1).
	RootKeys, RootThreshold int
	// Expiry per role; zero fields take DefaultExpiry's.
	Expiry Expiry
	// KeyDir is where the private keys go (default DIR/keys). It must not
	// be inside the published tree DIR/metadata.
	KeyDir string
	// Passphrase, when set, seals every private key.
	Passphrase []byte
	// Now is the signing time (default time.Now()).
	Now time.Time
	// BinsThreshold is the number of targets past which a role's targets
	// move into succinct hash bins (0: DefaultBinsThreshold), recorded in
	// repo.json.
	BinsThreshold int
}

// Initialized is what Init made.
type Initialized struct {
	// RootKeyIDs are the root keys' IDs.
	RootKeyIDs []string
	// RootPath is the first root metadata, to pin in the policy.
	RootPath string
	// KeyFiles are the private key files written.
	KeyFiles []string
}

// SourceBlock returns the policy.toml [[source]] block for the repository
// (the URL is a placeholder: where DIR/metadata is served).
func (in *Initialized) SourceBlock(name string) string {
	return fmt.Sprintf(`[[source]]
name = %q
kind = "tuf"
url = "https://tuf.example/metadata/"   # where DIR/metadata/ is served
root = %q   # a copy of %s on each node
repositories = ["registry.example/**"]
`, name, "/etc/trustd/"+name+"-root.json", filepath.Base(in.RootPath))
}

// Init creates a repository in dir: keys for root (RootKeys of them),
// targets, snapshot and timestamp in the key directory (0700, files 0600),
// and version 1 of every role, published in dir/metadata with consistent
// snapshots. dir must not hold a repository yet.
func Init(dir string, o InitOptions) (*Initialized, error) {
	if o.RootKeys == 0 {
		o.RootKeys = 1
	}
	if o.RootThreshold == 0 {
		o.RootThreshold = 1
	}
	if o.RootKeys < 1 || o.RootKeys > 64 || o.RootThreshold < 1 || o.RootThreshold > o.RootKeys {
		return nil, fmt.Errorf("root threshold %d of %d keys: want 1 <= threshold <= keys <= 64", o.RootThreshold, o.RootKeys)
	}
	if o.KeyType == "" {
		o.KeyType = KeyEd25519
	}
	if o.BinsThreshold < 0 {
		return nil, fmt.Errorf("bins threshold %d: want a positive number of targets", o.BinsThreshold)
	}
	if o.KeyType != KeyEd25519 && o.KeyType != KeyECDSAP256 {
		return nil, fmt.Errorf("key type %q: want %s or %s", o.KeyType, KeyEd25519, KeyECDSAP256)
	}
	e := DefaultExpiry
	for _, p := range []struct{ in, out *time.Duration }{{&o.Expiry.Root, &e.Root}, {&o.Expiry.Targets, &e.Targets}, {&o.Expiry.Snapshot, &e.Snapshot}, {&o.Expiry.Timestamp, &e.Timestamp}} {
		if *p.in < 0 {
			return nil, errors.New("an expiry must be positive")
		}
		if *p.in > 0 {
			*p.out = *p.in
		}
	}
	if e.Timestamp > e.Snapshot || e.Snapshot > e.Root {
		return nil, fmt.Errorf("expiry: timestamp (%s) must not outlive snapshot (%s), nor snapshot root (%s)", e.Timestamp, e.Snapshot, e.Root)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	keyDir := o.KeyDir
	if keyDir == "" {
		keyDir = filepath.Join(abs, "keys")
	}
	if keyDir, err = filepath.Abs(keyDir); err != nil {
		return nil, err
	}
	meta := filepath.Join(abs, "metadata")
	if rel, err := filepath.Rel(meta, keyDir); err == nil && (rel == "." || !strings.HasPrefix(rel, "..")) {
		return nil, fmt.Errorf("key directory %s is inside the published tree %s: private keys must never be served", keyDir, meta)
	}
	if _, err := os.Stat(filepath.Join(abs, "repo.json")); err == nil {
		return nil, fmt.Errorf("%s already holds a repository (repo.json)", dir)
	}
	if ents, err := os.ReadDir(meta); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%s is not empty: not making a repository over it", meta)
	}
	if ents, err := os.ReadDir(keyDir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("key directory %s is not empty: not mixing keys of two repositories", keyDir)
	}
	if err := os.MkdirAll(meta, 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(keyDir, 0o700); err != nil {
		return nil, err
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC().Truncate(time.Second)

	out := &Initialized{RootPath: filepath.Join(meta, "1.root.json")}
	root := metadata.Root(now.Add(e.Root))
	root.Signed.ConsistentSnapshot = true
	ring := &keyRing{keys: map[string]*PrivateKey{}, passphrase: o.Passphrase}
	newKey := func(role string) (*PrivateKey, error) {
		k, err := writeKeyFile(filepath.Join(keyDir, fmt.Sprintf("%s-%d.key", role, len(out.KeyFiles))), o.KeyType, o.Passphrase)
		if err != nil {
			return nil, err
		}
		// Named by key ID once written, so that a name says whose it is.
		final := filepath.Join(keyDir, role+"-"+short(k.ID)+".key")
		if err := os.Rename(k.Path, final); err != nil {
			return nil, err
		}
		k.Path = final
		out.KeyFiles = append(out.KeyFiles, final)
		ring.keys[k.ID] = k
		return k, root.Signed.AddKey(k.Public, role)
	}
	for range o.RootKeys {
		k, err := newKey(RoleRoot)
		if err != nil {
			return nil, err
		}
		out.RootKeyIDs = append(out.RootKeyIDs, k.ID)
	}
	root.Signed.Roles[RoleRoot].Threshold = o.RootThreshold
	for _, role := range []string{RoleTargets, RoleSnapshot, RoleTimestamp} {
		if _, err := newKey(role); err != nil {
			return nil, err
		}
	}
	if err := syncDir(keyDir); err != nil {
		return nil, err
	}
	signers, err := ring.signers(root.Signed.Roles[RoleRoot].KeyIDs)
	if err != nil {
		return nil, err
	}
	for _, s := range signers {
		if _, err := root.Sign(s); err != nil {
			return nil, err
		}
	}
	targets := metadata.Targets(now.Add(e.Targets))
	ts, err := ring.signers(root.Signed.Roles[RoleTargets].KeyIDs)
	if err != nil {
		return nil, err
	}
	if _, err := targets.Sign(ts[0]); err != nil {
		return nil, err
	}
	rootData, err := root.ToBytes(false)
	if err != nil {
		return nil, err
	}
	targetsData, err := targets.ToBytes(false)
	if err != nil {
		return nil, err
	}
	snap := metadata.Snapshot(now.Add(e.Snapshot))
	snap.Signed.Meta["targets.json"] = metaFile(1, targetsData)
	if err := signTop(snap, root, RoleSnapshot, ring); err != nil {
		return nil, err
	}
	snapData, err := snap.ToBytes(false)
	if err != nil {
		return nil, err
	}
	tsm := metadata.Timestamp(now.Add(e.Timestamp))
	tsm.Signed.Meta["snapshot.json"] = metaFile(1, snapData)
	if err := signTop(tsm, root, RoleTimestamp, ring); err != nil {
		return nil, err
	}
	tsData, err := tsm.ToBytes(false)
	if err != nil {
		return nil, err
	}
	r := &Repo{Dir: abs}
	if err := r.publishFiles([]staged{{name: "1.targets.json", data: targetsData}, {name: "1.root.json", data: rootData}, {name: "1.snapshot.json", data: snapData}, {name: "timestamp.json", data: tsData}}); err != nil {
		return nil, err
	}
	cfg := config{Format: 1, KeyDir: keyDir, KeyType: o.KeyType, Expires: map[string]string{
		RoleRoot: e.Root.String(), RoleTargets: e.Targets.String(), RoleSnapshot: e.Snapshot.String(), RoleTimestamp: e.Timestamp.String(),
	}, BinsThreshold: o.BinsThreshold}
	if keyDir == filepath.Join(abs, "keys") {
		cfg.KeyDir = "keys" // the repository can be moved with its keys
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	// repo.json last: a directory without it is not a repository, and
	// init can be run again after a crash (once the half-made files are
	// removed).
	if err := writeFile(filepath.Join(abs, "repo.json"), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	return out, nil
}
