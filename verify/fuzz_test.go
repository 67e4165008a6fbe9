package verify_test

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// fuzzPolicies are the policies FuzzDecide draws from, by number:
// testdata/policies/fuzz-<n>-*.toml. Together they use every action, mode,
// namespace restriction, mirror and signer setting.
var fuzzPolicies = func() []string {
	paths, err := filepath.Glob(filepath.Join("testdata", "policies", "fuzz-*.toml"))
	if err != nil || len(paths) == 0 {
		panic(fmt.Sprintf("fuzz policies: %v (%d files)", err, len(paths)))
	}
	var out []string
	for _, p := range paths { // sorted: fuzz-0-… first
		b, err := os.ReadFile(p)
		if err != nil {
			panic(err)
		}
		out = append(out, string(b))
	}
	return out
}()

// fuzzDigests are the digests the fuzzer can pick by number: the signed
// ones of fuzzIndex and the configs and manifests they cover.
var fuzzDigests = []digest.Digest{
	digest.FromString("web-1.0"), digest.FromString("web-2.0"), digest.FromString("web-index"),
	digest.FromString("web-amd64"), digest.FromString("web-config"), digest.FromString("nginx-rel"),
	digest.FromString("nginx-top"), digest.FromString("app-x"), digest.FromString("app-y"),
	digest.FromString("evil"),
}

var fuzzCovers = map[digest.Digest][]digest.Digest{
	digest.FromString("web-index"): {digest.FromString("web-amd64"), digest.FromString("web-config")},
	digest.FromString("web-1.0"):   {digest.FromString("web-config")},
	digest.FromString("nginx-rel"): {digest.FromString("web-config")},
}

func fuzzIndex(expires time.Time) *verify.Index {
	t := func(s string) verify.Target { return verify.Target{Digest: digest.FromString(s), Length: 10} }
	corp := verify.NewSourceIndex("corp", "tuf", map[string]*verify.Repo{
		"registry.example.com/apps/web": {
			Source: "corp", Name: "registry.example.com/apps/web", Expires: expires, ExpiresRole: "targets",
			FreshUntil: expires.Add(-12 * time.Hour), FreshRole: "timestamp",
			Tags: map[string]verify.RoleTargets{
				"1.0":   {"targets": t("web-1.0"), "release": t("web-1.0")},
				"2.0":   {"release": t("web-2.0"), "targets": t("web-1.0")},
				"multi": {"targets": t("web-index")},
				"empty": {},
			},
			Order: map[string][]string{"2.0": {"release", "targets"}},
		},
		"registry.example.com/apps/audited": {
			Source: "corp", Name: "registry.example.com/apps/audited", Expires: expires.Add(-48 * time.Hour),
			Tags: map[string]verify.RoleTargets{"1": {"targets": t("web-2.0")}},
		},
	})
	corp = corp.WithReachability(true, expires.Add(-36*time.Hour))
	hub := verify.NewSourceIndex("hub", "notary", map[string]*verify.Repo{
		"docker.io/library/nginx": {
			Source: "hub", Name: "docker.io/library/nginx", Expires: expires,
			Tags: map[string]verify.RoleTargets{
				"1.25":   {"targets/releases": t("nginx-rel"), "targets": t("nginx-top")},
				"latest": {"targets": t("nginx-top")},
			},
		},
		"docker.io/team/app": {
			Source: "hub", Name: "docker.io/team/app", Expires: expires,
			Tags: map[string]verify.RoleTargets{
				"agree":    {"targets/a": t("app-x"), "targets/b": t("app-x")},
				"disagree": {"targets/a": t("app-x"), "targets/b": t("app-y")},
			},
		},
		"docker.io/legacy/tool": {Source: "hub", Name: "docker.io/legacy/tool", Tags: map[string]verify.RoleTargets{}},
	})
	broken := &verify.SourceIndex{Name: "broken", Kind: "tuf", Err: errors.New("no trust data cached yet")}
	return verify.NewIndex(corp, hub, broken)
}

// fuzzDigest turns a selector and a string into a digest fact: none, one
// of fuzzDigests, the digest of s, or s itself (possibly malformed).
func fuzzDigest(sel uint8, s string) digest.Digest {
	switch sel % 4 {
	case 0:
		return ""
	case 1:
		return fuzzDigests[int(sel/4)%len(fuzzDigests)]
	case 2:
		return digest.FromString(s)
	default:
		return digest.Digest(s)
	}
}

