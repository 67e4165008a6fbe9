package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/test/harness"
)

const (
	// dctSource is the name of the notary source in TestNotary's policies.
	dctSource = "dct"
	// releasesRole is the delegation Docker signs with (`docker trust sign`).
	releasesRole = "targets/releases"
	// fragPinHint is what a denial for want of a trust pin tells to set.
	fragPinHint = "root_keys"
)

// notaryPolicy is one of TestNotary's host policies: the stack's [daemon]
// settings (with their own cache directory), one notary source for
// <registry>/notary/** and a verify rule for it, then deny.
type notaryPolicy struct {
	CacheDir string
	TOFU     bool     // trust_on_first_use
	RootKeys []string // a [[source.pin]] for <registry>/notary/** with these root_keys; none: no pin
}

// writeNotaryPolicy replaces the stack's policy file with p, for the
// Notary server at serverURL. The source lists the repository repo
// literally too, so that `trustd sync` fetches it before anything asks.
func writeNotaryPolicy(t *testing.T, s *harness.Stack, serverURL, repo string, p notaryPolicy) {
	t.Helper()
	d := s.Policy
	pattern := s.Registry + "/notary/**"
	var b strings.Builder
	fmt.Fprintf(&b, `# TestNotary (test/e2e/notary_test.go)
version = 1
mode = "enforce"

[daemon]
cache_dir = %q
refresh = "1s"
nri_socket = %q
containerd_address = %q
containerd_namespace = "k8s.io"
control_socket = %q

[[source]]
name = %q
kind = "notary"
url = %q
repositories = [%q, %q]
trust_on_first_use = %v
`, p.CacheDir, d.NRISocket, d.ContainerdAddress, d.ControlSocket, dctSource, serverURL, pattern, repo, p.TOFU)
	if len(p.RootKeys) > 0 {
		keys := make([]string, len(p.RootKeys))
		for i, k := range p.RootKeys {
			keys[i] = fmt.Sprintf("%q", k)
		}
		fmt.Fprintf(&b, `  [[source.pin]]
  repositories = [%q]
  root_keys = [%s]
`, pattern, strings.Join(keys, ", "))
	}
	fmt.Fprintf(&b, `
[[rule]]
images = [%q]
action = "verify"
source = %q

[[rule]]
images = ["**"]
action = "deny"
`, pattern, dctSource)
	tmp := s.PolicyPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, s.PolicyPath); err != nil {
		t.Fatal(err)
	}
	if res := s.CLI(t, "policy", "check", s.PolicyPath); res.ExitCode != 0 {
		t.Fatalf("trustd policy check: exit %d\n%s%s\npolicy:\n%s", res.ExitCode, res.Stdout, res.Stderr, b.String())
	}
}

