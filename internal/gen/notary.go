package gen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/trustd/trustd/internal/testnotary"
	"github.com/trustd/trustd/verify/notary"
)

const roleReleases = "targets/releases"

// NotaryKeys are the keys that sign generated Notary repositories. One set
// signs any number of GUNs: each GUN gets its own root certificate (its
// common name must be the GUN), all for the same root key, issued by CA
// when there is one (a `[[source.pin]] ca = ...` pin) or self-signed.
type NotaryKeys struct {
	Root, Targets, Snapshot, Timestamp, Releases *ecdsa.PrivateKey
	// CA issues the root certificates when set.
	CA    *x509.Certificate
	CAKey *ecdsa.PrivateKey
}

// NewNotaryKeys makes fresh ECDSA P-256 keys, and a CA when withCA.
func NewNotaryKeys(withCA bool, now time.Time) (*NotaryKeys, error) {
	k := &NotaryKeys{}
	for _, p := range []**ecdsa.PrivateKey{&k.Root, &k.Targets, &k.Snapshot, &k.Timestamp, &k.Releases} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		*p = key
	}
	if withCA {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		k.CA, err = testnotary.Cert(key, testnotary.CertOptions{
			CommonName: "trustd generated CA", NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.AddDate(20, 0, 0), CA: true,
		})
		if err != nil {
			return nil, err
		}
		k.CAKey = key
	}
	return k, nil
}

// CAPEM is the CA certificate in PEM, for a policy pin; nil without a CA.
func (k *NotaryKeys) CAPEM() []byte {
	if k.CA == nil {
		return nil
	}
	return testnotary.CertPEM(k.CA)
}

// rootKey is the root key of gun: the root key with a certificate for gun.
func (k *NotaryKeys) rootKey(gun string, now time.Time) (*testnotary.Key, error) {
	o := testnotary.CertOptions{CommonName: gun, NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.AddDate(10, 0, 0)}
	if k.CA != nil {
		o.Issuer, o.IssuerKey = k.CA, k.CAKey
	}
	return testnotary.CertKey(k.Root, o)
}

func signNotary(signed map[string]any, key *testnotary.Key) ([]byte, error) {
	return testnotary.Sign(signed, testnotary.Signature{Key: key})
}

// NotaryOptions shape one generated Notary repository.
type NotaryOptions struct {
	// GUN is the repository's globally unique name (docker.io/corp/app).
	GUN string
	// Tags is how many tags the top-level targets role signs; Releases how
	// many the targets/releases delegation signs (0: no delegation).
	// Releases tags are the first Releases of the targets tags, signed
	// for the same digests, as `docker trust sign` with a signer leaves
	// them.
	Tags, Releases int
	// TagName names tag j; default NotaryTagName.
	TagName func(j int) string
	// SHA512 adds a sha512 hash to each target (the notary CLI's addhash
	// --sha256 writes sha256 only).
	SHA512 bool
	// Now is the signing time; Expires how long targets, snapshot and root
	// stay valid (default 1 year), TimestampExpires the timestamp (default
	// 14 days, Notary's default).
	Now              time.Time
	Expires          time.Duration
	TimestampExpires time.Duration
	// Version is the version of every role (default 1), but the root's
	// when SameRootAs is set.
	Version int
	// SameRootAs, when set, is an earlier version of the repository whose
	// root.json is kept: the other roles are re-signed under it, as a
	// publisher does who signs or revokes tags.
	SameRootAs *NotaryRepo
}

// NotaryTagName is the default name of tag j of a generated Notary
// repository of tags tags: BigTag beyond 1000 tags, Tag otherwise.
func NotaryTagName(tags, j int) string {
	if tags > 1000 {
		return BigTag(j)
	}
	return Tag(j)
}

// NotaryRepo is a generated, signed Notary repository.
type NotaryRepo struct {
	GUN string
	// Files are the metadata files as a Notary server serves them.
	Files notary.Files
	// RootKeyID is the ID of the root certificate key (what a root_keys
	// pin names).
	RootKeyID string
	// Tags are the tags signed by targets, in order.
	Tags []string
}

