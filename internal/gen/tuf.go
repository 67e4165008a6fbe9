package gen

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TUFOptions shape a generated standard TUF repository.
type TUFOptions struct {
	// Registry is the registry host of the repositories (DefaultRegistry).
	Registry string
	// Repos repositories (RepoName) with TagsPerRepo tags (Tag) each; every
	// "<repository>:<tag>" is a target.
	Repos, TagsPerRepo int
	// BitLength of the succinct hash bins (TAP 15): 2^BitLength bins named
	// "bin-<hex>". Default: the smallest giving at most 512 targets a bin.
	BitLength int
	// Now is the signing time; Expires how long every role stays valid
	// (default 1 year).
	Now     time.Time
	Expires time.Duration
}

// TUFRepo is a generated standard TUF repository written to a directory.
type TUFRepo struct {
	// Dir holds the metadata as served: root.json, 1.root.json,
	// timestamp.json, snapshot.json, targets.json and bin-<hex>.json
	// (consistent_snapshot is false).
	Dir string
	// RootPath is the initial root.json to pin (outside Dir).
	RootPath string
	// Targets is the number of targets; Bins the number of hash bins.
	Targets, Bins int
	// Bytes is the total size of the metadata files.
	Bytes int64
}

type tufSigner struct {
	signer signature.Signer
	key    *metadata.Key
}

func newTUFSigner() (*tufSigner, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s, err := signature.LoadED25519Signer(priv)
	if err != nil {
		return nil, err
	}
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return &tufSigner{signer: s, key: k}, nil
}

// WriteTUFRepo generates a repository in dir (created): top-level targets
// delegates every target to succinct hash bins, each bin signed with the
// bins' ed25519 key, as TAP 15 describes; root, targets, snapshot and
// timestamp have a key each.
func WriteTUFRepo(dir string, o TUFOptions) (*TUFRepo, error) {
	if o.Repos <= 0 || o.TagsPerRepo <= 0 {
		return nil, errors.New("gen: TUFOptions needs Repos and TagsPerRepo")
	}
	if o.Registry == "" {
		o.Registry = DefaultRegistry
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Expires <= 0 {
		o.Expires = 365 * 24 * time.Hour
	}
	total := o.Repos * o.TagsPerRepo
	if o.BitLength <= 0 {
		o.BitLength = 1
		for total>>o.BitLength > 512 && o.BitLength < 16 {
			o.BitLength++
		}
	}
	expires := o.Now.UTC().Add(o.Expires).Truncate(time.Second)
	r := &TUFRepo{Dir: filepath.Join(dir, "metadata"), RootPath: filepath.Join(dir, "root.json")}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return nil, err
	}
	signers := map[string]*tufSigner{}
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP, "bins"} {
		s, err := newTUFSigner()
		if err != nil {
			return nil, err
		}
		signers[role] = s
	}

	root := metadata.Root(expires)
	root.Signed.ConsistentSnapshot = false
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := root.Signed.AddKey(signers[role].key, role); err != nil {
			return nil, err
		}
	}
	rootJSON, err := signTUF(root, signers[metadata.ROOT])
	if err != nil {
		return nil, err
	}
	for _, p := range []string{r.RootPath, filepath.Join(r.Dir, "root.json"), filepath.Join(r.Dir, "1.root.json")} {
		if err := os.WriteFile(p, rootJSON, 0o644); err != nil {
			return nil, err
		}
	}
	r.Bytes += int64(len(rootJSON))

	top := metadata.Targets(expires)
	binKeyID, err := signers["bins"].key.ID()
	if err != nil {
		return nil, err
	}
	succinct := &metadata.SuccinctRoles{KeyIDs: []string{binKeyID}, Threshold: 1, BitLength: o.BitLength, NamePrefix: "bin"}
	top.Signed.Delegations = &metadata.Delegations{
		Keys:          map[string]*metadata.Key{binKeyID: signers["bins"].key},
		SuccinctRoles: succinct,
	}
	names := succinct.GetRoles()
	r.Bins = len(names)
	bins := make(map[string]*metadata.Metadata[metadata.TargetsType], len(names))
	for _, n := range names {
		bins[n] = metadata.Targets(expires)
	}
	for i := range o.Repos {
		repo := RepoName(o.Registry, i)
		for j := range o.TagsPerRepo {
			tag := Tag(j)
			name := repo + ":" + tag
			t := targetFor(repo, tag)
			bin := succinct.GetRolesForTarget(name)[0].Name
			bins[bin].Signed.Targets[name] = &metadata.TargetFiles{Length: t.length, Hashes: metadata.Hashes{"sha256": t.sum[:]}, Path: name}
			r.Targets++
		}
	}

	snapshot := metadata.Snapshot(expires)
	write := func(role string, b []byte) error {
		r.Bytes += int64(len(b))
		return os.WriteFile(filepath.Join(r.Dir, role+".json"), b, 0o644)
	}
	for _, n := range names {
		b, err := signTUF(bins[n], signers["bins"])
		if err != nil {
			return nil, fmt.Errorf("sign %s: %w", n, err)
		}
		if err := write(n, b); err != nil {
			return nil, err
		}
		snapshot.Signed.Meta[n+".json"] = metadata.MetaFile(bins[n].Signed.Version)
	}
	b, err := signTUF(top, signers[metadata.TARGETS])
	if err != nil {
		return nil, err
	}
	if err := write(metadata.TARGETS, b); err != nil {
		return nil, err
	}
	snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(top.Signed.Version)
	snap, err := signTUF(snapshot, signers[metadata.SNAPSHOT])
	if err != nil {
		return nil, err
	}
	if err := write(metadata.SNAPSHOT, snap); err != nil {
		return nil, err
	}
	ts := metadata.Timestamp(expires)
	sum := sha256.Sum256(snap)
	ts.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{Version: snapshot.Signed.Version, Length: int64(len(snap)), Hashes: metadata.Hashes{"sha256": sum[:]}}
	b, err = signTUF(ts, signers[metadata.TIMESTAMP])
	if err != nil {
		return nil, err
	}
	if err := write(metadata.TIMESTAMP, b); err != nil {
		return nil, err
	}
	return r, nil
}

func signTUF[T metadata.Roles](md *metadata.Metadata[T], s *tufSigner) ([]byte, error) {
	md.ClearSignatures()
	if _, err := md.Sign(s.signer); err != nil {
		return nil, err
	}
	return md.ToBytes(false)
}
