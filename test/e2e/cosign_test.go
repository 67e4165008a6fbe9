package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/test/harness"
)

// cosignKeyPair runs `cosign generate-key-pair` in a new directory (empty
// password) and returns the paths of cosign.key and cosign.pub.
func cosignKeyPair(t *testing.T, cosign string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(cosign, "generate-key-pair")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	return filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
}

// cosignSign signs ref (name@digest) with key in cosign's tag scheme
// (REPO:sha256-HEX.sig), without a transparency log, as the README says.
func cosignSign(t *testing.T, cosign, key, ref string) {
	t.Helper()
	cosignSignWith(t, cosign, key, ref, "--new-bundle-format=false")
}

// cosignSignWith signs ref with key, without a transparency log, in the
// format flags choose (none: cosign v3's default, a Sigstore bundle
// attached to the digest through referrers).
func cosignSignWith(t *testing.T, cosign, key, ref string, flags ...string) {
	t.Helper()
	args := append([]string{"sign", "--key", key, "--tlog-upload=false", "--yes",
		"--allow-insecure-registry", "--use-signing-config=false"}, flags...)
	cmd := exec.Command(cosign, append(args, ref)...)
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=")
	if slices.Contains(flags, "--registry-referrers-mode=oci-1-1") {
		cmd.Env = append(cmd.Env, "COSIGN_EXPERIMENTAL=1") // cosign requires it for that mode
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign sign %s: %v\n%s", ref, err, out)
	}
}

func cosignKeyID(t *testing.T, pub string) string {
	t.Helper()
	b, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	_, id, err := policy.ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestCosign runs a sigstore source (keyed) against images signed with the
// real cosign CLI in a loopback registry: the signed image is pulled
// (its signatures fetched at the pull) and runs; an unsigned image and one
// signed by another key are refused at pull, naming the rule's key; with
// the registry stopped and trustd restarted, the signed image still runs
// and `trustd verify` still decides, from the cache.
func TestCosign(t *testing.T) {
	harness.Prereqs(t)
	harness.CosignPrereqs(t)
	tools, err := harness.FindTools()
	if err != nil {
		t.Fatal(err)
	}
	s := harness.StartStack(t, harness.StackOptions{})
	reg, stopRegistry := harness.StartStoppableRegistry(t)
	if err := s.Node.AddRegistry(reg); err != nil {
		t.Fatal(err)
	}
	e := &env{Stack: s}
	ref := func(i image) string { return strings.Replace(i.ref, s.Registry, reg, 1) }
	at := func(i image) string { return ref(i) + "@" + string(i.manifest) }

	signed := newImage(t, s, "cosign/app:1.0", "cosign: signed image running")
	unsigned := newImage(t, s, "cosign/app:unsigned", "cosign: unsigned image running")
	other := newImage(t, s, "cosign/app:other", "cosign: image signed by another key running")
	for _, i := range []*image{&signed, &unsigned, &other} {
		i.ref = ref(*i)
		harness.Push(t, i.ref, i.img)
	}
	key, pub := cosignKeyPair(t, tools.Cosign)
	otherKey, _ := cosignKeyPair(t, tools.Cosign) // a key no rule names: its signatures are not kept
	cosignSign(t, tools.Cosign, key, at(signed))
	cosignSign(t, tools.Cosign, otherKey, at(other))
	id := cosignKeyID(t, pub)
	repo := signed.repo(t)

	writeCosignPolicy(t, s, "TestCosign (test/e2e/cosign_test.go)", reg, pub)
	s.Sync(t)
	s.StartTrustd(t)
	e.pod = s.Node.RunPod(t, "cosign", "default")

	check := func(t *testing.T) {
		e.run(t, signed)
		verdicts, res := s.Verify(t, at(signed))
		if res.ExitCode != 0 || len(verdicts) != 1 || !verdicts[0].Allowed || verdicts[0].Source != "cosign" || strings.Join(verdicts[0].Signers, ",") != id {
			t.Errorf("trustd verify %s: exit %d, %+v", at(signed), res.ExitCode, verdicts)
		}
		verdicts, res = s.Verify(t, at(unsigned))
		if res.ExitCode != 1 || len(verdicts) != 1 || verdicts[0].Allowed {
			t.Errorf("trustd verify %s: exit %d, %+v", at(unsigned), res.ExitCode, verdicts)
		}
	}
	t.Run("signed runs, unsigned and other key refused", func(t *testing.T) {
		pulled, err := s.Node.PullImage(signed.ref)
		if err != nil {
			t.Fatalf("CRI pull of signed %s blocked: %v", signed.ref, err)
		}
		if pulled != string(signed.config(t)) {
			t.Errorf("pulled image %s, want config %s", pulled, signed.config(t))
		}
		_, err = s.Node.PullImage(unsigned.ref)
		assertDenied(t, "CRI pull of the unsigned image", err, repo, string(unsigned.manifest), "is not signed by key "+id)
		_, err = s.Node.PullImage(other.ref)
		assertDenied(t, "CRI pull of the image signed by another key", err, repo, string(other.manifest), "is not signed by key "+id)
		check(t)
	})
	t.Run("registry gone, trustd restarted", func(t *testing.T) {
		stopRegistry()
		if err := s.Trustd.Stop(); err != nil {
			t.Fatal(err)
		}
		s.StartTrustd(t)
		start := time.Now()
		check(t)
		t.Logf("decided offline in %v", time.Since(start).Round(time.Millisecond))
		st := s.CLI(t, "status", "--config", s.PolicyPath)
		if !strings.Contains(st.Stdout, "source cosign (sigstore): ") || !strings.Contains(st.Stdout, "1 repositories, 1 signed digests") {
			t.Errorf("status:\n%s%s", st.Stdout, st.Stderr)
		}
	})
}

// writeCosignPolicy writes the stack's policy: one sigstore source over
// reg, whose rule names the key pub; everything else denied.
func writeCosignPolicy(t *testing.T, s *harness.Stack, title, reg, pub string) {
	t.Helper()
	writeSigstorePolicy(t, s, title, reg, "", fmt.Sprintf("keys = [%q]", pub))
}

// writeSigstorePolicy writes the stack's policy: one sigstore source over
// reg (with the lines source added), whose rule has the lines signers
// (keys, identities); everything else denied.
func writeSigstorePolicy(t *testing.T, s *harness.Stack, title, reg, source, signers string) {
	t.Helper()
	d := s.Policy
	doc := fmt.Sprintf(`# %s
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
name = "cosign"
kind = "sigstore"
repositories = [%q]
%s

[[rule]]
images = [%q]
action = "verify"
source = "cosign"
%s

[[rule]]
images = ["**"]
action = "deny"
`, title, d.CacheDir, d.NRISocket, d.ContainerdAddress, d.ControlSocket, reg+"/**", source, reg+"/**", signers)
	if err := os.WriteFile(s.PolicyPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}
