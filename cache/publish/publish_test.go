package publish

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	tufconfig "github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

func dg(s string) digest.Digest {
	return digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%x", sha256.Sum256([]byte(s))))
}

func newRepo(t *testing.T, o InitOptions) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := Init(dir, o); err != nil {
		t.Fatal(err)
	}
	return dir
}

func open(t *testing.T, dir string, keys ...string) *Repo {
	t.Helper()
	r, err := Open(dir, Options{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func bind(t *testing.T, image, content string) Binding {
	t.Helper()
	b, err := NewBinding(image, dg(content), int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readers loads the served repository with go-tuf's updater and with
// trustd's TUF source, and returns the target info each resolves for name.
func serve(t *testing.T, dir string) string {
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(dir, "metadata"))))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

func goTUF(t *testing.T, url string, root []byte, name string) (*metadata.TargetFiles, error) {
	t.Helper()
	cfg, err := tufconfig.New(url, root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LocalMetadataDir = t.TempDir()
	cfg.LocalTargetsDir = t.TempDir()
	cfg.RemoteTargetsURL = url
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		return nil, err
	}
	return up.GetTargetInfo(name)
}

func trustdSync(t *testing.T, url string, root []byte) (*verify.SourceIndex, error) {
	t.Helper()
	src := &cache.TUFSource{Name: "corp", URL: url, Root: root, Dir: filepath.Join(t.TempDir(), "corp"), Fetcher: &cache.HTTPFetcher{Timeout: 5 * time.Second}, RootCheckInterval: -1}
	res, err := src.Sync(context.Background(), time.Now())
	if err != nil {
		return nil, err
	}
	return res.Index, nil
}

func decide(t *testing.T, si *verify.SourceIndex, rule string, image string, d digest.Digest) verify.Decision {
	t.Helper()
	p, err := policy.Parse("policy.toml", []byte(`
version = 1

[[source]]
name = "corp"
kind = "tuf"
url = "https://tuf.example/metadata/"
root = "/dev/null"
repositories = ["registry.corp.example/**"]

[[rule]]
images = ["registry.corp.example/**"]
action = "verify"
source = "corp"
`+rule))
	if err != nil {
		t.Fatal(err)
	}
	return verify.Decide(p, verify.NewIndex(si), verify.Facts{Subject: verify.SubjectPull, Image: image, Digest: d}, time.Now())
}

func rootOf(t *testing.T, dir string) []byte {
	data, err := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestInteropTopLevel: a tag signed into targets is read by go-tuf's
// updater and by trustd's source, which allows its digest and denies a
// moved tag.
func TestInteropTopLevel(t *testing.T) {
	for _, kt := range []string{KeyEd25519, KeyECDSAP256} {
		t.Run(kt, func(t *testing.T) {
			dir := newRepo(t, InitOptions{KeyType: kt, RootKeys: 3, RootThreshold: 2})
			r := open(t, dir)
			res, err := r.Sign(RoleTargets, []Binding{bind(t, "REGISTRY.corp.example/app:1.0", "v1")}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Pending) != 0 || len(res.Published) == 0 {
				t.Fatalf("sign: %+v", res)
			}
			url, root := serve(t, dir), rootOf(t, dir)
			tf, err := goTUF(t, url, root, "registry.corp.example/app:1.0")
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("sha256:%x", []byte(tf.Hashes["sha256"])) != string(dg("v1")) || tf.Length != 2 {
				t.Fatalf("go-tuf reads %+v", tf)
			}
			si, err := trustdSync(t, url, root)
			if err != nil {
				t.Fatal(err)
			}
			if d := decide(t, si, "", "registry.corp.example/app:1.0", dg("v1")); !d.Allowed {
				t.Fatalf("signed digest denied: %s", d.Reason)
			}
			if d := decide(t, si, "", "registry.corp.example/app:1.0", dg("moved")); d.Allowed {
				t.Fatalf("moved tag allowed: %s", d.Reason)
			}
		})
	}
}

// TestInteropDelegationThreshold2: a role delegated with threshold 2 to
// two teams' keys is published once both sign; both readers then resolve
// the tag through it, and a target outside its paths is refused.
func TestInteropDelegationThreshold2(t *testing.T) {
	dir := newRepo(t, InitOptions{})
	keys := t.TempDir()
	var pubs []*metadata.Key
	var privs []string
	for _, team := range []string{"team-a", "team-b"} {
		p := filepath.Join(keys, team)
		if _, err := GenerateKeyPair(p, KeyEd25519, nil); err != nil {
			t.Fatal(err)
		}
		k, err := ReadPublicKey(p + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		pubs, privs = append(pubs, k), append(privs, p)
	}
	r := open(t, dir)
	saved, err := r.Delegate("releases", DelegateOptions{Keys: pubs, Threshold: 2, Repositories: []string{"registry.corp.example/team/**"}, Terminating: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(saved.Published) != 0 {
		t.Fatalf("delegation published before the role has metadata: %+v", saved)
	}
	// Outside the role's paths: refused, nothing changes.
	if _, err := r.Sign("releases", []Binding{bind(t, "registry.corp.example/other/app:1", "x")}, privs[:1]); !errors.Is(err, ErrNotCovered) {
		t.Fatalf("outside paths: %v", err)
	}
	// A key the role does not list: refused.
	if _, err := r.Sign("releases", []Binding{bind(t, "registry.corp.example/team/app:1", "x")}, nil); !errors.Is(err, ErrThreshold) {
		t.Fatalf("no team key: %v", err)
	}
	res, err := r.Sign("releases", []Binding{bind(t, "registry.corp.example/team/app:1", "team")}, privs[:1])
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Published) != 0 {
		t.Fatalf("published with 1 of 2 signatures: %+v", res)
	}
	r.Close()
	r = open(t, dir) // pending survives
	saved, err = r.SignMetadata("releases", privs[1:])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(saved.Published, " "), "releases") {
		t.Fatalf("not published with 2 of 2: %+v", saved)
	}
	url, root := serve(t, dir), rootOf(t, dir)
	if _, err := goTUF(t, url, root, "registry.corp.example/team/app:1"); err != nil {
		t.Fatalf("go-tuf: %v", err)
	}
	si, err := trustdSync(t, url, root)
	if err != nil {
		t.Fatal(err)
	}
	if d := decide(t, si, `signers = ["releases"]`, "registry.corp.example/team/app:1", dg("team")); !d.Allowed {
		t.Fatalf("denied: %s", d.Reason)
	}
	if d := decide(t, si, `signers = ["releases"]`, "registry.corp.example/team/app:1", dg("other")); d.Allowed {
		t.Fatal("moved tag allowed")
	}
}

// TestCrashBetweenStageAndPublish: a failure after the new version's files
// are staged leaves the previous version, which both readers load; the
// next command publishes.
func TestCrashBetweenStageAndPublish(t *testing.T) {
	dir := newRepo(t, InitOptions{})
	r := open(t, dir)
	if _, err := r.Sign(RoleTargets, []Binding{bind(t, "registry.corp.example/app:1", "one")}, nil); err != nil {
		t.Fatal(err)
	}
	crash := errors.New("crash")
	r.afterStage = func() error { return crash }
	if _, err := r.Sign(RoleTargets, []Binding{bind(t, "registry.corp.example/app:1", "two")}, nil); !errors.Is(err, crash) {
		t.Fatalf("want the injected crash, got %v", err)
	}
	r.Close()
	url, root := serve(t, dir), rootOf(t, dir)
	tf, err := goTUF(t, url, root, "registry.corp.example/app:1")
	if err != nil || tf.Length != 3 {
		t.Fatalf("go-tuf after the crash: %v %+v", err, tf)
	}
	si, err := trustdSync(t, url, root)
	if err != nil {
		t.Fatal(err)
	}
	if d := decide(t, si, "", "registry.corp.example/app:1", dg("one")); !d.Allowed {
		t.Fatalf("after the crash: %s", d.Reason)
	}
	r = open(t, dir)
	if _, err := r.Sign(RoleTargets, []Binding{bind(t, "registry.corp.example/app:1", "two")}, nil); err != nil {
		t.Fatalf("after the crash: %v", err)
	}
	if tf, err := goTUF(t, url, root, "registry.corp.example/app:1"); err != nil || tf.Length != 3 || fmt.Sprintf("sha256:%x", []byte(tf.Hashes["sha256"])) != string(dg("two")) {
		t.Fatalf("go-tuf after the retry: %v %+v", err, tf)
	}
}

// TestRotateRootAndRefresh: a new root signed by the old and new keys is
// followed by both readers; refresh re-signs the timestamp.
func TestRotateRootAndRefresh(t *testing.T) {
	dir := newRepo(t, InitOptions{RootKeys: 2, RootThreshold: 2})
	url, root := serve(t, dir), rootOf(t, dir)
	r := open(t, dir)
	rot, err := r.Rotate(RoleRoot)
	if err != nil {
		t.Fatal(err)
	}
	if len(rot.NewKeys) != 2 || len(rot.Retired) != 2 {
		t.Fatalf("rotate: %+v", rot)
	}
	if _, err := r.Rotate(RoleTimestamp); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sign(RoleTargets, []Binding{bind(t, "registry.corp.example/app:1", "one")}, nil); err != nil {
		t.Fatal(err)
	}
	before := r.timestamp.Signed.Version
	res, err := r.Refresh(25*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.timestamp.Signed.Version != before+1 || len(res.Expiring) != 0 {
		t.Fatalf("refresh: %+v, timestamp %d → %d", res, before, r.timestamp.Signed.Version)
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata", "3.root.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := goTUF(t, url, root, "registry.corp.example/app:1"); err != nil {
		t.Fatalf("go-tuf across the rotation: %v", err)
	}
	if _, err := trustdSync(t, url, root); err != nil {
		t.Fatalf("trustd across the rotation: %v", err)
	}
	res, err = r.Refresh(200*24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Expiring) != 1 || !strings.HasPrefix(res.Expiring[0], "targets expires") {
		t.Fatalf("targets expiring within the margin not reported: %+v", res.Expiring)
	}
}

// TestTUFPathsCoverExactly: a delegation's paths from a policy pattern
// cover exactly the target names of the repositories the pattern matches.
func TestTUFPathsCoverExactly(t *testing.T) {
	repos := []string{
		"registry.corp.example/team", "registry.corp.example/team/app", "registry.corp.example/team/a/b/c",
		"registry.corp.example/teams/app", "registry.corp.example/app-1", "registry.corp.example/app",
		"other.example/team/app", "registry.corp.example:5000/team/app", "docker.io/library/nginx", "docker.io/team/app",
	}
	for _, pat := range []string{"registry.corp.example/team/**", "registry.corp.example/app-*", "**", "*.corp.example/**", "nginx", "registry.corp.example/**/app", "registry.corp.example:5000/**"} {
		t.Run(pat, func(t *testing.T) {
			paths, err := TUFPaths(pat)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := policy.ParsePattern(pat)
			dr := &metadata.DelegatedRole{Paths: paths}
			for _, repo := range repos {
				name := repo + ":v1.2"
				if got, want := verify.MatchTUFDelegation(dr, name), p.Match(repo); got != want {
					t.Errorf("%s: paths %v cover it %v, the pattern matches it %v", name, paths, got, want)
				}
				if ok, _ := dr.IsDelegatedPath(name); ok != p.Match(repo) {
					t.Errorf("%s: go-tuf's matcher disagrees", name)
				}
			}
		})
	}
}
