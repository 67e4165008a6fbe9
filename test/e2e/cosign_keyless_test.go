package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/trustd/trustd/cache/cosign"
	"github.com/trustd/trustd/internal/testsigstore"
	"github.com/trustd/trustd/test/harness"
)

// The one identity the keyless tests' rules name: a CI workflow, and the
// issuer of its tokens.
const (
	ciIssuer  = "https://token.ci.corp.example"
	ciSubject = "https://ci.corp.example/keyless/app/.ci/release.yml@refs/heads/main"
)

// keylessNode starts a node and a loopback registry with the referrers
// API; it returns the node, the registry's host and what stops it.
func keylessNode(t *testing.T) (*env, string, func()) {
	t.Helper()
	harness.Prereqs(t)
	s := harness.StartStack(t, harness.StackOptions{})
	reg, stop := harness.StartStoppableRegistry(t, registry.WithReferrersSupport(true))
	if err := s.Node.AddRegistry(reg); err != nil {
		t.Fatal(err)
	}
	return &env{Stack: s}, reg, stop
}

// TestCosignKeyless runs a sigstore source for keyless signatures against a
// Sigstore deployment the test makes (testsigstore: a Fulcio-style CA, a
// Rekor-style log and a timestamp authority, in memory) and whose
// trusted_root.json it writes and pins. Images in a loopback registry
// carry keyless bundles attached through the OCI referrers API as cosign
// v3 attaches them (or, for one, a keyless signature in cosign's tag
// scheme); the rule names one identity (a CI workflow and its issuer):
//
//   - pulled: the images signed by that identity (bundle, tag scheme) are
//     pulled and run; one signed by another subject, one by the subject
//     under another issuer, one whose bundle carries the log entry of
//     another signature, one whose certificate had expired at the time
//     its log entry proves (and no timestamp), and an unsigned one are
//     refused at pull, each saying why its signature was refused;
//     `trustd verify` agrees;
//   - with the registry gone and trustd restarted, the signed images run
//     from the cache, and the refused ones, side-loaded, cannot be
//     created.
func TestCosignKeyless(t *testing.T) {
	start := time.Now()
	e, reg, stopRegistry := keylessNode(t)
	s := e.Stack
	signer := ciSubject + " (issuer " + ciIssuer + ")"
	push := func(repoTag, message string) image { return pushTo(t, s, reg, repoTag, message) }
	good := push("keyless/app:good", "keyless: CI-signed image running")
	tagged := push("keyless/app:tagged", "keyless: CI-signed image (tag scheme) running")
	otherSubject := push("keyless/app:other-subject", "keyless: image signed by another workflow running")
	otherIssuer := push("keyless/app:other-issuer", "keyless: image signed under another issuer running")
	otherEntry := push("keyless/app:other-entry", "keyless: image with another signature's log entry running")
	expired := push("keyless/app:expired", "keyless: image signed with an expired certificate running")
	unsigned := push("keyless/app:unsigned", "keyless: unsigned image running")
	repo := good.repo(t)

	vs := testsigstore.New(t)
	soon := time.Now().Add(time.Minute) // within the certificates' ten minutes
	attest := func(i image, subject, issuer string, at time.Time) *ca.TestEntity {
		return testsigstore.Attest(t, vs, subject, issuer, testsigstore.SignStatement(i.manifest, cosign.SignPredicateType), at)
	}
	attach := func(i image, bundle []byte) { attachBundle(t, i, bundle) }
	bundle := func(te *ca.TestEntity) []byte {
		return testsigstore.Bundle(t, vs, te, testsigstore.MediaTypeV3, nil, true)
	}
	attach(good, bundle(attest(good, ciSubject, ciIssuer, soon)))
	attach(otherSubject, bundle(attest(otherSubject, "https://ci.corp.example/keyless/other/.ci/release.yml@refs/heads/main", ciIssuer, soon)))
	attach(otherIssuer, bundle(attest(otherIssuer, ciSubject, "https://token.other.example", soon)))
	spliced := testsigstore.FirstEntry(t, vs, attest(otherEntry, ciSubject, ciIssuer, soon))
	attach(otherEntry, testsigstore.Bundle(t, vs, attest(otherEntry, ciSubject, ciIssuer, soon), testsigstore.MediaTypeV3, spliced, true))
	attach(expired, testsigstore.Bundle(t, vs, attest(expired, ciSubject, ciIssuer, time.Now().Add(30*time.Minute)), testsigstore.MediaTypeV3, nil, false))
	harness.PushTagSignatures(t, repo, tagged.manifest, testsigstore.SignTag(t, vs, ciSubject, ciIssuer, testsigstore.SimpleSigningPayload(repo, tagged.manifest), soon, true, false))

	rootPath := filepath.Join(filepath.Dir(s.PolicyPath), "trusted_root.json")
	if err := os.WriteFile(rootPath, testsigstore.TrustedRoot(t, vs, vs), 0o600); err != nil {
		t.Fatal(err)
	}
	writeSigstorePolicy(t, s, "TestCosignKeyless (test/e2e/cosign_keyless_test.go)", reg,
		"trusted_root = "+strconv.Quote(rootPath), "identities = [{ issuer = "+strconv.Quote(ciIssuer)+", subject = "+strconv.Quote(ciSubject)+" }]")
	s.Sync(t)
	s.StartTrustd(t)
	e.pod = s.Node.RunPod(t, "keyless", "default")

	// Each refused image and what its denial must say beyond "not signed".
	refused := []struct {
		i    image
		why  string
		what string
	}{
		{otherSubject, "the subject matches no identity of its issuer", "signed by another subject"},
		{otherIssuer, "(issuer https://token.other.example): no identity names that issuer", "signed under another issuer"},
		{otherEntry, "transparency log signature does not match", "bundle with another signature's log entry"},
		{expired, "was not valid at the signing time that the log entry proves", "certificate expired at the logged time, no timestamp"},
		{unsigned, "", "unsigned"},
	}
	verifyAll := func(t *testing.T) {
		for _, i := range []image{good, tagged} {
			verdicts, res := s.Verify(t, repo+"@"+string(i.manifest))
			if res.ExitCode != 0 || len(verdicts) != 1 || !verdicts[0].Allowed || verdicts[0].Source != "cosign" || strings.Join(verdicts[0].Signers, ",") != signer {
				t.Errorf("trustd verify %s: exit %d, %+v\n%s", i.ref, res.ExitCode, verdicts, res.Stderr)
			}
		}
		for _, r := range refused {
			verdicts, res := s.Verify(t, repo+"@"+string(r.i.manifest))
			if res.ExitCode != 1 || len(verdicts) != 1 || verdicts[0].Allowed || !strings.Contains(verdicts[0].Reason, fragNotSigned+" by signer "+signer) {
				t.Errorf("trustd verify %s (%s): exit %d, %+v", r.i.ref, r.what, res.ExitCode, verdicts)
			}
		}
	}

	t.Run("pulled: the identity's signatures run, the others are refused with their reason", func(t *testing.T) {
		for _, i := range []image{good, tagged} {
			pulled, err := s.Node.PullImage(i.ref)
			if err != nil {
				t.Fatalf("CRI pull of %s blocked: %v", i.ref, err)
			}
			if pulled != string(i.config(t)) {
				t.Errorf("pulled image %s, want config %s", pulled, i.config(t))
			}
			e.run(t, i)
		}
		for _, r := range refused {
			_, err := s.Node.PullImage(r.i.ref)
			frags := []string{repo, string(r.i.manifest), fragNotSigned + " by signer " + signer}
			if r.why != "" {
				frags = append(frags, "signatures found for it were refused: ", r.why)
			}
			assertDenied(t, "CRI pull of the image "+r.what, err, frags...)
			t.Logf("%s: %s", r.what, harness.Reason(err))
			if r.why == "" && err != nil && strings.Contains(harness.Reason(err), "refused") {
				t.Errorf("CRI pull of the unsigned image: reason %q names a refused signature", harness.Reason(err))
			}
		}
		verifyAll(t)
	})

	// The refused images, side-loaded once the registry is gone.
	sideLoaded := map[string]v1.Image{}
	for _, r := range refused {
		sideLoaded[r.i.ref] = r.i.img
	}
	tarPath := filepath.Join(t.TempDir(), "refused.tar")
	harness.OCILayoutTar(t, tarPath, sideLoaded)

	t.Run("registry gone, trustd restarted", func(t *testing.T) {
		stopRegistry()
		if err := s.Trustd.Stop(); err != nil {
			t.Fatal(err)
		}
		s.StartTrustd(t)
		e.run(t, good)
		e.run(t, tagged)
		refs := make([]string, 0, len(refused))
		for _, r := range refused {
			refs = append(refs, r.i.ref)
		}
		s.Node.ImportArchive(t, tarPath, refs...)
		for _, r := range refused {
			_, err := e.create(t, r.i)
			assertDenied(t, "creation of the side-loaded image "+r.what, err, repo, fragNotSigned+" by signer "+signer)
		}
		verifyAll(t)
	})
	t.Logf("TestCosignKeyless took %v", time.Since(start).Round(time.Millisecond))
}

