// Package e2e runs trustd's enforcement scenarios end to end, as root, on
// one machine: the real trustd binary (as NRI plugin, image verifier and
// command line) in front of a real containerd and runc, with a loopback
// registry and a TUF repository signed by the test (see test/harness).
//
// One node is shared by the scenarios, in order: start-up is the expensive
// part. `go test ./test/e2e -run TestEnforcement -v` prints each step.
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/test/harness"
)

func TestMain(m *testing.M) {
	code := m.Run()
	harness.RemoveBuildDir()
	os.Exit(code)
}

// Fragments of trustd's reasons the scenarios rely on (the README's
// "Command line" and docs/SECURITY.md).
const (
	fragTrustd    = "trustd:"
	fragDenied    = "denied"
	fragNotSigned = "is not signed"
	fragNotDigest = "not the signed digest"
	fragNotConfig = "not the signed"
	fragNoPlugin  = `required plugin "trustd" not present`
)

// decisionTimeout bounds waiting for what follows a decision (a log line,
// containerd noticing that trustd is gone).
const decisionTimeout = 10 * time.Second

// image is a test image and where the scenarios put it.
type image struct {
	ref      string // normalised reference with tag
	img      v1.Image
	message  string // what its container prints
	manifest digest.Digest
}

// repo is the normalised repository of the image's reference: the name
// every denial carries.
func (i image) repo(t *testing.T) string {
	t.Helper()
	named, err := reference.ParseNormalizedNamed(i.ref)
	if err != nil {
		t.Fatal(err)
	}
	return named.Name()
}

func (i image) config(t *testing.T) digest.Digest { return harness.ConfigDigest(t, i.img) }

// env is the node the scenarios share.
type env struct {
	*harness.Stack
	pod *harness.Pod
	n   int // containers created, for unique names
}

func newImage(t *testing.T, s *harness.Stack, repoTag, message string) image {
	img := harness.BuildImage(t, repoTag+" "+message, message)
	d, _ := harness.ManifestOf(t, img)
	return image{ref: s.Ref(repoTag), img: img, message: message, manifest: d}
}