// NewNotaryRepo generates and signs one repository with keys.
func NewNotaryRepo(keys *NotaryKeys, o NotaryOptions) (*NotaryRepo, error) {
	if o.GUN == "" {
		return nil, errors.New("gen: NotaryOptions.GUN is empty")
	}
	if o.Releases > o.Tags {
		return nil, fmt.Errorf("gen: %d releases tags but only %d tags", o.Releases, o.Tags)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Expires <= 0 {
		o.Expires = 365 * 24 * time.Hour
	}
	if o.TimestampExpires <= 0 {
		o.TimestampExpires = 14 * 24 * time.Hour
	}
	if o.Version <= 0 {
		o.Version = 1
	}
	name := o.TagName
	if name == nil {
		name = func(j int) string { return NotaryTagName(o.Tags, j) }
	}
	expires := testnotary.Expires(o.Now.Add(o.Expires))

	rootKey, err := keys.rootKey(o.GUN, o.Now)
	if err != nil {
		return nil, err
	}
	pub := map[string]*testnotary.Key{}
	for role, k := range map[string]*ecdsa.PrivateKey{"targets": keys.Targets, "snapshot": keys.Snapshot, "timestamp": keys.Timestamp, roleReleases: keys.Releases} {
		if pub[role], err = testnotary.PKIXKey(testnotary.KeyECDSA, k); err != nil {
			return nil, err
		}
	}
	r := &NotaryRepo{GUN: o.GUN, RootKeyID: rootKey.ID, Files: notary.Files{Delegations: map[string][]byte{}}}

	rootSigned := map[string]any{
		"_type": "Root", "consistent_snapshot": false, "version": o.Version, "expires": testnotary.Expires(o.Now.Add(10 * 365 * 24 * time.Hour)),
		"keys": map[string]any{
			rootKey.ID:          rootKey.JSON(),
			pub["targets"].ID:   pub["targets"].JSON(),
			pub["snapshot"].ID:  pub["snapshot"].JSON(),
			pub["timestamp"].ID: pub["timestamp"].JSON(),
		},
		"roles": map[string]any{
			"root":      map[string]any{"keyids": []any{rootKey.ID}, "threshold": 1},
			"targets":   map[string]any{"keyids": []any{pub["targets"].ID}, "threshold": 1},
			"snapshot":  map[string]any{"keyids": []any{pub["snapshot"].ID}, "threshold": 1},
			"timestamp": map[string]any{"keyids": []any{pub["timestamp"].ID}, "threshold": 1},
		},
	}
	if r.Files.Root, err = signNotary(rootSigned, rootKey); err != nil {
		return nil, err
	}
	if o.SameRootAs != nil {
		r.Files.Root, r.RootKeyID = o.SameRootAs.Files.Root, o.SameRootAs.RootKeyID
	}

	targetsMeta := make(map[string]any, o.Tags)
	releasesMeta := make(map[string]any, o.Releases)
	r.Tags = make([]string, o.Tags)
	for j := range o.Tags {
		tag := name(j)
		r.Tags[j] = tag
		t := targetFor(o.GUN, tag)
		hashes := map[string]any{"sha256": base64.StdEncoding.EncodeToString(t.sum[:])}
		if o.SHA512 {
			s := sha512.Sum512(Manifest(o.GUN, tag))
			hashes["sha512"] = base64.StdEncoding.EncodeToString(s[:])
		}
		m := map[string]any{"length": t.length, "hashes": hashes}
		targetsMeta[tag] = m
		if j < o.Releases {
			releasesMeta[tag] = m
		}
	}
	delegations := map[string]any{"keys": map[string]any{}, "roles": []any{}}
	if o.Releases > 0 {
		rel := pub[roleReleases]
		delegations = map[string]any{
			"keys":  map[string]any{rel.ID: rel.JSON()},
			"roles": []any{map[string]any{"name": roleReleases, "keyids": []any{rel.ID}, "threshold": 1, "paths": []any{""}}},
		}
	}
	if r.Files.Targets, err = signNotary(map[string]any{
		"_type": "Targets", "version": o.Version, "expires": expires, "targets": targetsMeta, "delegations": delegations,
	}, pub["targets"]); err != nil {
		return nil, err
	}
	snapMeta := map[string]any{"root": testnotary.FileMeta(r.Files.Root), "targets": testnotary.FileMeta(r.Files.Targets)}
	if o.Releases > 0 {
		b, err := signNotary(map[string]any{
			"_type": "Targets", "version": o.Version, "expires": expires, "targets": releasesMeta,
			"delegations": map[string]any{"keys": map[string]any{}, "roles": []any{}},
		}, pub[roleReleases])
		if err != nil {
			return nil, err
		}
		r.Files.Delegations[roleReleases] = b
		snapMeta[roleReleases] = testnotary.FileMeta(b)
	}
	if r.Files.Snapshot, err = signNotary(map[string]any{
		"_type": "Snapshot", "version": o.Version, "expires": expires, "meta": snapMeta,
	}, pub["snapshot"]); err != nil {
		return nil, err
	}
	if r.Files.Timestamp, err = signNotary(map[string]any{
		"_type": "Timestamp", "version": o.Version, "expires": testnotary.Expires(o.Now.Add(o.TimestampExpires)),
		"meta": map[string]any{"snapshot": testnotary.FileMeta(r.Files.Snapshot)},
	}, pub["timestamp"]); err != nil {
		return nil, err
	}
	return r, nil
}

// File returns the repository's file for role ("root", "timestamp",
// "snapshot", "targets", "targets/releases"), or nil.
func (r *NotaryRepo) File(role string) []byte {
	switch role {
	case "root":
		return r.Files.Root
	case "timestamp":
		return r.Files.Timestamp
	case "snapshot":
		return r.Files.Snapshot
	case "targets":
		return r.Files.Targets
	}
	return r.Files.Delegations[role]
}

// Size is the total size of the repository's files.
func (r *NotaryRepo) Size() int {
	n := len(r.Files.Root) + len(r.Files.Timestamp) + len(r.Files.Snapshot) + len(r.Files.Targets)
	for _, b := range r.Files.Delegations {
		n += len(b)
	}
	return n
}