// TestNotary runs trustd against a real Notary v1 server (Debian's
// notary-server, signed with the real notary CLI as Docker Content Trust
// does) on one node, in order:
//
//  1. a tag signed in targets/releases (through a delegation) is pulled
//     through CRI and runs;
//  2. an unsigned tag of the same repository is refused at pull;
//  3. the same, side-loaded from a docker save tar, is refused at creation;
//  4. a tag signed in targets with digest A and in targets/releases with
//     digest B: targets/releases wins, A is refused, B runs;
//  5. `trustd inspect` lists the signed tags, their digests and signers;
//  6. trust pinning, each on a fresh cache: without trust on first use and
//     without a pin, refused with a reason that tells which root_keys to
//     pin; pinned to the real root key, allowed; pinned to another key or
//     to the root's public key ID, refused;
//  7. with notary-server stopped (its data gone) and trustd restarted,
//     decisions 1-5 are unchanged, from the cache.
//
// Each decision is also asked of `trustd verify --json`, which must agree.
func TestNotary(t *testing.T) {
	harness.Prereqs(t)
	harness.NotaryPrereqs(t)
	start := time.Now()
	s := harness.StartStack(t, harness.StackOptions{})
	ns := harness.StartNotaryServer(t)
	nc := ns.Client(t)
	e := &env{Stack: s}

	signed := newImage(t, s, "notary/hello:1.0", "notary: image signed in targets/releases running")
	unsigned := newImage(t, s, "notary/hello:unsigned", "notary: unsigned tag running")
	sideloaded := newImage(t, s, "notary/hello:sideloaded", "notary: side-loaded unsigned tag running")
	inTargets := newImage(t, s, "notary/hello:2.0", "notary: 2.0 as signed in targets")
	inReleases := newImage(t, s, "notary/hello:2.0", "notary: 2.0 as signed in targets/releases")
	repo := signed.repo(t)
	gun := repo // Docker's GUN is the normalised repository name

	manifests := map[digest.Digest][]byte{}
	for _, i := range []image{signed, unsigned, inTargets, inReleases} {
		d, m := harness.ManifestOf(t, i.img)
		if d != i.manifest {
			t.Fatalf("%s: manifest %s, built as %s", i.ref, d, i.manifest)
		}
		manifests[d] = m
	}
	harness.Push(t, signed.ref, signed.img)
	harness.Push(t, unsigned.ref, unsigned.img)

	// Sign as `docker trust sign` does for a signer: 1.0 and 2.0 in
	// targets/releases; 2.0 also, with another digest, in targets.
	signStart := time.Now()
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
		{"1.0", signed, []string{releasesRole}},
		{"2.0", inReleases, []string{releasesRole}},
		{"2.0", inTargets, nil},
	} {
		if err := nc.AddManifest(gun, a.tag, manifests[a.img.manifest], a.roles...); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Publish(gun); err != nil {
		t.Fatal(err)
	}
	rootKeys, err := nc.RootKeyIDs(gun)
	if err != nil {
		t.Fatal(err)
	}
	// Sanity: the server has what was signed. notary list resolves 2.0
	// from targets; Docker and trustd from targets/releases.
	if list, err := nc.List(gun, releasesRole); err != nil || len(list) != 2 {
		t.Fatalf("notary list --roles %s: %+v, %v: want 1.0 and 2.0", releasesRole, list, err)
	}
	t.Logf("%s signed on %s in %v (root keys %v)", gun, ns.URL(), time.Since(signStart).Round(time.Millisecond), rootKeys)

	tofu := notaryPolicy{CacheDir: s.Policy.CacheDir, TOFU: true}
	writeNotaryPolicy(t, s, ns.URL(), repo, tofu)
	s.Sync(t)
	s.StartTrustd(t)
	e.pod = s.Node.RunPod(t, "notary", "default")
	t.Logf("node, registry, notary-server and trustd up in %v", time.Since(start).Round(time.Millisecond))

	sideloadedTar := filepath.Join(t.TempDir(), "sideloaded.tar")

	scenarios := []struct {
		name  string
		setup func(t *testing.T)
		check func(t *testing.T)
	}{{
		name: "1 tag signed in targets/releases pulled and run",
		check: func(t *testing.T) {
			id, err := s.Node.PullImage(signed.ref)
			if err != nil {
				t.Fatalf("CRI pull of signed %s blocked: %v", signed.ref, err)
			}
			if id != string(signed.config(t)) {
				t.Errorf("pulled image %s, want config %s", id, signed.config(t))
			}
			e.run(t, signed)
			notaryVerify(t, s, []string{signed.ref}, true, signed.manifest)
			notaryVerify(t, s, []string{signed.ref + "@" + string(signed.manifest)}, true, signed.manifest)
		},
	}, {
		name: "2 unsigned tag refused at pull",
		check: func(t *testing.T) {
			_, err := s.Node.PullImage(unsigned.ref)
			assertDenied(t, "CRI pull", err, repo, fragNotSigned)
			if id, _ := s.Node.ImageID(unsigned.ref); id != "" {
				t.Errorf("blocked image %s is on the node as %s", unsigned.ref, id)
			}
			notaryVerify(t, s, []string{unsigned.ref}, false, "", repo, fragNotSigned)
		},
	}, {
		name: "3 unsigned tag side-loaded from a tar refused at creation",
		setup: func(t *testing.T) {
			harness.DockerSaveTar(t, sideloadedTar, map[string]v1.Image{sideloaded.ref: sideloaded.img})
			s.Node.ImportArchive(t, sideloadedTar, sideloaded.ref)
		},
		check: func(t *testing.T) {
			_, err := e.create(t, sideloaded)
			assertDenied(t, "creation", err, repo, fragNotSigned)
			notaryVerify(t, s, []string{"--archive", sideloadedTar}, false, "", repo, fragNotSigned)
		},
	}, {
		name: "4 targets/releases wins over targets",
		setup: func(t *testing.T) {
			// The registry's 2.0 is first what targets signed: refused.
			harness.Push(t, inTargets.ref, inTargets.img)
			_, err := s.Node.PullImage(inTargets.ref)
			assertDenied(t, "CRI pull of the digest signed in targets", err, repo, string(inTargets.manifest), fragNotDigest)
			// Then what targets/releases signed.
			harness.Push(t, inReleases.ref, inReleases.img)
		},
		check: func(t *testing.T) {
			notaryVerify(t, s, []string{inTargets.ref + "@" + string(inTargets.manifest)}, false, inTargets.manifest, repo, fragNotDigest)
			id, err := s.Node.PullImage(inReleases.ref)
			if err != nil {
				t.Fatalf("CRI pull of %s (the digest signed in targets/releases) blocked: %v", inReleases.ref, err)
			}
			if id != string(inReleases.config(t)) {
				t.Errorf("pulled image %s, want config %s", id, inReleases.config(t))
			}
			e.run(t, inReleases)
			notaryVerify(t, s, []string{inReleases.ref}, true, inReleases.manifest)
		},
	}, {
		name: "5 inspect lists the signed tags and their signers",
		check: func(t *testing.T) {
			checkInspect(t, s, repo, rootKeys, map[string]map[string]image{
				"1.0": {releasesRole: signed},
				"2.0": {releasesRole: inReleases, "targets": inTargets},
			}, manifests)
		},
	}}

	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if sc.setup != nil {
				sc.setup(t)
			}
			sc.check(t)
		})
	}

	t.Run("6 trust pinning", func(t *testing.T) {
		pinDir := t.TempDir()
		// What `notary key list` shows for the root key: the ID of its
		// public key, not the certificate key ID that root.json lists and
		// Docker's trust pinning matches.
		var publicIDs []string
		keys, err := nc.Keys()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k.Role == "root" && !slices.Contains(rootKeys, k.ID) {
				publicIDs = append(publicIDs, k.ID)
			}
		}
		if len(publicIDs) != 1 {
			t.Fatalf("notary key list: root keys %+v, want one other than %v", keys, rootKeys)
		}
		other := sha256.Sum256([]byte("a key that never signed " + gun))
		howToPin := append([]string{fragPinHint}, rootKeys...) // root_keys = ["<the root key ID>"]
		for i, tc := range []struct {
			name     string
			rootKeys []string
			allowed  bool
			sync     []string // in `trustd sync`'s output
			pull     []string // in the pull's reason
		}{
			{"no trust on first use and no pin: refused, says what to pin", nil, false, howToPin, howToPin},
			{"pinned to the root key: allowed", rootKeys, true, nil, nil},
			{"pinned to another key: refused", []string{hex.EncodeToString(other[:])}, false, []string{fragPinHint}, nil},
			{"pinned to the root's public key ID: refused", publicIDs, false, howToPin, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := s.Trustd.Stop(); err != nil {
					t.Errorf("trustd on SIGTERM: %v", err)
				}
				// A fresh cache: a root trusted before would be kept
				// without asking the pin again (Notary's rule).
				p := notaryPolicy{CacheDir: filepath.Join(pinDir, fmt.Sprintf("cache-%d", i)), RootKeys: tc.rootKeys}
				writeNotaryPolicy(t, s, ns.URL(), repo, p)
				res := s.CLI(t, "sync", "--config", s.PolicyPath)
				if (res.ExitCode == 0) != tc.allowed {
					t.Errorf("trustd sync: exit %d, want success %v\nstdout:\n%s\nstderr:\n%s", res.ExitCode, tc.allowed, res.Stdout, res.Stderr)
				}
				for _, f := range tc.sync {
					if !strings.Contains(res.Stdout+res.Stderr, f) {
						t.Errorf("trustd sync does not say %q:\nstdout:\n%s\nstderr:\n%s", f, res.Stdout, res.Stderr)
					}
				}
				s.StartTrustd(t)

				_, err := s.Node.PullImage(signed.ref)
				if tc.allowed {
					if err != nil {
						t.Errorf("CRI pull of %s blocked: %v", signed.ref, err)
					}
					e.run(t, signed)
					notaryVerify(t, s, []string{signed.ref}, true, signed.manifest)
					return
				}
				assertDenied(t, "CRI pull", err, append([]string{repo}, tc.pull...)...)
				if err != nil {
					t.Logf("pull refused: %s", harness.Reason(err))
				}
				_, err = e.create(t, signed)
				assertDenied(t, "creation", err, repo)
				notaryVerify(t, s, []string{signed.ref}, false, "", repo)
			})
		}
	})

	t.Run("6b key rotations through the notary CLI are followed", func(t *testing.T) {
		if err := s.Trustd.Stop(); err != nil {
			t.Errorf("trustd on SIGTERM: %v", err)
		}
		p := notaryPolicy{CacheDir: filepath.Join(t.TempDir(), "cache"), TOFU: true}
		writeNotaryPolicy(t, s, ns.URL(), repo, p)
		s.Sync(t) // trusts the current root
		for _, r := range []struct {
			role   string
			remote bool
		}{{"targets", false}, {"root", false}, {"timestamp", true}} {
			if err := nc.RotateKey(gun, r.role, r.remote); err != nil {
				t.Fatalf("rotate %s: %v", r.role, err)
			}
		}
		if err := nc.AddManifest(gun, "3.0", manifests[inTargets.manifest], releasesRole); err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(gun); err != nil {
			t.Fatal(err)
		}
		newRoot, err := nc.RootKeyIDs(gun)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(newRoot, rootKeys) {
			t.Fatalf("root key unchanged after rotation: %v", newRoot)
		}
		res := s.CLI(t, "sync", "--config", s.PolicyPath)
		if res.ExitCode != 0 || !strings.Contains(res.Stdout, "1 updated") {
			t.Fatalf("sync after key rotations: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
		}
		notaryVerify(t, s, []string{repo + ":3.0@" + string(inTargets.manifest)}, true, inTargets.manifest)
		notaryVerify(t, s, []string{signed.ref}, true, signed.manifest)
		insp := s.CLI(t, "inspect", "--config", s.PolicyPath, repo)
		for _, id := range newRoot {
			if !strings.Contains(insp.Stdout, id) {
				t.Errorf("inspect does not show the rotated root key %s:\n%s", id, insp.Stdout)
			}
		}
		s.StartTrustd(t)
	})

	t.Run("7 notary-server stopped and trustd restarted: decisions unchanged", func(t *testing.T) {
		if err := s.Trustd.Stop(); err != nil {
			t.Errorf("trustd on SIGTERM: %v", err)
		}
		writeNotaryPolicy(t, s, ns.URL(), repo, tofu)
		if err := ns.Stop(); err != nil {
			t.Fatal(err)
		}
		if res := s.CLI(t, "sync", "--config", s.PolicyPath); res.ExitCode == 0 {
			t.Errorf("trustd sync exited 0 with notary-server down:\n%s%s", res.Stdout, res.Stderr)
		}
		s.StartTrustd(t)
		for _, sc := range scenarios {
			t.Run(sc.name, sc.check)
		}
	})
	t.Logf("TestNotary took %v", time.Since(start).Round(time.Millisecond))
}

