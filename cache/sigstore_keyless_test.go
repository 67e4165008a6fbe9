package cache

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache/cosign"
	"github.com/trustd/trustd/internal/testsigstore"
	"github.com/trustd/trustd/test/harness"
)

// TestSigstoreRefusedReasons: why the keyless signatures found for a digest
// (a bundle attached through referrers, or in the tag scheme) were refused
// reaches the source's index, per repository and digest, so that the
// digest's denial can say it; a later fetch that finds none forgets them;
// nothing refused is cached.
func TestSigstoreRefusedReasons(t *testing.T) {
	vs, trJSON := virtualTrustedRoot(t)
	tr, err := cosign.ParseTrustedRoot(trJSON)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := harness.StartStoppableRegistry(t, registry.WithReferrersSupport(true))
	repo := host + "/apps/web"
	src := &SigstoreSource{SourceName: "cosign", Dir: t.TempDir(), Repositories: mustPatterns(t, host+"/**"),
		Verifier: &cosign.Verifier{Identities: []cosign.Identity{{ID: "ci", Issuer: testIssuer, Subject: testSubject}}, Root: cosign.NewRoot(tr)}}
	soon := time.Now().Add(time.Minute)
	dg := func(img string) digest.Digest { return digest.Digest(pushImage(t, repo, img).Digest.String()) }

	wrongIssuer, expired, tagged, good := pushImage(t, repo, "wrong-issuer"), pushImage(t, repo, "expired"), dg("tagged"), pushImage(t, repo, "good")
	bundle := func(subject, issuer string, d digest.Digest, at time.Time, ts bool) []byte {
		return testsigstore.Bundle(t, vs, testsigstore.Attest(t, vs, subject, issuer, testsigstore.SignStatement(d, cosign.SignPredicateType), at), testsigstore.MediaTypeV3, nil, ts)
	}
	harness.AttachBundle(t, repo, wrongIssuer, bundle(testSubject, "https://token.evil.example", digest.Digest(wrongIssuer.Digest.String()), soon, true))
	expiredRef := harness.AttachBundle(t, repo, expired, bundle(testSubject, testIssuer, digest.Digest(expired.Digest.String()), time.Now().Add(30*time.Minute), false))
	harness.PushTagSignatures(t, repo, tagged, testsigstore.SignTag(t, vs, "https://ci.corp.example/apps/api/release.yml@refs/heads/main", testIssuer, cosignPayload(repo, tagged), soon, true, false))
	harness.AttachBundle(t, repo, good, bundle(testSubject, testIssuer, digest.Digest(good.Digest.String()), soon, true))

	ctx := context.Background()
	for _, d := range []digest.Digest{digest.Digest(wrongIssuer.Digest.String()), digest.Digest(expired.Digest.String()), tagged, digest.Digest(good.Digest.String())} {
		if err := src.SyncPulledDigest(ctx, repo, d, time.Now()); err != nil {
			t.Fatalf("SyncPulledDigest %s: %v", d, err)
		}
	}
	refused := src.Index().Refused
	for d, want := range map[digest.Digest]string{
		digest.Digest(wrongIssuer.Digest.String()): "signed by " + testSubject + " (issuer https://token.evil.example): no identity names that issuer",
		digest.Digest(expired.Digest.String()):     "was not valid at the signing time that the log entry proves",
		tagged:                                     "signed by https://ci.corp.example/apps/api/release.yml@refs/heads/main (issuer " + testIssuer + "): the subject matches no identity of its issuer",
	} {
		if why := refused[repo+"@"+string(d)]; len(why) != 1 || !strings.Contains(why[0], want) {
			t.Errorf("refused[%s] = %q, want one reason saying %q", d, why, want)
		}
	}
	if why, ok := refused[repo+"@"+good.Digest.String()]; ok || len(refused) != 3 {
		t.Errorf("the verified digest has reasons %q; %d digests have some, want 3", why, len(refused))
	}
	if b := src.cached(repo); b == nil || len(b.Signatures) != 1 || string(b.Signatures[0].Digest) != good.Digest.String() {
		t.Errorf("cached: %+v, want the good bundle only", b)
	}

	// A fetch that finds no refused signature for a digest forgets its
	// reasons: the expired bundle deleted.
	req, _ := http.NewRequest(http.MethodDelete, "http://"+host+"/v2/apps/web/manifests/"+string(expiredRef), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete the expired bundle: %v %v", resp, err)
	}
	if err := src.SyncPulledDigest(ctx, repo, digest.Digest(expired.Digest.String()), time.Now()); err != nil {
		t.Fatal(err)
	}
	if why, ok := src.Index().Refused[repo+"@"+expired.Digest.String()]; ok {
		t.Errorf("the expired bundle deleted: reasons %q kept", why)
	}
}
