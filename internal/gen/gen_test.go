package gen

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustd/trustd/plugin/engine"
	"github.com/trustd/trustd/plugin/local"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/plugin/archive"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
	"github.com/trustd/trustd/verify/notary"
)

func TestNotaryRepoVerifies(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name   string
		withCA bool
		o      NotaryOptions
	}{
		{"self-signed, targets only", false, NotaryOptions{GUN: "docker.io/corp/a", Tags: 20}},
		{"CA, releases, sha512", true, NotaryOptions{GUN: "docker.io/corp/b", Tags: 1500, Releases: 10, SHA512: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := NewNotaryKeys(tc.withCA, now)
			if err != nil {
				t.Fatal(err)
			}
			tc.o.Now = now
			r, err := NewNotaryRepo(keys, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			pin := notary.Pin{TOFU: true}
			if tc.withCA {
				pin = notary.Pin{CA: keys.CAPEM()}
			}
			res, err := notary.Verify(r.Files, nil, notary.Options{GUN: r.GUN, Now: now, Pin: pin, Source: "hub"})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Repo.Tags) != tc.o.Tags || len(res.Repo.Problems) != 0 {
				t.Fatalf("%d tags, problems %q", len(res.Repo.Tags), res.Repo.Problems)
			}
			tag := r.Tags[0]
			want := ManifestDigest(r.GUN, tag)
			if got := res.Repo.Tags[tag]["targets"].Digest; got != want {
				t.Fatalf("tag %s: %s, want %s", tag, got, want)
			}
			if tc.o.Releases > 0 {
				if got := res.Repo.RolesInOrder(tag); len(got) != 2 || got[0] != "targets/releases" {
					t.Fatalf("roles of %s: %v", tag, got)
				}
			}
			// A pin on another key must refuse it: the keys are real.
			_, err = notary.Verify(r.Files, nil, notary.Options{GUN: r.GUN, Now: now, Pin: notary.Pin{RootKeys: []string{"00" + r.RootKeyID[2:]}}})
			if err == nil {
				t.Fatal("verified against a pin on another key")
			}
		})
	}
}

func TestBigTagsMakeNineMegabytes(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a 100k-tag repository")
	}
	keys, err := NewNotaryKeys(false, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewNotaryRepo(keys, NotaryOptions{GUN: BigGUN, Tags: 100000})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.Files.Targets); n < 8<<20 || n > 10<<20 {
		t.Fatalf("targets.json of 100k tags is %d bytes, want about 9 MB", n)
	}
}

