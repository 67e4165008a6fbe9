package e2e

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustd/trustd/test/harness"
)

// publishWait bounds waiting for the running daemon's sync (every second)
// to pick up what was just published.
const publishWait = 20 * time.Second

// TestPublish runs the publishing side as CI would, with the trustd
// binary's `trustd repo` commands and the repository's metadata served
// over loopback by a plain file server, on one node, in order:
//
//  1. an image is built and pushed, `trustd repo init` and `trustd repo
//     sign --insecure-registry` sign it, `trustd sync`, and with trustd
//     running the node pulls and runs it;
//  2. its tag moved on the registry without signing: the pull is blocked;
//  3. a role delegated to two teams with threshold 2: one team's signature
//     leaves it pending (the tag is refused), the second team's
//     `sign-metadata` publishes it, and the running daemon allows it;
//  4. `trustd repo rotate DIR root`, then a timestamp key rotation under
//     the new root: the running daemon follows both roots and allows a tag
//     signed after them;
//  5. Notary: a repository signed on a real notary-server as Docker
//     Content Trust does, decided by a notary source; `trustd repo
//     import-notary` from trustd's cache, the policy's rule switched to
//     the TUF source, and every verdict is the same.
func TestPublish(t *testing.T) {
	harness.Prereqs(t)
	s := harness.StartStack(t, harness.StackOptions{})
	e := &env{Stack: s}
	dir := filepath.Join(t.TempDir(), "tuf")
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(dir, "metadata"))))
	defer srv.Close()
	repoCLI := func(t *testing.T, args ...string) string {
		t.Helper()
		res := s.CLI(t, append([]string{"repo"}, args...)...)
		if res.ExitCode != 0 {
			t.Fatalf("trustd repo %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.ExitCode, res.Stdout, res.Stderr)
		}
		return res.Stdout
	}
	// pullWithin pulls ref until trustd allows it (the daemon's next sync).
	pullWithin := func(t *testing.T, ref string) {
		t.Helper()
		deadline := time.Now().Add(publishWait)
		for {
			_, err := s.Node.PullImage(ref)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRI pull of %s still blocked after %v: %v", ref, publishWait, err)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}

	app := newImage(t, s, "demo/app:1.0", "publish: signed with trustd repo, running")
	moved := newImage(t, s, "demo/app:1.0", "publish: the tag moved without signing")
	harness.Push(t, app.ref, app.img)
	out := repoCLI(t, "init", dir)
	if !strings.Contains(out, `kind = "tuf"`) {
		t.Fatalf("trustd repo init prints no source block:\n%s", out)
	}
	repoCLI(t, "sign", dir, app.ref, "--insecure-registry")
	s.Policy.TUFURL, s.Policy.TUFRoot = srv.URL+"/", filepath.Join(dir, "metadata", "1.root.json")
	harness.WritePolicy(t, s.PolicyPath, s.Policy)
	s.Sync(t)
	s.StartTrustd(t)
	e.pod = s.Node.RunPod(t, "publish", "default")

	t.Run("1 signed with trustd repo: pulled and run", func(t *testing.T) {
		if _, err := s.Node.PullImage(app.ref); err != nil {
			t.Fatalf("CRI pull of %s blocked: %v", app.ref, err)
		}
		e.run(t, app)
	})
	t.Run("2 tag moved without signing: pull blocked", func(t *testing.T) {
		harness.Push(t, moved.ref, moved.img)
		_, err := s.Node.PullImage(moved.ref)
		assertDenied(t, "CRI pull of the moved tag", err, app.repo(t), string(moved.manifest), fragNotDigest)
	})
	t.Run("3 two teams sign with threshold 2", func(t *testing.T) {
		keys := t.TempDir()
		teamA, teamB := filepath.Join(keys, "team-a"), filepath.Join(keys, "team-b")
		repoCLI(t, "keygen", teamA)
		repoCLI(t, "keygen", teamB)
		repoCLI(t, "delegate", dir, "teams", "--key", teamA+".pub", "--key", teamB+".pub", "--threshold", "2", "--repositories", s.Registry+"/demo/team/**", "--terminating")
		api := newImage(t, s, "demo/team/api:1.0", "publish: signed by two teams, running")
		harness.Push(t, api.ref, api.img)
		if out := repoCLI(t, "sign", dir, api.ref, "--insecure-registry", "--role", "teams", "--key", teamA); !strings.Contains(out, "1 of 2") {
			t.Fatalf("one team's signature does not leave the role pending:\n%s", out)
		}
		time.Sleep(2 * time.Second) // a daemon sync or two
		_, err := s.Node.PullImage(api.ref)
		assertDenied(t, "CRI pull signed by one team of two", err, api.repo(t), fragNotSigned)
		if out := repoCLI(t, "sign-metadata", dir, "teams", "--key", teamB); !strings.Contains(out, "teams, snapshot, timestamp") {
			t.Fatalf("the second team's signature does not publish the role:\n%s", out)
		}
		pullWithin(t, api.ref)
		e.run(t, api)
	})
	t.Run("4 root rotation followed by the running daemon", func(t *testing.T) {
		if out := repoCLI(t, "rotate", dir, "root"); !strings.Contains(out, "published: root") {
			t.Fatalf("rotate root:\n%s", out)
		}
		// The new timestamp key is in root 3 only, signed by root 2's
		// keys: a client that did not follow root 2 cannot verify it.
		if out := repoCLI(t, "rotate", dir, "timestamp"); !strings.Contains(out, "published: root") {
			t.Fatalf("rotate timestamp:\n%s", out)
		}
		v2 := newImage(t, s, "demo/app:2.0", "publish: signed after two root rotations, running")
		harness.Push(t, v2.ref, v2.img)
		repoCLI(t, "sign", dir, v2.ref, "--insecure-registry")
		pullWithin(t, v2.ref)
		e.run(t, v2)
	})
	t.Run("5 import-notary and the policy switch keep every verdict", func(t *testing.T) {
		harness.NotaryPrereqs(t)
		if err := s.Trustd.Stop(); err != nil {
			t.Errorf("trustd on SIGTERM: %v", err)
		}
		ns := harness.StartNotaryServer(t)
		nc := ns.Client(t)
		released := newImage(t, s, "notary/hello:1.0", "publish: signed in targets/releases")
		inTargets := newImage(t, s, "notary/hello:2.0", "publish: 2.0 as signed in targets")
		inReleases := newImage(t, s, "notary/hello:2.0", "publish: 2.0 as signed in targets/releases")
		onlyTargets := newImage(t, s, "notary/hello:3.0", "publish: 3.0 signed in targets only")
		unsigned := newImage(t, s, "notary/hello:unsigned", "publish: unsigned")
		for _, i := range []image{released, inReleases, onlyTargets, unsigned} {
			harness.Push(t, i.ref, i.img)
		}
		gun := released.repo(t)
		if err := nc.Init(gun); err != nil {
			t.Fatal(err)
		}
		if _, err := nc.AddDelegationKey(gun, releasesRole); err != nil {
			t.Fatal(err)
		}
		for _, a := range []struct {
			tag   string
			img   image
			roles []string
		}{
			{"1.0", released, []string{releasesRole}},
			{"2.0", inReleases, []string{releasesRole}},
			{"2.0", inTargets, nil},
			{"3.0", onlyTargets, nil},
		} {
			_, m := harness.ManifestOf(t, a.img.img)
			if err := nc.AddManifest(gun, a.tag, m, a.roles...); err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.Publish(gun); err != nil {
			t.Fatal(err)
		}
		// The references judged under both policies: tags as the registry
		// serves them, tags with a digest, digests only.
		var refs []string
		for _, i := range []image{released, inTargets, inReleases, onlyTargets, unsigned} {
			refs = append(refs, i.ref, i.ref+"@"+string(i.manifest), gun+"@"+string(i.manifest))
		}
		verdicts := func(t *testing.T) []harness.Verdict {
			t.Helper()
			var out []harness.Verdict
			for _, ref := range refs {
				v, res := s.Verify(t, ref)
				if len(v) != 1 {
					t.Fatalf("trustd verify %s: %d verdicts (exit %d)\n%s%s", ref, len(v), res.ExitCode, res.Stdout, res.Stderr)
				}
				out = append(out, v[0])
			}
			return out
		}
		notaryCache := filepath.Join(t.TempDir(), "cache")
		writeNotaryPolicy(t, s, ns.URL(), gun, notaryPolicy{CacheDir: notaryCache, TOFU: true})
		s.Sync(t)
		before := verdicts(t)
		if !slices.ContainsFunc(before, func(v harness.Verdict) bool { return v.Allowed }) {
			t.Fatalf("nothing allowed by the notary source: the comparison proves nothing: %+v", before)
		}

		out := repoCLI(t, "import-notary", dir, "--config", s.PolicyPath, "--source", dctSource, gun)
		for _, want := range []string{"changed: targets: " + gun + ":1.0", "targets/releases -> targets"} {
			if !strings.Contains(out, want) {
				t.Errorf("import-notary does not say %q:\n%s", want, out)
			}
		}
		// The policy switch: the same rule, naming the TUF source.
		s.Policy.Rules = `[[rule]]
images = ["{{.Registry}}/notary/**"]
action = "verify"
source = "corp"
`
		s.Policy.CacheDir = filepath.Join(t.TempDir(), "cache")
		harness.WritePolicy(t, s.PolicyPath, s.Policy)
		s.Sync(t)
		after := verdicts(t)
		for i, ref := range refs {
			b, a := before[i], after[i]
			if a.Allowed != b.Allowed || a.Digest != b.Digest {
				t.Errorf("%s: notary source: allowed=%v %s (%s); after import-notary and the switch: allowed=%v %s (%s)", ref, b.Allowed, b.Digest, b.Reason, a.Allowed, a.Digest, a.Reason)
			}
		}
		// And the node: the release's tag is pulled and runs, the tag
		// signed in targets only for a digest releases overrides is not.
		s.StartTrustd(t)
		if _, err := s.Node.PullImage(released.ref); err != nil {
			t.Fatalf("CRI pull of %s after the switch blocked: %v", released.ref, err)
		}
		e.run(t, released)
		harness.Push(t, inTargets.ref, inTargets.img)
		_, err := s.Node.PullImage(inTargets.ref)
		assertDenied(t, "CRI pull of the digest Notary's targets signed", err, gun, string(inTargets.manifest), fragNotDigest)
	})
}
