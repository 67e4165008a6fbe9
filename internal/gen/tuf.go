package gen

import (
	"errors"
	"os"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/internal/testtuf"
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

// WriteTUFRepo generates a repository in dir (created) with testtuf:
// top-level targets delegates every target to succinct hash bins, each bin
// signed with the bins' ed25519 key, as TAP 15 describes; root, targets,
// snapshot and timestamp have a key each. Every role is version 1.
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
	repo, err := testtuf.New(dir, testtuf.Options{Expires: o.Now.Add(o.Expires), Compact: true})
	if err != nil {
		return nil, err
	}
	bins, err := repo.AddBins(o.BitLength)
	if err != nil {
		return nil, err
	}
	r := &TUFRepo{Dir: repo.Dir(), RootPath: repo.RootPath(), Bins: len(bins)}
	for i := range o.Repos {
		name := RepoName(o.Registry, i)
		for j := range o.TagsPerRepo {
			tag := Tag(j)
			t := targetFor(name, tag)
			target := name + ":" + tag
			if err := repo.SetRoleTarget(repo.BinFor(target), target, digest.NewDigestFromBytes(digest.SHA256, t.sum[:]), t.length); err != nil {
				return nil, err
			}
			r.Targets++
		}
	}
	if err := repo.Publish(); err != nil {
		return nil, err
	}
	// Bytes counts what a client downloads: every file but 1.root.json,
	// the same bytes as root.json.
	files, err := os.ReadDir(r.Dir)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if f.Name() == "1.root.json" {
			continue
		}
		fi, err := f.Info()
		if err != nil {
			return nil, err
		}
		r.Bytes += fi.Size()
	}
	return r, nil
}