func FuzzDecide(f *testing.F) {
	seeds := []struct {
		pol, subject, dsel, csel uint8
		image, ns, ds, cs        string
		covers                   bool
		hours                    int16
	}{
		{0, 1, 1, 0, "registry.example.com/apps/web:1.0", "", "", "", false, 0},
		{0, 2, 9, 17, "registry.example.com/apps/web:2.0", "default", "", "", true, 0},
		{0, 2, 0, 17, "registry.example.com/apps/web@" + string(digest.FromString("web-index")), "prod", "", "", true, 0},
		{0, 0, 21, 0, "nginx:1.25", "", "", "", false, 0},
		{0, 1, 29, 0, "docker.io/team/app:agree", "", "", "", false, 0},
		{0, 2, 2, 2, "registry.example.com/dev/tool:1", "team-a", "x", "y", false, 0},
		{0, 1, 0, 0, "registry.example.com/apps/audited:1", "", "", "", false, 0},
		{0, 1, 1, 0, "registry.example.com/apps/web:empty", "", "", "", false, 100},
		{1, 1, 5, 0, "mirror.example:5000/hub/nginx:1.25", "", "", "", false, 0},
		{1, 2, 3, 3, "localhost:5000/web:1.0", "prod", "sha256:zz", "not a digest", true, 0},
		{1, 2, 0, 0, "quay.io/x/app:1", "prod", "", "", false, 0},
		{1, 1, 0, 0, "docker.io/legacy/tool:1", "", "", "", false, 0},
		{2, 2, 0, 17, "registry.example.com/apps/web:1.0", "kube-system", "", "", true, -30},
		{2, 1, 0, 0, "quay.io/x/y:1", "", "", "", false, 0},
		{3, 0, 0, 0, "UPPER/case", "", "", "", false, 0},
		{0, 0, 0, 0, "", "", "", "", false, 0},
		{0, 0, 0, 0, "a:b:c@sha256:", "", "", "", false, 0},
	}
	for _, s := range seeds {
		f.Add(s.pol, s.subject, s.dsel, s.csel, s.image, s.ns, s.ds, s.cs, s.covers, s.hours)
	}
	var policies []*policy.Policy
	for i, src := range fuzzPolicies {
		p, err := policy.Parse("policy.toml", []byte(src))
		if err != nil {
			f.Fatalf("policy %d: %v", i, err)
		}
		policies = append(policies, p)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ix := fuzzIndex(base.Add(24 * time.Hour))
	ix2 := fuzzIndex(base.Add(24 * time.Hour)) // equal, not the same

	f.Fuzz(func(t *testing.T, pol, subject, dsel, csel uint8, image, ns, ds, cs string, covers bool, hours int16) {
		p := policies[int(pol)%len(policies)]
		facts := verify.Facts{
			Subject:      verify.Subject(int(subject) % 3),
			Image:        image,
			Namespace:    ns,
			Digest:       fuzzDigest(dsel, ds),
			ConfigDigest: fuzzDigest(csel, cs),
		}
		if covers {
			facts.Covers = fuzzCovers
		}
		now := base.Add(time.Duration(hours) * time.Hour)

		d := verify.Decide(p, ix, facts, now)

		if d.Reason == "" {
			t.Fatalf("empty reason: %+v", d)
		}
		if d.Requested != image {
			t.Fatalf("Requested = %q, want %q", d.Requested, image)
		}
		if d.Grace != "" && !strings.Contains(d.Message(), d.Grace) {
			t.Fatalf("a decision on offline grace must say so: %s", d.Message())
		}
		if d.Audit && !d.Allowed {
			t.Fatalf("an audit decision must allow: %+v", d)
		}
		msg := d.Message()
		if !d.Allowed {
			if !strings.HasPrefix(msg, "trustd: denied ") || !strings.Contains(msg, d.Image) {
				t.Fatalf("a denial must say so and name the image %q: %s", d.Image, msg)
			}
			err := d.Err()
			if !errors.Is(err, verify.ErrDenied) || err.Error() != msg {
				t.Fatalf("the error of a denial: %v", err)
			}
		} else if d.Err() != nil {
			t.Fatalf("an allowed image has an error: %v", d.Err())
		}
		// The image named is the one asked for, normalised and mirror-rewritten.
		if ref, err := policy.ParseRef(image); err == nil {
			ref.Repo = p.Origin(ref.Repo)
			if d.Image != ref.String() {
				t.Fatalf("Image = %q, want %q", d.Image, ref.String())
			}
		} else if d.Allowed && p.Mode == policy.ModeEnforce {
			t.Fatalf("an invalid reference was allowed in enforce mode: %s", msg)
		} else if d.Allowed && p.Mode == policy.ModeAudit && !d.Audit {
			t.Fatalf("an invalid reference was allowed in audit mode without saying it would be denied: %s", msg)
		} else if d.Image != image {
			t.Fatalf("Image = %q, want the reference as given %q", d.Image, image)
		}
		if facts.Subject != verify.SubjectContainer && d.Namespace != "" {
			t.Fatalf("a namespace in a decision that is not about a container: %+v", d)
		}
		if p.Mode == policy.ModeOff && !d.Allowed && d.Rule != "" {
			t.Fatalf("mode off, yet a rule denied: %s", msg)
		}

		// Deterministic: equal inputs (another equal index, a copy of the
		// coverage map) give an equal decision.
		g := facts
		g.Covers = maps.Clone(facts.Covers)
		if again := verify.Decide(p, ix2, g, now); !reflect.DeepEqual(again, d) {
			t.Fatalf("not deterministic:\n%+v\n%+v", d, again)
		}

		// A container allowed in its namespace can be pulled: a pull is
		// allowed when some namespace would allow it.
		if facts.Subject == verify.SubjectContainer && d.Allowed {
			g := facts
			g.Subject, g.Namespace = verify.SubjectPull, ""
			if pd := verify.Decide(p, ix, g, now); !pd.Allowed {
				t.Fatalf("allowed in namespace %q but not as a pull:\n%s\n%s", ns, msg, pd.Message())
			}
		}

		// Needed never panics and names every signed digest whose
		// coverage matters when the facts carry a digest to match.
		need := verify.Needed(p, ix, facts)
		if facts.Covers != nil && (facts.Digest != "" || facts.ConfigDigest != "") {
			g := facts
			g.Covers = map[digest.Digest][]digest.Digest{}
			for _, dg := range need {
				if c, ok := facts.Covers[dg]; ok {
					g.Covers[dg] = c
				}
			}
			if d2 := verify.Decide(p, ix, g, now); !reflect.DeepEqual(d2, d) {
				t.Fatalf("Needed %v misses a digest:\n%s\n%s", need, msg, d2.Message())
			}
		}
	})
}

func FuzzSplitTargetName(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:5000/demo/hello:1.0",
		"docker.io/library/nginx:1.25",
		"nginx:latest",
		"localhost:5000/x:y",
		"registry.example.com:443/a/b/c:v1.2.3-rc.1",
		"index.docker.io/library/nginx:1",
		"127.0.0.1:5000/demo/hello",
		"noTag:",
		"a/b",
		":tag",
		"UPPER/case:1",
		"a/b:c:d",
		"a/b@sha256:" + strings.Repeat("0", 64) + ":1",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		repo, tag, err := verify.SplitTargetName(name)
		if err != nil {
			if repo != "" || tag != "" {
				t.Fatalf("error %v with results %q %q", err, repo, tag)
			}
			if !strings.Contains(err.Error(), strconv.Quote(name)) {
				t.Fatalf("the error does not name the target: %v", err)
			}
			return
		}
		if tag == "" || strings.ContainsAny(tag, "/:") {
			t.Fatalf("%q: tag %q", name, tag)
		}
		if !strings.HasSuffix(name, ":"+tag) {
			t.Fatalf("%q: tag %q is not its suffix", name, tag)
		}
		if n, err := policy.NormalizeRepo(repo); err != nil || n != repo {
			t.Fatalf("%q: repository %q is not normalised (%q, %v)", name, repo, n, err)
		}
		// The normalised form names the same target.
		r2, t2, err := verify.SplitTargetName(repo + ":" + tag)
		if err != nil || r2 != repo || t2 != tag {
			t.Fatalf("%q: %q:%q splits as %q %q %v", name, repo, tag, r2, t2, err)
		}
	})
}