// notaryVerify asks `trustd verify --json args...` and checks each verdict:
// allowed or not, the exit code, the digest when want is set; an allowed
// verdict must come from the notary source and be signed by
// targets/releases alone (every image TestNotary allows is), a denial's
// reason must have the fragments.
func notaryVerify(t *testing.T, s *harness.Stack, args []string, allowed bool, want digest.Digest, fragments ...string) {
	t.Helper()
	verdicts, res := s.Verify(t, args...)
	what := "trustd verify " + strings.Join(args, " ")
	if len(verdicts) == 0 {
		t.Errorf("%s: no verdict (exit %d)\nstdout:\n%s\nstderr:\n%s", what, res.ExitCode, res.Stdout, res.Stderr)
		return
	}
	wantExit := 0
	if !allowed {
		wantExit = 1
	}
	if res.ExitCode != wantExit {
		t.Errorf("%s: exit %d, want %d\nstderr:\n%s", what, res.ExitCode, wantExit, res.Stderr)
	}
	for _, v := range verdicts {
		if v.Allowed != allowed {
			t.Errorf("%s: allowed=%v (%s), the node decided allowed=%v", what, v.Allowed, v.Reason, allowed)
		}
		if want != "" && v.Digest != string(want) {
			t.Errorf("%s: digest %s, want %s", what, v.Digest, want)
		}
		if allowed {
			if v.Source != dctSource || !slices.Equal(v.Signers, []string{releasesRole}) {
				t.Errorf("%s: source %q signers %q, want %q and [%s]", what, v.Source, v.Signers, dctSource, releasesRole)
			}
			continue
		}
		for _, f := range fragments {
			if !strings.Contains(v.Reason, f) {
				t.Errorf("%s: reason %q lacks %q", what, v.Reason, f)
			}
		}
	}
}

