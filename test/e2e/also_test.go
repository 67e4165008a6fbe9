package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/trustd/trustd/test/harness"
)

// TestTagAndCosign runs a rule that requires two sources ([[rule.also]]):
// the TUF repository binds the tag to a digest, and that digest must
// carry a cosign signature (the real cosign CLI, keyed) by the rule's
// key. An image signed both ways is pulled and runs; one whose tag only
// TUF binds is refused at pull naming the cosign requirement; one that
// only cosign signed is refused by TUF. The cosign signatures are fetched
// at the pull, after TUF allowed it: a pull fetches from each source of the
// rule that denies it, in turn. After a restart, the node decides the same
// from its cache.
func TestTagAndCosign(t *testing.T) {
	harness.Prereqs(t)
	harness.CosignPrereqs(t)
	tools, err := harness.FindTools()
	if err != nil {
		t.Fatal(err)
	}
	s := harness.StartStack(t, harness.StackOptions{})
	e := &env{Stack: s}
	at := func(i image) string { return i.ref + "@" + string(i.manifest) }

	both := newImage(t, s, "both/app:1.0", "tag bound by TUF, digest signed with cosign: running")
	tufOnly := newImage(t, s, "both/app:tuf-only", "tag bound by TUF only: running")
	cosignOnly := newImage(t, s, "both/app:cosign-only", "digest signed with cosign only: running")
	for _, p := range []struct {
		image
		tuf bool
	}{{both, true}, {tufOnly, true}, {cosignOnly, false}} {
		if d, manifest := harness.Push(t, p.ref, p.img); d != p.manifest {
			t.Fatalf("pushed %s as %s, built as %s", p.ref, d, p.manifest)
		} else if p.tuf {
			s.TUF.SetTarget(p.ref, manifest)
		}
	}
	if err := s.TUF.Publish(); err != nil {
		t.Fatal(err)
	}
	key, pub := cosignKeyPair(t, tools.Cosign)
	cosignSign(t, tools.Cosign, key, at(both))
	cosignSign(t, tools.Cosign, key, at(cosignOnly))
	id := cosignKeyID(t, pub)
	repo := both.repo(t)

	s.Policy.Rules = fmt.Sprintf(`
[[source]]
name = "cosign"
kind = "sigstore"
repositories = ["{{.Registry}}/both/**"]

[[rule]]
images = ["{{.Registry}}/both/**"]
action = "verify"
source = "corp"

  [[rule.also]]
  source = "cosign"
  keys = [%q]
`, pub)
	harness.WritePolicy(t, s.PolicyPath, s.Policy)
	s.Sync(t)
	s.StartTrustd(t)
	e.pod = s.Node.RunPod(t, "also", "default")

	t.Run("pulls", func(t *testing.T) {
		if _, err := s.Node.PullImage(both.ref); err != nil {
			t.Fatalf("CRI pull of %s (TUF and cosign) blocked: %v", both.ref, err)
		}
		e.run(t, both)
		_, err := s.Node.PullImage(tufOnly.ref)
		assertDenied(t, "CRI pull of the image only TUF signs", err, repo, string(tufOnly.manifest),
			`but also #1, source "cosign": digest `+string(tufOnly.manifest), "is not signed by key "+id)
		_, err = s.Node.PullImage(cosignOnly.ref)
		assertDenied(t, "CRI pull of the image only cosign signs", err, repo, "cosign-only")
		if strings.Contains(harness.Reason(err), "also #1") {
			t.Errorf("the cosign requirement judged an image TUF refused: %s", harness.Reason(err))
		}
	})
	check := func(t *testing.T) {
		e.run(t, both)
		verdicts, res := s.Verify(t, at(both))
		if res.ExitCode != 0 || len(verdicts) != 1 || !verdicts[0].Allowed || !strings.Contains(verdicts[0].Reason, `and also #1, source "cosign"`) {
			t.Errorf("trustd verify %s: exit %d, %+v", at(both), res.ExitCode, verdicts)
		}
		verdicts, res = s.Verify(t, at(tufOnly))
		if res.ExitCode != 1 || len(verdicts) != 1 || verdicts[0].Allowed || verdicts[0].Source != "cosign" {
			t.Errorf("trustd verify %s: exit %d, %+v", at(tufOnly), res.ExitCode, verdicts)
		}
	}
	t.Run("decisions", check)
	t.Run("trustd restarted: from the cache", func(t *testing.T) {
		if err := s.Trustd.Stop(); err != nil {
			t.Fatal(err)
		}
		s.StartTrustd(t)
		check(t)
	})
}