// TestEnforcement runs the scenarios on one node, in order:
//
//  1. a signed image is pulled through CRI, and its container created and started;
//  2. an unsigned image's CRI pull is blocked by the image verifier;
//  3. an unsigned image imported from a tar cannot be created;
//  4. a signed image loaded from a docker save tar (new manifest digest, same
//     config digest) is created;
//  7. a tag moved on the registry to an unsigned digest: pull blocked, and the
//     moved image, side-loaded, cannot be created;
//  5. with trustd stopped (or killed), nothing can be created;
//  6. with the TUF server down and trustd restarted, every decision of 1-4 and
//     7 is unchanged;
//  8. in audit mode the unsigned image runs and the would-be denial is logged.
//
// Each decision is also asked of `trustd verify`, which must agree. The
// scenarios depend on the ones before them: run TestEnforcement whole.
func TestEnforcement(t *testing.T) {
	harness.Prereqs(t)
	start := time.Now()
	s := harness.StartStack(t, harness.StackOptions{})
	e := &env{Stack: s}

	signed := newImage(t, s, "demo/hello:1.0", "signed image running")
	unsigned := newImage(t, s, "demo/unsigned:1.0", "unsigned image running")
	sideloaded := newImage(t, s, "demo/sideloaded:1.0", "side-loaded unsigned image running")
	saved := newImage(t, s, "demo/saved:1.0", "signed image from a docker save tar running")
	moved := newImage(t, s, "demo/moved:1.0", "signed image before the tag moved")
	movedTo := newImage(t, s, "demo/moved:1.0", "unsigned image the tag moved to")

	for _, p := range []struct {
		image
		sign bool
	}{{signed, true}, {unsigned, false}, {saved, true}, {moved, true}} {
		d, manifest := harness.Push(t, p.ref, p.img)
		if d != p.manifest {
			t.Fatalf("pushed %s as %s, built as %s", p.ref, d, p.manifest)
		}
		if p.sign {
			s.TUF.SetTarget(p.ref, manifest)
		}
	}
	if err := s.TUF.Publish(); err != nil {
		t.Fatal(err)
	}
	s.Sync(t)
	s.StartTrustd(t)
	e.pod = s.Node.RunPod(t, "e2e", "default")
	t.Logf("node, registry, TUF repository and trustd up in %v", time.Since(start).Round(time.Millisecond))

	tarDir := t.TempDir()
	sideloadedTar := filepath.Join(tarDir, "sideloaded.tar")
	savedTar := filepath.Join(tarDir, "saved.tar")
	movedTar := filepath.Join(tarDir, "moved.tar")

	// Each scenario sets its images up once, then checks decisions that
	// scenario 6 checks again once trustd runs from its cache alone.
	scenarios := []struct {
		name  string
		setup func(t *testing.T)
		check func(t *testing.T)
	}{{
		name: "1 signed image pulled and run",
		check: func(t *testing.T) {
			id, err := s.Node.PullImage(signed.ref)
			if err != nil {
				t.Fatalf("CRI pull of signed %s blocked: %v", signed.ref, err)
			}
			if id != string(signed.config(t)) {
				t.Errorf("pulled image %s, want config %s", id, signed.config(t))
			}
			e.run(t, signed)
			e.verify(t, []string{signed.ref}, true, signed.manifest)
			e.verify(t, []string{signed.ref + "@" + string(signed.manifest)}, true, signed.manifest)
		},
	}, {
		name: "2 unsigned image pull blocked",
		check: func(t *testing.T) {
			_, err := s.Node.PullImage(unsigned.ref)
			assertDenied(t, "CRI pull", err, unsigned.repo(t), fragNotSigned)
			if id, _ := s.Node.ImageID(unsigned.ref); id != "" {
				t.Errorf("blocked image %s is on the node as %s", unsigned.ref, id)
			}
			e.verify(t, []string{unsigned.ref}, false, "", unsigned.repo(t), fragNotSigned)
		},
	}, {
		name: "3 unsigned image imported from a tar rejected",
		setup: func(t *testing.T) {
			harness.DockerSaveTar(t, sideloadedTar, map[string]v1.Image{sideloaded.ref: sideloaded.img})
			s.Node.ImportArchive(t, sideloadedTar, sideloaded.ref)
		},
		check: func(t *testing.T) {
			_, err := e.create(t, sideloaded)
			assertDenied(t, "creation", err, sideloaded.repo(t), fragNotSigned)
			e.verify(t, []string{"--archive", sideloadedTar}, false, "", sideloaded.repo(t), fragNotSigned)
		},
	}, {
		name: "4 signed image from a docker save tar runs",
		setup: func(t *testing.T) {
			harness.DockerSaveTar(t, savedTar, map[string]v1.Image{saved.ref: saved.img})
			s.Node.ImportArchive(t, savedTar, saved.ref)
			if d := e.storedManifest(t, saved.ref); d == saved.manifest {
				t.Fatalf("import kept manifest %s: the scenario needs a re-encoded manifest", d)
			}
		},
		check: func(t *testing.T) {
			e.run(t, saved)
			e.verify(t, []string{"--archive", savedTar}, true, "")
			e.verify(t, []string{saved.ref}, true, saved.manifest)
		},
	}, {
		name: "7 tag moved to an unsigned digest",
		setup: func(t *testing.T) {
			// The signed image runs under the name first, so trustd has
			// seen what the store bound the name to before it moves.
			if _, err := s.Node.PullImage(moved.ref); err != nil {
				t.Fatalf("CRI pull of signed %s blocked: %v", moved.ref, err)
			}
			e.run(t, moved)
			d, _ := harness.Push(t, movedTo.ref, movedTo.img) // the registry's tag now names another image
			if d == moved.manifest || d != movedTo.manifest {
				t.Fatalf("moved tag to %s, want %s (was %s)", d, movedTo.manifest, moved.manifest)
			}
			harness.DockerSaveTar(t, movedTar, map[string]v1.Image{movedTo.ref: movedTo.img})
			s.Node.ImportArchive(t, movedTar, movedTo.ref) // side-loaded anyway
		},
		check: func(t *testing.T) {
			_, err := s.Node.PullImage(movedTo.ref)
			assertDenied(t, "CRI pull", err, movedTo.repo(t), string(movedTo.manifest), fragNotDigest)
			e.verify(t, []string{movedTo.ref + "@" + string(movedTo.manifest)}, false, movedTo.manifest, movedTo.repo(t), fragNotDigest)

			_, err = e.create(t, movedTo)
			assertDenied(t, "creation", err, movedTo.repo(t), string(movedTo.config(t)), fragNotConfig)
			e.verify(t, []string{"--archive", movedTar}, false, "", movedTo.repo(t))
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

	t.Run("5 trustd stopped rejects creation", func(t *testing.T) {
		if err := s.Trustd.Stop(); err != nil {
			t.Errorf("trustd on SIGTERM: %v", err)
		}
		if err := s.Trustd.WaitNotification("STOPPING=1", time.Second); err != nil {
			t.Errorf("shutdown not announced to systemd: %v", err)
		}
		e.assertNoPlugin(t, signed)
	})

	t.Run("5b trustd killed rejects creation", func(t *testing.T) {
		s.StartTrustd(t).Kill() // a crash: no goodbye to containerd
		e.assertNoPlugin(t, signed)
	})

	t.Run("6 TUF server down and trustd restarted: decisions unchanged", func(t *testing.T) {
		if err := s.TUF.Stop(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.TUF.Start() })
		if res := s.CLI(t, "sync", "--config", s.PolicyPath); res.ExitCode == 0 {
			t.Errorf("trustd sync exited 0 with the TUF server down:\n%s%s", res.Stdout, res.Stderr)
		}
		if st := s.CLI(t, "status", "--config", s.PolicyPath); !strings.Contains(st.Stdout, "UNREACHABLE since") || !strings.Contains(st.Stdout, "cached data in force") {
			t.Errorf("trustd status does not show the unreachable source and its cached data:\n%s", st.Stdout)
		}
		s.StartTrustd(t)
		for _, sc := range scenarios {
			t.Run(sc.name, sc.check)
		}
	})

	t.Run("8 audit mode runs the unsigned image and logs the denial", func(t *testing.T) {
		if err := s.Trustd.Stop(); err != nil {
			t.Errorf("trustd on SIGTERM: %v", err)
		}
		s.SetMode(t, "audit")
		t.Cleanup(func() { s.SetMode(t, "enforce") })
		td := s.StartTrustd(t)
		// Pulled: the image verifier reads the same policy.
		if _, err := s.Node.PullImage(unsigned.ref); err != nil {
			t.Fatalf("CRI pull of unsigned %s blocked in audit mode: %v", unsigned.ref, err)
		}
		e.run(t, unsigned)
		// Side-loaded: only the NRI path sees it, so the line is its.
		audited := newImage(t, s, "demo/audited:1.0", "side-loaded unsigned image running in audit mode")
		tar := filepath.Join(t.TempDir(), "audited.tar")
		harness.DockerSaveTar(t, tar, map[string]v1.Image{audited.ref: audited.img})
		s.Node.ImportArchive(t, tar, audited.ref)
		e.run(t, audited)
		line, err := td.WaitLog(decisionTimeout, `"msg":"decision"`, `"decision":"audit"`, audited.repo(t))
		if err != nil {
			t.Fatalf("%v\ntrustd log:\n%s", err, td.Logs())
		}
		t.Logf("audit: %s", line)
	})
}

// assertNoPlugin checks that with trustd gone, creating a container from i
// is rejected by NRI's required plugin check. containerd notices a closed
// connection at once, but this polls briefly rather than race it; a
// creation that succeeds fails the test at once.
func (e *env) assertNoPlugin(t *testing.T, i image) {
	t.Helper()
	deadline := time.Now().Add(decisionTimeout)
	for {
		id, err := e.create(t, i)
		if err == nil {
			t.Fatalf("container %s created with trustd gone", id)
		}
		if strings.Contains(err.Error(), fragNoPlugin) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("creation error lacks %q:\n%v", fragNoPlugin, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitPlugin waits until a creation from i (an image trustd allows) is no
// longer refused for a missing plugin, removing what it creates.
func (e *env) waitPlugin(t *testing.T, i image) {
	t.Helper()
	deadline := time.Now().Add(decisionTimeout)
	for {
		id, err := e.create(t, i)
		if err == nil {
			_ = e.Node.RemoveContainer(id)
			return
		}
		if !strings.Contains(err.Error(), fragNoPlugin) || time.Now().After(deadline) {
			t.Fatalf("creation of %s: %v", i.ref, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// create creates a container from i in the shared pod, under a new name.
func (e *env) create(t *testing.T, i image) (string, error) {
	t.Helper()
	e.n++
	return e.Node.CreateContainer(e.pod.ID, e.pod.Config, fmt.Sprintf("c%d", e.n), i.ref)
}

// run creates and starts a container from i and waits for its message.
func (e *env) run(t *testing.T, i image) {
	t.Helper()
	id, err := e.create(t, i)
	if err != nil {
		t.Fatalf("creation of %s rejected: %v", i.ref, err)
	}
	if err := e.Node.StartContainer(id); err != nil {
		t.Fatalf("start %s: %v", i.ref, err)
	}
	if err := e.Node.WaitContainerLog(id, i.message, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// storedManifest is the manifest digest containerd's image store has for ref.
func (e *env) storedManifest(t *testing.T, ref string) digest.Digest {
	t.Helper()
	img, err := e.Node.Client.GetImage(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return img.Target().Digest
}

// verify asks `trustd verify --json args...` for one verdict and checks it:
// allowed or not, the exit code, the digest when want is set, and that a
// denial's reason has the fragments of the NRI or verifier path's.
func (e *env) verify(t *testing.T, args []string, allowed bool, want digest.Digest, fragments ...string) {
	t.Helper()
	verdicts, res := e.Verify(t, args...)
	if len(verdicts) == 0 {
		t.Errorf("trustd verify %s: no verdict (exit %d)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.ExitCode, res.Stdout, res.Stderr)
		return
	}
	wantExit := 0
	if !allowed {
		wantExit = 1
	}
	if res.ExitCode != wantExit {
		t.Errorf("trustd verify %s: exit %d, want %d", strings.Join(args, " "), res.ExitCode, wantExit)
	}
	for _, v := range verdicts {
		if v.Allowed != allowed {
			t.Errorf("trustd verify %s: allowed=%v (%s), the node decided allowed=%v", strings.Join(args, " "), v.Allowed, v.Reason, allowed)
		}
		if want != "" && v.Digest != string(want) {
			t.Errorf("trustd verify %s: digest %s, want %s", strings.Join(args, " "), v.Digest, want)
		}
		if allowed && v.Source != "corp" {
			t.Errorf("trustd verify %s: source %q, want corp", strings.Join(args, " "), v.Source)
		}
		if !allowed {
			for _, f := range fragments {
				if !strings.Contains(v.Reason, f) {
					t.Errorf("trustd verify %s: reason %q lacks %q", strings.Join(args, " "), v.Reason, f)
				}
			}
		}
	}
}

// assertDenied checks that err is trustd's denial and that trustd's reason
// (not containerd's words around it) has fragments.
func assertDenied(t *testing.T, what string, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s allowed, want trustd's denial", what)
	}
	reason := harness.Reason(err)
	for _, f := range append([]string{fragTrustd, fragDenied}, fragments...) {
		if !strings.Contains(reason, f) {
			t.Errorf("%s: trustd's reason lacks %q:\n%s\n(error: %v)", what, f, reason, err)
		}
	}
}
