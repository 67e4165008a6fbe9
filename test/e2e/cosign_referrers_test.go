package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/trustd/trustd/test/harness"
)

// TestCosignReferrers runs a sigstore source against signatures that
// reach the node other than by cosign's tag scheme, made and carried by
// the real cosign CLI:
//
//   - pulled: an image signed in cosign v3's default format (a Sigstore
//     bundle attached through the OCI 1.1 referrers API) and one signed
//     in the simple-signing format attached through referrers
//     (--registry-referrers-mode=oci-1-1) are pulled and run; an unsigned
//     one is refused at pull;
//   - side-loaded: images `cosign save`d (one per format) are judged
//     before import by `trustd verify --archive` with the signatures
//     they carry, their signatures imported (--import), the images loaded
//     with `ctr images import` with the registry gone, and their
//     containers created; an unsigned saved image is refused at creation;
//   - with trustd restarted and the registry gone, every decision stands.
func TestCosignReferrers(t *testing.T) {
	harness.Prereqs(t)
	harness.CosignPrereqs(t)
	tools, err := harness.FindTools()
	if err != nil {
		t.Fatal(err)
	}
	s := harness.StartStack(t, harness.StackOptions{})
	reg, stopRegistry := harness.StartStoppableRegistry(t, registry.WithReferrersSupport(true))
	if err := s.Node.AddRegistry(reg); err != nil {
		t.Fatal(err)
	}
	e := &env{Stack: s}
	at := func(i image) string { return i.repo(t) + "@" + string(i.manifest) }
	push := func(repoTag, message string) image {
		i := newImage(t, s, repoTag, message)
		i.ref = strings.Replace(i.ref, s.Registry, reg, 1)
		harness.Push(t, i.ref, i.img)
		return i
	}
	bundled := push("cosign/app:bundle", "cosign: bundle-signed image running")
	simple := push("cosign/app:simple", "cosign: referrer-signed image running")
	unsigned := push("cosign/app:unsigned", "cosign: unsigned image running")
	savedBundle := push("cosign/side:bundle", "cosign: side-loaded bundle-signed image running")
	savedSimple := push("cosign/side:simple", "cosign: side-loaded tag-scheme-signed image running")
	savedUnsigned := push("cosign/side:unsigned", "cosign: side-loaded unsigned image running")

	key, pub := cosignKeyPair(t, tools.Cosign)
	id := cosignKeyID(t, pub)
	cosignSignWith(t, tools.Cosign, key, at(bundled))
	cosignSignWith(t, tools.Cosign, key, at(simple), "--new-bundle-format=false", "--registry-referrers-mode=oci-1-1")
	cosignSignWith(t, tools.Cosign, key, at(savedBundle))
	cosignSign(t, tools.Cosign, key, at(savedSimple))

	// The side-loaded images leave the registry as `cosign save` writes
	// them: OCI layout directories, tarred for `ctr images import`.
	save := func(i image) (string, string) {
		dir := filepath.Join(t.TempDir(), "layout")
		cmd := exec.Command(tools.Cosign, "save", "--allow-insecure-registry", "--dir", dir, at(i))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cosign save %s: %v\n%s", at(i), err, out)
		}
		tarPath := dir + ".tar"
		harness.TarDir(t, dir, tarPath)
		return dir, tarPath
	}
	bundleDir, bundleTar := save(savedBundle)
	simpleDir, simpleTar := save(savedSimple)
	unsignedDir, unsignedTar := save(savedUnsigned)

	writeCosignPolicy(t, s, "TestCosignReferrers (test/e2e/cosign_referrers_test.go)", reg, pub)
	s.Sync(t)
	s.StartTrustd(t)
	e.pod = s.Node.RunPod(t, "cosign", "default")
	byDigest := func(i image) image { i.ref = at(i); return i }

	t.Run("pulled: signatures attached through referrers", func(t *testing.T) {
		for _, i := range []image{simple, bundled} {
			if _, err := s.Node.PullImage(i.ref); err != nil {
				t.Errorf("CRI pull of %s blocked: %v", i.ref, err)
				continue
			}
			e.run(t, i)
		}
		_, err := s.Node.PullImage(unsigned.ref)
		assertDenied(t, "CRI pull of the unsigned image", err, unsigned.repo(t), string(unsigned.manifest), "is not signed by key "+id)
	})

	stopRegistry()
	t.Run("side-loaded: cosign save, trustd verify --archive --import, ctr images import", func(t *testing.T) {
		for _, c := range []struct {
			i        image
			dir, tar string
			allowed  bool
		}{{savedSimple, simpleDir, simpleTar, true}, {savedBundle, bundleDir, bundleTar, true}, {savedUnsigned, unsignedDir, unsignedTar, false}} {
			repo := c.i.repo(t)
			for _, path := range []string{c.dir, c.tar} {
				verdicts, res := s.Verify(t, "--archive", path, "--name", repo)
				if len(verdicts) != 1 || verdicts[0].Allowed != c.allowed || verdicts[0].Digest != string(c.i.manifest) {
					t.Errorf("trustd verify --archive %s (%s): exit %d, %+v\n%s", path, repo, res.ExitCode, verdicts, res.Stderr)
				}
			}
			// Judged with the archive's signatures only: the cache has none.
			if verdicts, _ := s.Verify(t, at(c.i)); len(verdicts) != 1 || verdicts[0].Allowed {
				t.Errorf("trustd verify %s before --import: %+v", at(c.i), verdicts)
			}
			res := s.CLI(t, "verify", "--config", s.PolicyPath, "--archive", c.dir, "--name", repo, "--import")
			if c.allowed && (res.ExitCode != 0 || !strings.Contains(res.Stderr, "1 new in the cache") || !strings.Contains(res.Stderr, "the running daemon reloaded its cache")) {
				t.Errorf("trustd verify --archive %s --import: exit %d\n%s%s", c.dir, res.ExitCode, res.Stdout, res.Stderr)
			}
			if _, err := s.Node.Ctr("images", "import", "--base-name", repo, "--digests", c.tar); err != nil {
				t.Fatalf("ctr images import %s: %v", c.tar, err)
			}
		}
		e.run(t, byDigest(savedSimple))
		e.run(t, byDigest(savedBundle))
		_, err := e.create(t, byDigest(savedUnsigned))
		assertDenied(t, "creation of the side-loaded unsigned image", err, savedUnsigned.repo(t), "is not signed by key "+id)
	})

	t.Run("registry gone, trustd restarted", func(t *testing.T) {
		if err := s.Trustd.Stop(); err != nil {
			t.Fatal(err)
		}
		s.StartTrustd(t)
		start := time.Now()
		// (Bundle-signed images last: run stops the subtest at a failure.)
		for _, i := range []image{simple, byDigest(savedSimple)} {
			e.run(t, i)
		}
		_, err := e.create(t, byDigest(savedUnsigned))
		assertDenied(t, "creation of the side-loaded unsigned image", err, savedUnsigned.repo(t), "is not signed by key "+id)
		for _, i := range []image{simple, savedSimple, bundled, savedBundle} {
			verdicts, res := s.Verify(t, at(i))
			if res.ExitCode != 0 || len(verdicts) != 1 || !verdicts[0].Allowed || verdicts[0].Source != "cosign" || strings.Join(verdicts[0].Signers, ",") != id {
				t.Errorf("trustd verify %s: exit %d, %+v", at(i), res.ExitCode, verdicts)
			}
		}
		for _, i := range []image{bundled, byDigest(savedBundle)} {
			e.run(t, i)
		}
		t.Logf("decided offline in %v", time.Since(start).Round(time.Millisecond))
	})
}