// pushTo pushes a new test image to the registry reg.
func pushTo(t *testing.T, s *harness.Stack, reg, repoTag, message string) image {
	t.Helper()
	i := newImage(t, s, repoTag, message)
	i.ref = strings.Replace(i.ref, s.Registry, reg, 1)
	harness.Push(t, i.ref, i.img)
	return i
}

// attachBundle attaches a Sigstore bundle to i's manifest through the
// referrers API, as cosign v3 does.
func attachBundle(t *testing.T, i image, bundle []byte) {
	t.Helper()
	desc, err := partial.Descriptor(i.img)
	if err != nil {
		t.Fatal(err)
	}
	harness.AttachBundle(t, i.repo(t), v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest}, bundle)
}

// TestCosignKeylessTUF runs a sigstore source whose trusted root is
// distributed by a TUF repository (url and root), served on loopback, as
// the daemon follows it: an image signed under the first trusted root runs
// and one signed under another deployment is refused at pull (its CA is
// not in the trusted root); once the repository publishes the second
// deployment's root, the daemon's sync takes it: the second image runs and
// the first, whose cached signature its CA no longer vouches for, is
// refused; a rolled back repository (the first version's metadata and root
// served again) is refused, the daemon says so, and the decisions stand.
func TestCosignKeylessTUF(t *testing.T) {
	start := time.Now()
	e, reg, _ := keylessNode(t)
	s := e.Stack
	const target = "trusted_root.json"
	vs1, vs2 := testsigstore.New(t), testsigstore.New(t)
	tr1, tr2 := testsigstore.TrustedRoot(t, vs1, vs1), testsigstore.TrustedRoot(t, vs2, vs2)
	tuf := harness.NewTUFRepo(t)
	tuf.PublishFile(t, target, tr1, tr1)

	first := pushTo(t, s, reg, "keyless-tuf/app:first", "keyless-tuf: image signed under the first root running")
	second := pushTo(t, s, reg, "keyless-tuf/app:second", "keyless-tuf: image signed under the second root running")
	soon := time.Now().Add(time.Minute)
	for _, c := range []struct {
		i  image
		vs *ca.VirtualSigstore
	}{{first, vs1}, {second, vs2}} {
		te := testsigstore.Attest(t, c.vs, ciSubject, ciIssuer, testsigstore.SignStatement(c.i.manifest, cosign.SignPredicateType), soon)
		attachBundle(t, c.i, testsigstore.Bundle(t, c.vs, te, testsigstore.MediaTypeV3, nil, true))
	}
	writeSigstorePolicy(t, s, "TestCosignKeylessTUF (test/e2e/cosign_keyless_test.go)", reg,
		"url = "+strconv.Quote(tuf.URL())+"\nroot = "+strconv.Quote(tuf.RootPath()),
		"identities = [{ issuer = "+strconv.Quote(ciIssuer)+", subject = "+strconv.Quote(ciSubject)+" }]")
	s.Sync(t)
	s.StartTrustd(t)
	e.pod = s.Node.RunPod(t, "keyless-tuf", "default")
	signer := ciSubject + " (issuer " + ciIssuer + ")"
	const notInRoot = "does not chain to a certificate authority of the trusted root"

	// eventually retries f (a decision that waits for the daemon's next
	// sync round) until it returns nil.
	eventually := func(t *testing.T, what string, f func() error) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := f()
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	status := func(t *testing.T) string {
		st := s.CLI(t, "status", "--config", s.PolicyPath)
		return st.Stdout + st.Stderr
	}

	t.Run("the first root, from the TUF repository", func(t *testing.T) {
		if _, err := s.Node.PullImage(first.ref); err != nil {
			t.Fatalf("CRI pull of %s blocked: %v", first.ref, err)
		}
		e.run(t, first)
		_, err := s.Node.PullImage(second.ref)
		assertDenied(t, "CRI pull of the image signed under another deployment", err, string(second.manifest), fragNotSigned+" by signer "+signer, notInRoot)
	})

	saved := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join(tuf.Dir(), "*.json"))
	for _, f := range append(files, filepath.Join(tuf.Dir(), "targets", target)) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		saved[f] = b
	}

	t.Run("the root rotated: followed by the daemon", func(t *testing.T) {
		tuf.PublishFile(t, target, tr2, tr2)
		eventually(t, "CRI pull of the image signed under the second root", func() error {
			_, err := s.Node.PullImage(second.ref)
			return err
		})
		e.run(t, second)
		eventually(t, "creation of the image signed under the first root", func() error {
			if _, err := e.create(t, first); err == nil {
				return errors.New("allowed")
			} else if !strings.Contains(harness.Reason(err), fragNotSigned+" by signer "+signer) {
				return err
			}
			return nil
		})
		if verdicts, res := s.Verify(t, first.repo(t)+"@"+string(first.manifest)); res.ExitCode != 1 || len(verdicts) != 1 || verdicts[0].Allowed {
			t.Errorf("trustd verify of the first image: exit %d, %+v", res.ExitCode, verdicts)
		}
	})

	t.Run("the repository rolled back: refused, the second root kept", func(t *testing.T) {
		for f, b := range saved {
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "trustd status after the rollback", func() error {
			if st := status(t); !strings.Contains(st, "last sync error") || !strings.Contains(st, "TUF repository") || !strings.Contains(st, "version") {
				return fmt.Errorf("no rollback refusal reported:\n%s", st)
			}
			return nil
		})
		e.run(t, second)
		_, err := e.create(t, first)
		assertDenied(t, "creation of the image signed under the first root, after the rollback", err, fragNotSigned+" by signer "+signer)
		if verdicts, res := s.Verify(t, second.repo(t)+"@"+string(second.manifest)); res.ExitCode != 0 || len(verdicts) != 1 || !verdicts[0].Allowed {
			t.Errorf("trustd verify of the second image: exit %d, %+v", res.ExitCode, verdicts)
		}
		t.Logf("status after the rollback:\n%s", status(t))
	})
	t.Logf("TestCosignKeylessTUF took %v", time.Since(start).Round(time.Millisecond))
}
