package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trustd/trustd/cache/cosign"
)

// TrustedRootTarget is the TUF target that distributes Sigstore's trusted
// root.
const TrustedRootTarget = "trusted_root.json"

// SigstoreRoot is a sigstore source's trusted root for keyless signatures:
// a trusted_root.json the policy pins, or one a TUF repository distributes
// (like Sigstore's public one). The TUF repository's metadata is kept in
// the cache and refreshed as a tuf source's is (root rotation, rollback
// and freeze protection: TUFSource); the target itself is fetched from
// <url>targets/, checked against the length and hashes that the verified
// top-level targets metadata gives it, and cached beside the metadata.
// Offline, Load uses the cached copy, checked again.
type SigstoreRoot struct {
	// Pinned is the pinned trusted_root.json (nil when TUF distributes it).
	Pinned []byte
	// TUF is the repository distributing TrustedRootTarget.
	TUF *TUFSource
	// Root is what the source's verifier reads; Load and Sync set it.
	Root *cosign.Root

	loaded [sha256.Size]byte // of the trusted_root.json in Root
}

func (r *SigstoreRoot) targetPath() string { return filepath.Join(r.TUF.Dir, TrustedRootTarget) }

// Load sets Root from the pinned file, or from the cached TUF metadata and
// target, verified offline (a nil r does nothing).
func (r *SigstoreRoot) Load() error {
	if r == nil {
		return nil
	}
	var tr *root.TrustedRoot
	var sum [sha256.Size]byte
	var err error
	if r.TUF == nil {
		tr, err = cosign.ParseTrustedRoot(r.Pinned)
		sum = sha256.Sum256(r.Pinned)
	} else if tr, sum, err = r.loadTUF(nil); err != nil {
		err = fmt.Errorf("trusted root of source %q: %w", r.TUF.Name, err)
	}
	if err != nil {
		r.Root.Set(nil, err) // not a nil *root.TrustedRoot in an interface
		return err
	}
	r.Root.Set(tr, nil)
	r.loaded = sum // the TUF root's, so that Sync sees it unchanged
	return nil
}

// loadTUF returns the cached target that the cached, verified metadata
// names; with a non-nil ctx, when the cached copy is missing or other
// bytes, it fetches it.
func (r *SigstoreRoot) loadTUF(ctx context.Context) (*root.TrustedRoot, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	b, err := r.TUF.readBundle()
	if err != nil {
		return nil, sum, err
	}
	tm, _, err := r.TUF.verifyBundle(b, time.Time{})
	if err != nil {
		return nil, sum, fmt.Errorf("cached TUF metadata: %w", err)
	}
	tf := tm.Targets[metadata.TARGETS].Signed.Targets[TrustedRootTarget]
	if tf == nil {
		return nil, sum, fmt.Errorf("the TUF repository's targets metadata lists no %s", TrustedRootTarget)
	}
	if tf.Length <= 0 || tf.Length > cosign.MaxTrustedRoot {
		return nil, sum, fmt.Errorf("%s: length %d in the targets metadata (at most %d)", TrustedRootTarget, tf.Length, cosign.MaxTrustedRoot)
	}
	data, err := readFileLimit(r.targetPath(), cosign.MaxTrustedRoot)
	if err == nil {
		err = tf.VerifyLengthHashes(data)
	}
	if err != nil && ctx != nil {
		data, err = r.fetch(ctx, tm.Root.Signed.ConsistentSnapshot, tf)
	}
	if err != nil {
		return nil, sum, fmt.Errorf("%s is not the one the verified targets metadata names (length %d, sha256 %s): %w", TrustedRootTarget, tf.Length, hex.EncodeToString(tf.Hashes["sha256"]), err)
	}
	tr, err := cosign.ParseTrustedRoot(data)
	return tr, sha256.Sum256(data), err
}

// fetch downloads the target, checks it and caches it.
func (r *SigstoreRoot) fetch(ctx context.Context, consistent bool, tf *metadata.TargetFiles) ([]byte, error) {
	name := TrustedRootTarget
	if consistent {
		sum, ok := tf.Hashes["sha256"]
		if !ok {
			return nil, errors.New("no sha256 hash in the targets metadata")
		}
		name = hex.EncodeToString(sum) + "." + name
	}
	data, err := r.TUF.Fetcher.Fetch(ctx, r.TUF.URL+"targets/"+name, tf.Length)
	if err != nil {
		return nil, err
	}
	if err := tf.VerifyLengthHashes(data); err != nil {
		return nil, fmt.Errorf("the repository served other bytes: %w", err)
	}
	if _, err := cosign.ParseTrustedRoot(data); err != nil {
		return nil, err
	}
	if err := WriteFileAtomic(r.targetPath(), data, 0o600); err != nil {
		return nil, err
	}
	return data, nil
}

// Sync refreshes the TUF repository's metadata (TUFSource.Sync), then the
// target when the metadata names other bytes than the cached copy, sets
// Root and reports whether it changed. On error Root keeps what it had (a
// nil r, or a pinned root, does nothing). Not safe for concurrent use.
func (r *SigstoreRoot) Sync(ctx context.Context, now time.Time) (bool, error) {
	if r == nil || r.TUF == nil {
		return false, nil
	}
	if _, err := r.TUF.Sync(ctx, now); err != nil {
		return false, fmt.Errorf("trusted root of source %q: TUF repository: %w", r.TUF.Name, err)
	}
	tr, sum, err := r.loadTUF(ctx)
	if err != nil {
		return false, fmt.Errorf("trusted root of source %q: %w", r.TUF.Name, err)
	}
	_, had := r.Root.Material()
	changed := had != nil || sum != r.loaded
	r.Root.Set(tr, nil)
	r.loaded = sum
	return changed, nil
}