// inspected is one object of `trustd inspect --json`.
type inspected struct {
	Repository string `json:"repository"`
	Source     string `json:"source"`
	Trust      struct {
		Tags map[string]map[string]struct {
			Digest digest.Digest `json:"digest"`
			Length int64         `json:"length"`
		} `json:"tags"`
		Order map[string][]string `json:"order"`
	} `json:"trust"`
	Error string `json:"error"`
}

// checkInspect checks that `trustd inspect` shows exactly the signed tags
// of repo (tag → role → image), with digests, lengths and signers, in JSON
// and as text, and the root key ID to pin.
func checkInspect(t *testing.T, s *harness.Stack, repo string, rootKeys []string, want map[string]map[string]image, manifests map[digest.Digest][]byte) {
	t.Helper()
	res := s.CLI(t, "inspect", "--config", s.PolicyPath, "--json", repo)
	if res.ExitCode != 0 {
		t.Fatalf("trustd inspect --json %s: exit %d\nstdout:\n%s\nstderr:\n%s", repo, res.ExitCode, res.Stdout, res.Stderr)
	}
	var got inspected
	if err := json.Unmarshal([]byte(res.Stdout), &got); err != nil {
		t.Fatalf("trustd inspect --json %s: %v\n%s", repo, err, res.Stdout)
	}
	if got.Repository != repo || got.Source != dctSource || got.Error != "" {
		t.Errorf("trustd inspect --json: repository %q source %q error %q, want %q from %q", got.Repository, got.Source, got.Error, repo, dctSource)
	}
	for tag, roles := range want {
		for role, img := range roles {
			sig, ok := got.Trust.Tags[tag][role]
			if !ok || sig.Digest != img.manifest || sig.Length != int64(len(manifests[img.manifest])) {
				t.Errorf("trustd inspect: %s by %s = %+v (present %v), want %s, %d bytes", tag, role, sig, ok, img.manifest, len(manifests[img.manifest]))
			}
		}
		if len(got.Trust.Tags[tag]) != len(roles) {
			t.Errorf("trustd inspect: %s signed by %v, want only %d roles", tag, slices.Sorted(maps.Keys(got.Trust.Tags[tag])), len(roles))
		}
		if order := got.Trust.Order[tag]; len(roles) > 1 && (len(order) == 0 || order[0] != releasesRole) {
			t.Errorf("trustd inspect: %s resolved in the order %v, want %s first", tag, order, releasesRole)
		}
	}
	if len(got.Trust.Tags) != len(want) {
		t.Errorf("trustd inspect: tags %v, want %v", slices.Sorted(maps.Keys(got.Trust.Tags)), slices.Sorted(maps.Keys(want)))
	}

	res = s.CLI(t, "inspect", "--config", s.PolicyPath, repo)
	if res.ExitCode != 0 {
		t.Fatalf("trustd inspect %s: exit %d\nstdout:\n%s\nstderr:\n%s", repo, res.ExitCode, res.Stdout, res.Stderr)
	}
	rows := map[string]string{} // "tag digest" → signers
	for line := range strings.Lines(res.Stdout) {
		if f := strings.Fields(line); len(f) >= 3 {
			rows[f[0]+" "+f[1]] = strings.Join(f[2:], " ")
		}
	}
	for tag, roles := range want {
		byDigest := map[digest.Digest][]string{}
		for role, img := range roles {
			byDigest[img.manifest] = append(byDigest[img.manifest], role)
		}
		for d, signers := range byDigest {
			slices.Sort(signers)
			if got := rows[tag+" "+string(d)]; !slices.Equal(sortedSigners(got), signers) {
				t.Errorf("trustd inspect: row %s %s lists signers %q, want %v\n%s", tag, d, got, signers, res.Stdout)
			}
		}
	}
	for _, id := range rootKeys {
		if !strings.Contains(res.Stdout, id) {
			t.Errorf("trustd inspect does not show the root key %s (what root_keys pins):\n%s", id, res.Stdout)
		}
	}
}

// sortedSigners splits a "role, role" list of inspect's text output.
func sortedSigners(s string) []string {
	var out []string
	for r := range strings.SplitSeq(s, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}
