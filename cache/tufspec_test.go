package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/test/harness"
	"github.com/trustd/trustd/verify"
)

// syncGraph syncs a hand-written delegation graph and returns the index.
func syncGraph(t *testing.T, roles []diffRole) *verify.SourceIndex {
	t.Helper()
	now := time.Now()
	files, root := buildDiffRepo(t, roles, now)
	src := &TUFSource{Name: "corp", URL: diffURL, Root: root, Dir: filepath.Join(t.TempDir(), "corp"), Fetcher: files}
	res, err := src.Sync(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	// The same decisions from the cache alone (offline re-verification).
	removeDerived(src.derivedPath())
	loaded, err := src.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range diffNames {
		repo, tag, _ := verify.SplitTargetName(name)
		a, b := outcome(res.Index, repo, tag), outcome(loaded, repo, tag)
		if a != b {
			t.Errorf("%s: sync says %q, load from the cache %q", name, a, b)
		}
	}
	return res.Index
}

// outcome is the digest the first role signed for repo:tag, or "denied: "
// and the reason, or "".
func outcome(ix *verify.SourceIndex, repo, tag string) string {
	rv, ok := ix.Lookup(repo)
	if !ok {
		return ""
	}
	if tv, ok := rv.Tag(tag); ok {
		_, tg := tv.Sig(0)
		return string(tg.Digest)
	}
	if why, ok := rv.Denied(tag); ok {
		return "denied: " + why
	}
	return ""
}

func sum(s string) []byte { b := []byte(s + strings.Repeat("\x00", 32)); return b[:32] }

// TestTUFRoleUnderTwoDelegators: role "shared" is delegated by "a" (whose
// key signs it) for team/* and by "b" (another key) for other/*. A search
// for other/x reaches it through b, under whose key it does not verify:
// denied, not trusted because a's key signed it.
func TestTUFRoleUnderTwoDelegators(t *testing.T) {
	team, other := diffRegistry+"/team/app:v1", diffRegistry+"/other/x:10"
	ix := syncGraph(t, []diffRole{
		{name: metadata.TARGETS, key: 4, dels: []diffDeleg{
			{child: "a", key: 0, paths: []string{diffRegistry + "/team/*"}},
			{child: "b", key: 1, paths: []string{diffRegistry + "/other/*"}},
		}},
		{name: "a", key: 0, dels: []diffDeleg{{child: "shared", key: 2, paths: []string{diffRegistry + "/*/*"}}}},
		{name: "b", key: 1, dels: []diffDeleg{{child: "shared", key: 3, paths: []string{diffRegistry + "/*/*"}}}},
		{name: "shared", key: 2, targets: map[string]diffTarget{team: {sum: sum("t")}, other: {sum: sum("o")}}},
	})
	if got := outcome(ix, diffRegistry+"/team/app", "v1"); !strings.HasPrefix(got, "sha256:") {
		t.Errorf("team/app:v1 through a: %q", got)
	}
	got := outcome(ix, diffRegistry+"/other/x", "10")
	if !strings.Contains(got, "denied: ") || !strings.Contains(got, "delegated role shared (delegated by b)") {
		t.Errorf("other/x:10 through b must be denied naming the role and its delegator: %q", got)
	}
}

// TestTUFFailedRoleDeniesItsPaths: the first delegation for team/* ("a")
// cannot be used (its signature, absence from the snapshot, expiry); a
// lower-priority role that signs the same target must not decide it.
func TestTUFFailedRoleDeniesItsPaths(t *testing.T) {
	name := diffRegistry + "/team/app:v1"
	for _, tc := range []struct {
		why  string
		a    diffRole
		want string
	}{
		{"bad signature", diffRole{name: "a", key: 3}, "signature"},
		{"not in the snapshot", diffRole{name: "a", key: 0, unpublished: true}, "snapshot lists no a.json"},
		{"expired", diffRole{name: "a", key: 0, expired: true}, "expired"},
	} {
		t.Run(tc.why, func(t *testing.T) {
			ix := syncGraph(t, []diffRole{
				{name: metadata.TARGETS, key: 4, dels: []diffDeleg{
					{child: "a", key: 0, paths: []string{diffRegistry + "/team/*"}},
					{child: "b", key: 1, paths: []string{diffRegistry + "/team/*"}},
				}},
				tc.a,
				{name: "b", key: 1, targets: map[string]diffTarget{name: {sum: sum("b")}}},
			})
			got := outcome(ix, diffRegistry+"/team/app", "v1")
			if !strings.Contains(got, "denied: ") || !strings.Contains(got, "delegated role a") || !strings.Contains(got, tc.want) {
				t.Errorf("want a denial naming role a (%s), got %q", tc.want, got)
			}
		})
	}
}

// TestTUFTargetWithoutSHA256: the role the search returns first signs the
// target with sha512 only: denied with that reason, not resolved by the
// next role's sha256.
func TestTUFTargetWithoutSHA256(t *testing.T) {
	name := diffRegistry + "/team/app:v1"
	ix := syncGraph(t, []diffRole{
		{name: metadata.TARGETS, key: 4, targets: map[string]diffTarget{name: {sum: sum("t"), sha512Only: true}}, dels: []diffDeleg{
			{child: "b", key: 1, paths: []string{diffRegistry + "/team/*"}},
		}},
		{name: "b", key: 1, targets: map[string]diffTarget{name: {sum: sum("b")}}},
	})
	if got := outcome(ix, diffRegistry+"/team/app", "v1"); !strings.Contains(got, "has no sha256 hash") {
		t.Errorf("got %q", got)
	}
}

// TestTUFTerminatingWildcardsCase: a terminating delegation ends the
// search; '?' is one character; paths are case-sensitive.
func TestTUFTerminatingWildcardsCase(t *testing.T) {
	v1, V1, v2 := diffRegistry+"/team/app:v1", diffRegistry+"/team/app:V1", diffRegistry+"/team/app:v2"
	ix := syncGraph(t, []diffRole{
		{name: metadata.TARGETS, key: 4, dels: []diffDeleg{
			{child: "term", key: 0, paths: []string{diffRegistry + "/team/app:v?"}, terminating: true},
			{child: "later", key: 1, paths: []string{diffRegistry + "/team/*"}},
		}},
		{name: "term", key: 0, targets: map[string]diffTarget{v1: {sum: sum("term")}}},
		{name: "later", key: 1, targets: map[string]diffTarget{v1: {sum: sum("l1")}, V1: {sum: sum("L1")}, v2: {sum: sum("l2")}}},
	})
	if got := outcome(ix, diffRegistry+"/team/app", "v2"); got != "" {
		t.Errorf("v2: the terminating delegation covers it and lists nothing; got %q", got)
	}
	if got := outcome(ix, diffRegistry+"/team/app", "V1"); !strings.HasPrefix(got, "sha256:") {
		t.Errorf("V1 is outside the case-sensitive 'v?': later must sign it; got %q", got)
	}
	rv, _ := ix.Lookup(diffRegistry + "/team/app")
	if tv, ok := rv.Tag("v1"); !ok || strings.Join(tv.Roles(), ",") != "term" {
		t.Errorf("v1: only the terminating role counts, got %v", tv.Roles())
	}
}

// TestTUFFailedRefreshKeepsVerifiedSteps: a refresh that fails after the
// timestamp keeps it (rollback protection, TUF 5.4.5), and a refresh that
// fails after a new root that revoked the timestamp key leaves decisions
// without the data that key signed.
func TestTUFFailedRefreshKeepsVerifiedSteps(t *testing.T) {
	t.Run("timestamp kept", func(t *testing.T) {
		repo := harness.NewTUFRepo(t)
		repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("v1"))
		if err := repo.Publish(); err != nil {
			t.Fatal(err)
		}
		oldTS, _ := os.ReadFile(filepath.Join(repo.Dir(), "timestamp.json"))
		a, url := newAttacker(t, repo.URL())
		root, _ := os.ReadFile(repo.RootPath())
		src := &TUFSource{Name: "corp", URL: url, Root: root, Dir: filepath.Join(t.TempDir(), "corp"), Fetcher: &HTTPFetcher{Timeout: time.Second}}
		if _, err := src.Sync(context.Background(), time.Now()); err != nil {
			t.Fatal(err)
		}
		repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("v2"))
		if err := repo.Publish(); err != nil {
			t.Fatal(err)
		}
		a.set(func(a *attacker) { a.replay["snapshot.json"] = []byte("{}") })
		if _, err := src.Sync(context.Background(), time.Now()); err == nil {
			t.Fatal("a bad snapshot must fail the refresh")
		}
		a.set(func(a *attacker) { a.replay["timestamp.json"] = oldTS; delete(a.replay, "snapshot.json") })
		_, err := src.Sync(context.Background(), time.Now())
		var bad *metadata.ErrBadVersionNumber
		if !errors.As(err, &bad) {
			t.Fatalf("the timestamp older than the one the failed refresh verified must be refused as a rollback: %v", err)
		}
	})
	t.Run("revoked by a newer root", func(t *testing.T) {
		repo := harness.NewTUFRepo(t)
		repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("v1"))
		if err := repo.Publish(); err != nil {
			t.Fatal(err)
		}
		a, url := newAttacker(t, repo.URL())
		root, _ := os.ReadFile(repo.RootPath())
		src := &TUFSource{Name: "corp", URL: url, Root: root, Dir: filepath.Join(t.TempDir(), "corp"), Fetcher: &HTTPFetcher{Timeout: time.Second}}
		if _, err := src.Sync(context.Background(), time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := repo.RotateKey(metadata.TIMESTAMP); err != nil {
			t.Fatal(err)
		}
		if err := repo.Publish(); err != nil {
			t.Fatal(err)
		}
		a.set(func(a *attacker) { a.replay["snapshot.json"] = []byte("{}") })
		res, err := src.Sync(context.Background(), time.Now())
		if err == nil {
			t.Fatal("a bad snapshot must fail the refresh")
		}
		if res == nil || res.Index == nil || res.Index.Err == nil || !strings.Contains(res.Index.Err.Error(), "newer root") {
			t.Fatalf("decisions must stop using data signed by the revoked timestamp key: %+v", res)
		}
		if _, err := src.Load(); err == nil || !strings.Contains(err.Error(), "newer root") {
			t.Fatalf("after a restart too: %v", err)
		}
		a.set(func(a *attacker) { delete(a.replay, "snapshot.json") })
		res, err = src.Sync(context.Background(), time.Now())
		if err != nil || res.Index.Err != nil || res.Index.Repo("127.0.0.1:5000/demo/hello") == nil {
			t.Fatalf("a complete refresh restores the data: %v", err)
		}
		if _, err := os.Stat(src.progressPath()); !os.IsNotExist(err) {
			t.Errorf("the progress file must go once a refresh completes: %v", err)
		}
	})
}

