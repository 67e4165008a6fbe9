package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trustd/trustd/test/harness"
)

// TestAirGapped: a node that never reaches a trust server. Its cache comes
// from a bundle exported on an online machine; its images are side-loaded
// with `ctr images import` from both tar forms. The signed image runs, the
// unsigned one is refused, and a restarted trustd keeps enforcing offline.
func TestAirGapped(t *testing.T) {
	harness.Prereqs(t)
	s := harness.StartStack(t, harness.StackOptions{})

	signed := newImage(t, s, "demo/hello:1.0", "signed image running on an air-gapped node")
	signedOCI := newImage(t, s, "demo/oci:1.0", "signed image from an OCI layout running")
	unsigned := newImage(t, s, "demo/unsigned:1.0", "unsigned image running")
	for _, i := range []image{signed, signedOCI} {
		_, manifest := harness.Push(t, i.ref, i.img)
		s.TUF.SetTarget(i.ref, manifest)
	}
	if err := s.TUF.Publish(); err != nil {
		t.Fatal(err)
	}

	// The online machine: sync (trust data and signed manifests), export.
	s.Sync(t)
	bundle := filepath.Join(t.TempDir(), "trust-bundle.json")
	if res := s.CLI(t, "cache", "export", "--config", s.PolicyPath, bundle); res.ExitCode != 0 {
		t.Fatalf("cache export: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}

	// The air-gapped node: the same pinned root, a trust server address
	// that nothing answers, an empty cache.
	p := s.Policy
	p.Mode, p.Refresh, p.DaemonExtra, p.Rules = "enforce", "1s", "", ""
	p.CacheDir = filepath.Join(filepath.Dir(s.PolicyPath), "airgap-cache")
	p.TUFURL = "http://127.0.0.1:9/metadata/"
	harness.WritePolicy(t, s.PolicyPath, p)
	if res := s.CLI(t, "sync", "--config", s.PolicyPath); res.ExitCode == 0 {
		t.Fatalf("sync succeeded with no route to the trust server:\n%s", res.Stdout)
	}
	res := s.CLI(t, "cache", "import", "--config", s.PolicyPath, bundle)
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "corp: imported") {
		t.Fatalf("cache import: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	// Importing the same bundle again changes nothing.
	if res := s.CLI(t, "cache", "import", "--config", s.PolicyPath, bundle); res.ExitCode != 0 || !strings.Contains(res.Stdout, "unchanged") {
		t.Fatalf("re-import: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	s.StartTrustd(t)
	e := &env{Stack: s, pod: s.Node.RunPod(t, "airgap", "default")}

	dir := t.TempDir()
	saveTar := filepath.Join(dir, "docker-save.tar")
	harness.DockerSaveTar(t, saveTar, map[string]v1.Image{signed.ref: signed.img, unsigned.ref: unsigned.img})
	ociTar := filepath.Join(dir, "oci-layout.tar")
	harness.OCILayoutTar(t, ociTar, map[string]v1.Image{signedOCI.ref: signedOCI.img})
	// Checked before they are loaded: the OCI layout keeps the signed
	// manifest; the docker save mixes a signed and an unsigned image.
	e.verify(t, []string{"--archive", ociTar}, true, signedOCI.manifest)
	if verdicts, res := s.Verify(t, "--archive", saveTar); res.ExitCode != 1 || len(verdicts) != 2 || verdicts[0].Allowed == verdicts[1].Allowed {
		t.Errorf("trustd verify --archive %s: exit %d, verdicts %+v", saveTar, res.ExitCode, verdicts)
	}
	s.Node.ImportArchive(t, saveTar, signed.ref, unsigned.ref)
	s.Node.ImportArchive(t, ociTar, signedOCI.ref)

	check := func(t *testing.T) {
		e.run(t, signed)
		e.run(t, signedOCI)
		_, err := e.create(t, unsigned)
		assertDenied(t, "creation of the unsigned image", err, unsigned.repo(t), fragNotSigned)
		e.verify(t, []string{signed.ref}, true, signed.manifest)
		e.verify(t, []string{unsigned.ref}, false, "", unsigned.repo(t), fragNotSigned)
	}
	t.Run("imported cache enforces", check)
	t.Run("trustd restarted offline keeps enforcing", func(t *testing.T) {
		if err := s.Trustd.Stop(); err != nil {
			t.Fatal(err)
		}
		s.StartTrustd(t)
		check(t)
		st := s.CLI(t, "status", "--config", s.PolicyPath)
		if !strings.Contains(st.Stdout, "source corp") || !strings.Contains(st.Stdout, "2 repositories") {
			t.Errorf("status:\n%s", st.Stdout)
		}
	})
}