func TestTUFRepoSyncsAndIndexes(t *testing.T) {
	dir := t.TempDir()
	r, err := WriteTUFRepo(filepath.Join(dir, "repo"), TUFOptions{Repos: 50, TagsPerRepo: 4, BitLength: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r.Targets != 200 || r.Bins != 8 {
		t.Fatalf("%d targets in %d bins", r.Targets, r.Bins)
	}
	cacheDir := filepath.Join(dir, "cache")
	res, err := CacheTUF(context.Background(), cacheDir, "corp", r, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	check := func(ix *verify.SourceIndex) {
		t.Helper()
		if ix.NumRepos() != 50 {
			t.Fatalf("%d repositories", ix.NumRepos())
		}
		repo := RepoName(DefaultRegistry, 7)
		rt := ix.Repo(repo)
		if rt == nil || len(rt.Tags) != 4 {
			t.Fatalf("%s: %+v", repo, rt)
		}
		roles := rt.RolesInOrder(Tag(3))
		// The targets are in succinct hash bins ("bin-…"), which sign for
		// the role delegating to them: targets.
		if len(roles) != 1 || roles[0] != "targets" {
			t.Fatalf("roles %v", roles)
		}
		if got := rt.Tags[Tag(3)][roles[0]].Digest; got != ManifestDigest(repo, Tag(3)) {
			t.Fatalf("digest %s", got)
		}
	}
	check(res.Index)
	root, err := os.ReadFile(r.RootPath)
	if err != nil {
		t.Fatal(err)
	}
	// Offline, as trustd loads it at start.
	si, err := (&cache.TUFSource{Name: "corp", Root: root, Dir: SourceDir(cacheDir, "corp")}).Load()
	if err != nil {
		t.Fatal(err)
	}
	check(si)
}

func TestPolicyParsesAndDecides(t *testing.T) {
	dir := t.TempDir()
	d := &Dataset{Dir: dir, TUF: &TUFRepo{RootPath: filepath.Join(dir, "root.json")}}
	for _, s := range []Sources{SourcesAll, SourcesTUF, SourcesNotary, SourcesSigstore, SourcesTUFNotary} {
		p, err := policy.Parse("policy.toml", Policy(d.PolicyOptions(filepath.Join(dir, "cache"), filepath.Join(dir, "sock"), s)))
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Rules) != PolicyRules {
			t.Fatalf("%d rules", len(p.Rules))
		}
		for _, tc := range []struct {
			image, ns string
			rule      int // 1-based
		}{
			{RepoName(DefaultRegistry, 5) + ":v0.1", "default", 6},
			{RepoName(DefaultRegistry, 0) + ":v0.1", "prod-eu", 41},
			{"mirror.example.com:5000/corp/team07/app00007:v0.0", "default", 8},
			{"registry.k8s.io/pause:3.10", "default", 49},
			{"alpine", "default", 46},
			{SigstoreRepo(3) + ":v0.1", "default", 47},
			{SigstoreCriticalRepo(3) + ":v0.1", "prod-eu", 48},
			{"quay.io/x/y", "default", 52},
		} {
			dd := verify.Decide(p, verify.NewIndex(), verify.Facts{Subject: verify.SubjectContainer, Image: tc.image, Namespace: tc.ns}, time.Now())
			if want := p.Rules[tc.rule-1].String(); dd.Rule != want {
				t.Errorf("%s in %s: decided by %q, want %q (%s)", tc.image, tc.ns, dd.Rule, want, dd.Reason)
			}
		}
	}
}

// TestDatasetLoads generates a small data set and loads it as trustd does
// at start (policy, cache.Open, LoadIndex).
func TestDatasetLoads(t *testing.T) {
	dir := t.TempDir()
	o := DatasetOptions{Repos: 30, TagsPerRepo: 3, NotaryTags: 40, NotaryReleases: 5, NotaryRepos: 4, NotaryRepoTags: 3,
		SigstoreRepos: 3, SigstoreCriticalRepos: 2, SigstoreDigests: 3}
	d, err := OpenDataset(filepath.Join(dir, "data"), o)
	if err != nil {
		t.Fatal(err)
	}
	again, err := OpenDataset(d.Dir, o)
	if err != nil || !again.Created.Equal(d.Created) {
		t.Fatalf("not reused: %v", err)
	}
	for _, tc := range []struct {
		name     string
		cacheDir string
		sources  Sources
		tags     int
	}{
		{"all", d.CacheDir(), SourcesAll, 30*3 + 40 + 5*3},
		{"tuf+notary", d.CacheDir(), SourcesTUFNotary, 30*3 + 40},
		{"sigstore", d.CacheDir(), SourcesSigstore, 5 * 3},
		{"many", d.ManyCacheDir(), SourcesNotary, 4 * 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".toml")
			if err := WritePolicy(path, d.PolicyOptions(tc.cacheDir, filepath.Join(dir, "none.sock"), tc.sources)); err != nil {
				t.Fatal(err)
			}
			l, err := local.OpenLocal(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(l.LoadErrors) > 0 {
				t.Fatal(l.LoadErrors)
			}
			tags := 0
			for _, si := range l.Engine.Snapshot().Index.Sources {
				tags += si.NumTags()
			}
			if tags != tc.tags {
				t.Fatalf("%d tags loaded, want %d", tags, tc.tags)
			}
		})
	}
	p, err := policy.Load(filepath.Join(dir, "all.toml"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := local.OpenLocalPolicy(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, image := range []string{RepoName(DefaultRegistry, 3) + ":" + Tag(2), BigGUN + ":" + NotaryTagName(o.NotaryTags, 3)} {
		if dd := l.Engine.Decide(context.Background(), verify.Facts{Subject: verify.SubjectPull, Image: image}, engine.Context{}); !dd.Allowed {
			t.Errorf("%s: %s", image, dd.Message())
		}
	}
	// 3×3 signatures by the first key, 2×(2×2+1) in the threshold-2
	// repositories; the last digest of those is signed by one key only.
	if d.SigstoreSignatures != 19 {
		t.Errorf("%d cosign signatures, want 19", d.SigstoreSignatures)
	}
	for _, tc := range []struct {
		repo    string
		j       int
		allowed bool
		reason  string
	}{
		{SigstoreRepo(2), 1, true, "is signed by key "},
		{SigstoreCriticalRepo(1), 1, true, "is signed by keys "},
		{SigstoreCriticalRepo(1), 2, false, "is not signed by 2 of the keys"},
		{SigstoreRepo(2), 3, false, "is not signed by key"},
	} {
		dg := SigstoreDigest(tc.repo, tc.j)
		dd := l.Engine.Decide(context.Background(), verify.Facts{Subject: verify.SubjectPull, Image: tc.repo + "@" + string(dg), Digest: dg}, engine.Context{})
		if dd.Allowed != tc.allowed || !strings.Contains(dd.Reason, tc.reason) {
			t.Errorf("%s@%s: allowed=%v %q, want %v and %q", tc.repo, dg, dd.Allowed, dd.Reason, tc.allowed, tc.reason)
		}
	}
	many, err := d.ManyRepos()
	if err != nil || len(many) != 4 || many[3].Files.Delegations["targets/releases"] == nil {
		t.Fatalf("%v %+v", err, many)
	}
}

func TestDockerArchiveReads(t *testing.T) {
	var buf bytes.Buffer
	info, err := WriteDockerArchive(&buf, ArchiveOptions{Ref: "registry.example.com/team01/app00001:v0.1", Layers: 3, LayerSize: 100000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(buf.Len()) {
		t.Fatalf("size %d, wrote %d", info.Size, buf.Len())
	}
	a, err := archive.Read(bytes.NewReader(buf.Bytes()), archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Images) != 1 || len(a.Images[0].Problems) > 0 || a.Images[0].ConfigDigest != info.ConfigDigest {
		t.Fatalf("%+v", a.Images)
	}
}