// TestTUFFailedRoleNamedForUnlistedTags: a tag that no usable role lists
// but that lies in the paths of a role that could not be used is denied
// naming that role (the role may sign it), whether its repository has
// other signed tags or none; from a sync and after a restart that loads
// the derived index.
func TestTUFFailedRoleNamedForUnlistedTags(t *testing.T) {
	signed := diffRegistry + "/team/app:v1"
	roles := []diffRole{
		{name: metadata.TARGETS, key: 4, dels: []diffDeleg{
			{child: "a", key: 0, paths: []string{diffRegistry + "/team/*"}},
			{child: "b", key: 1, paths: []string{diffRegistry + "/team/app:v1"}},
		}},
		{name: "a", key: 3}, // signed with a key the delegation does not list
		{name: "b", key: 1, targets: map[string]diffTarget{signed: {sum: sum("b")}}},
	}
	now := time.Now()
	files, root := buildDiffRepo(t, roles, now)
	src := &TUFSource{Name: "corp", URL: diffURL, Root: root, Dir: filepath.Join(t.TempDir(), "corp"), Fetcher: files}
	res, err := src.Sync(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := src.Load() // from the derived index written by the sync
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("policy.toml", []byte(fmt.Sprintf("version = 1\n[[source]]\nname = \"corp\"\nkind = \"tuf\"\nurl = %q\nroot = \"root.json\"\nrepositories = [\"%s/**\"]\n[[rule]]\nimages = [\"%s/**\"]\naction = \"verify\"\nsource = \"corp\"\n", diffURL, diffRegistry, diffRegistry)))
	if err != nil {
		t.Fatal(err)
	}
	for _, ix := range []*verify.SourceIndex{res.Index, loaded} {
		for _, tc := range []struct{ image, want string }{
			{diffRegistry + "/team/app:v9", `tag "v9" of ` + diffRegistry + `/team/app is not signed by any role trustd could use: it is in the paths of delegated role a (delegated by targets)`},
			{diffRegistry + "/team/other:1", diffRegistry + `/team/other is not signed: source "corp" has no trust data for it by any role trustd could use: it is in the paths of delegated role a`},
			{diffRegistry + "/elsewhere/x:1", diffRegistry + `/elsewhere/x is not signed: source "corp" has no trust data for it`},
		} {
			d := verify.Decide(p, verify.NewIndex(ix), verify.Facts{Subject: verify.SubjectPull, Image: tc.image, Digest: digest.FromString("x")}, now)
			if d.Allowed || !strings.Contains(d.Reason, tc.want) {
				t.Errorf("%s: %s\nwant the reason to contain %q", tc.image, d.Message(), tc.want)
			}
			if strings.HasPrefix(tc.image, diffRegistry+"/elsewhere") && strings.Contains(d.Reason, "delegated role") {
				t.Errorf("%s is outside role a's paths: %s", tc.image, d.Reason)
			}
		}
	}
}
