package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/internal/gen"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// notaryPolicy is a policy with the Notary source "hub" over trustd's
// cache in cacheDir, trusting each repository's first root, and rules
// (with "verify" actions on source SOURCE) appended.
func notaryPolicy(t *testing.T, cacheDir, rules string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("policy.toml", []byte(fmt.Sprintf(`
version = 1

[daemon]
cache_dir = %q

[[source]]
name = "hub"
kind = "notary"
url = "https://notary.example"
repositories = ["docker.io/corp/**"]
trust_on_first_use = true

[[source]]
name = "corp"
kind = "tuf"
url = "https://tuf.example/metadata/"
root = "/dev/null"
repositories = ["docker.io/corp/**"]
`, cacheDir)+rules))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cachedNotary generates two Notary repositories (one with a
// targets/releases delegation), caches them as trustd's sync does, and
// returns the cache directory.
func cachedNotary(t *testing.T, now time.Time, expires time.Duration) string {
	t.Helper()
	keys, err := gen.NewNotaryKeys(false, now)
	if err != nil {
		t.Fatal(err)
	}
	var repos []*gen.NotaryRepo
	for _, o := range []gen.NotaryOptions{
		{GUN: gen.NotaryPrefix + "app", Tags: 4, Releases: 2, Version: 3},
		{GUN: gen.NotaryPrefix + "db", Tags: 2},
	} {
		o.Now, o.Expires, o.TimestampExpires = now.Add(-time.Hour), expires, expires
		r, err := gen.NewNotaryRepo(keys, o)
		if err != nil {
			t.Fatal(err)
		}
		repos = append(repos, r)
	}
	dir := t.TempDir()
	if err := gen.CacheNotary(context.Background(), dir, "hub", nil, repos, now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func manifestDigest(repo, tag string) digest.Digest { return digest.FromBytes(gen.Manifest(repo, tag)) }

// TestImportNotaryKeepsVerdicts: the bindings of a Notary source, imported
// from trustd's cache into a TUF repository, decide every reference as the
// Notary source did once the policy's rule names the TUF source instead:
// signed tags, tags signed by targets only, moved tags, unsigned tags and
// repositories, references by digest only; flat (Docker's signer rule) and
// one role per Notary signer (a rule naming targets/releases alone).
func TestImportNotaryKeepsVerdicts(t *testing.T) {
	now := time.Now()
	cacheDir := cachedNotary(t, now, 365*24*time.Hour)
	app, db := gen.NotaryPrefix+"app", gen.NotaryPrefix+"db"
	type ref struct {
		image string
		d     digest.Digest
	}
	refs := []ref{
		{app + ":" + gen.Tag(0), manifestDigest(app, gen.Tag(0))},   // targets and targets/releases
		{app + ":" + gen.Tag(3), manifestDigest(app, gen.Tag(3))},   // targets only
		{app + ":" + gen.Tag(0), manifestDigest(app, gen.Tag(1))},   // moved
		{app + ":" + gen.Tag(3), manifestDigest(db, gen.Tag(0))},    // moved
		{app + ":v9.9", manifestDigest(app, gen.Tag(0))},            // unsigned tag
		{app + "@" + string(manifestDigest(app, gen.Tag(1))), ""},   // digest only, signed
		{app + "@" + string(manifestDigest(app, gen.Tag(3))), ""},   // digest only, signed by targets only
		{app + "@" + string(manifestDigest(db, gen.Tag(1))), ""},    // digest only, another repository's
		{db + ":" + gen.Tag(1), manifestDigest(db, gen.Tag(1))},     // targets only, no delegation
		{gen.NotaryPrefix + "none:v0.0", manifestDigest(app, "v0")}, // unsigned repository
	}
	for _, tc := range []struct {
		name                string
		o                   ImportOptions
		notaryRule, tufRule string
	}{
		{"flat, Docker's rule", ImportOptions{}, "", ""},
		{"per signer, Docker's rule", ImportOptions{PerSigner: true}, "", `signers = ["releases", "targets"]`},
		{"per signer, releases only", ImportOptions{PerSigner: true}, `signers = ["targets/releases"]`, `signers = ["releases"]`},
		{"flat, releases only", ImportOptions{Signers: []string{"targets/releases"}}, `signers = ["targets/releases"]`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rule := func(source, extra string) string {
				return fmt.Sprintf("\n[[rule]]\nimages = [\"docker.io/corp/**\"]\naction = \"verify\"\nsource = %q\n%s\n", source, extra)
			}
			np := notaryPolicy(t, cacheDir, rule("hub", tc.notaryRule))
			store, err := cache.Open(np, nil)
			if err != nil {
				t.Fatal(err)
			}
			nd, err := LoadNotary(context.Background(), store, "hub", nil, false, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(nd.Problems) > 0 {
				t.Fatalf("cache problems: %v", nd.Problems)
			}
			dir := newRepo(t, InitOptions{})
			r := open(t, dir)
			res, err := r.ImportNotary(nd, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Pending) > 0 || len(res.Changed) == 0 {
				t.Fatalf("import: %+v", res)
			}
			si, err := trustdSync(t, serve(t, dir), rootOf(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			tp := notaryPolicy(t, cacheDir, rule("corp", tc.tufRule))
			nix, tix := verify.NewIndex(nd.Index), verify.NewIndex(si)
			allowed := 0
			for _, rf := range refs {
				f := verify.Facts{Subject: verify.SubjectPull, Image: rf.image, Digest: rf.d}
				if rf.d == "" {
					_, d, _ := strings.Cut(rf.image, "@")
					f.Digest = digest.Digest(d)
				}
				nv, tv := verify.Decide(np, nix, f, now), verify.Decide(tp, tix, f, now)
				if nv.Allowed != tv.Allowed || nv.SignedDigest != tv.SignedDigest {
					t.Errorf("%s (%s): notary allowed=%v %s (%s); tuf allowed=%v %s (%s)", rf.image, rf.d, nv.Allowed, nv.SignedDigest, nv.Reason, tv.Allowed, tv.SignedDigest, tv.Reason)
				}
				if nv.Allowed {
					allowed++
				}
			}
			if allowed == 0 {
				t.Fatal("no reference is allowed: the test proves nothing")
			}
			// Provenance of a tag both Notary roles sign.
			tf, err := goTUF(t, serve(t, dir), rootOf(t, dir), app+":"+gen.Tag(0))
			if err != nil {
				t.Fatal(err)
			}
			var c notaryCustom
			if tf.Custom == nil || json.Unmarshal(*tf.Custom, &c) != nil || c.Notary == nil {
				t.Fatalf("no provenance: %+v", tf)
			}
			want := "targets/releases"
			if tc.o.PerSigner {
				want = "targets" // go-tuf finds it in targets first
			}
			if p := c.Notary; p.Repository != app || p.Role != want || len(p.RootKeyIDs) != 1 || p.Version != 3 || p.Expires.IsZero() {
				t.Fatalf("provenance %+v, want role %s, version 3", p, want)
			}
		})
	}
}

// TestImportNotaryExpired: expired Notary data is refused, and imported
// with AllowExpired only, with a warning; a repository not cached is an
// error; importing again changes nothing.
func TestImportNotaryExpired(t *testing.T) {
	now := time.Now()
	cacheDir := cachedNotary(t, now, 2*time.Hour)
	store, err := cache.Open(notaryPolicy(t, cacheDir, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	later := now.Add(3 * time.Hour)
	nd, err := LoadNotary(context.Background(), store, "hub", nil, false, later)
	if err != nil {
		t.Fatal(err)
	}
	dir := newRepo(t, InitOptions{})
	r, err := Open(dir, Options{Now: later})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.ImportNotary(nd, ImportOptions{}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired data imported: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata", "2.targets.json")); err == nil {
		t.Fatal("a refused import changed the repository")
	}
	missing, _ := policy.ParsePattern(gen.NotaryPrefix + "missing")
	if _, err := r.ImportNotary(nd, ImportOptions{Patterns: []policy.Pattern{missing}, AllowExpired: true}); err == nil || !strings.Contains(err.Error(), "no verified trust data") {
		t.Fatalf("uncached repository: %v", err)
	}
	res, err := r.ImportNotary(nd, ImportOptions{AllowExpired: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "expired") || len(res.Changed[RoleTargets]) != 6 {
		t.Fatalf("import with --allow-expired: %+v", res)
	}
	again, err := r.ImportNotary(nd, ImportOptions{AllowExpired: true})
	if err != nil || len(again.Changed) != 0 || len(again.Published) != 0 {
		t.Fatalf("second import: %+v, %v", again, err)
	}
	if _, err := LoadNotary(context.Background(), store, "corp", nil, false, later); err == nil || !strings.Contains(err.Error(), `kind "tuf"`) {
		t.Fatalf("a TUF source read as Notary: %v", err)
	}
}

// TestTUFRoleOf: Notary roles map to TUF role names that are file names.
func TestTUFRoleOf(t *testing.T) {
	for in, want := range map[string]string{"targets": "targets", "targets/releases": "releases", "targets/ci": "ci", "targets/a/b": "", "releases": "", "targets/": "", "targets/root": ""} {
		got, err := TUFRoleOf(in)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("TUFRoleOf(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
