package verify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/policy"
)

// testPolicy is testdata/policies/decide.toml: a TUF and a Notary source,
// rules with every action, a per-rule mode, signers with a threshold, and a
// namespace restriction.
var testPolicy = readTestdata("policies/decide.toml")

// readTestdata returns the file name under testdata.
func readTestdata(name string) string {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		panic(err)
	}
	return string(b)
}

func dg(s string) digest.Digest { return digest.FromString(s) }

func testIndex(expires time.Time) *Index {
	corp := NewSourceIndex("corp", "tuf", map[string]*Repo{
		"registry.example.com/apps/web": {
			Source: "corp", Name: "registry.example.com/apps/web", Expires: expires, ExpiresRole: "timestamp",
			Tags: map[string]RoleTargets{
				"1.0": {"targets": {Digest: dg("web-1.0"), Length: 10}},
				"2.0": {"targets": {Digest: dg("web-2.0"), Length: 10}},
			},
		},
		"registry.example.com/apps/audited": {
			Source: "corp", Name: "registry.example.com/apps/audited", Expires: expires,
			Tags: map[string]RoleTargets{"1": {"targets": {Digest: dg("audited-1")}}},
		},
	})
	hub := NewSourceIndex("hub", "notary", map[string]*Repo{
		"docker.io/library/nginx": {
			Source: "hub", Name: "docker.io/library/nginx", Expires: expires,
			Tags: map[string]RoleTargets{
				"1.25":   {"targets/releases": {Digest: dg("nginx-rel")}, "targets": {Digest: dg("nginx-top")}},
				"latest": {"targets": {Digest: dg("nginx-latest")}},
				"other":  {"targets/other": {Digest: dg("nginx-other")}},
			},
		},
		"docker.io/team/app": {
			Source: "hub", Name: "docker.io/team/app", Expires: expires,
			Tags: map[string]RoleTargets{
				"agree":    {"targets/a": {Digest: dg("app-x")}, "targets/b": {Digest: dg("app-x")}},
				"disagree": {"targets/a": {Digest: dg("app-x")}, "targets/b": {Digest: dg("app-y")}},
			},
		},
	})
	return NewIndex(corp, hub)
}

func TestDecide(t *testing.T) {
	p, err := policy.Parse("policy.toml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ix := testIndex(now.Add(24 * time.Hour))
	cfgWeb := dg("config-web-1.0")
	covers := map[digest.Digest][]digest.Digest{dg("web-1.0"): {dg("web-1.0"), cfgWeb}}

	tests := []struct {
		name    string
		facts   Facts
		now     time.Time
		allowed bool
		audit   bool
		want    []string // fragments of Message()
	}{
		{name: "tag only, signed", facts: Facts{Image: "registry.example.com/apps/web:1.0"}, allowed: true, want: []string{"signed", string(dg("web-1.0"))}},
		{name: "pull of the signed digest", facts: Facts{Subject: SubjectPull, Image: "registry.example.com/apps/web:1.0", Digest: dg("web-1.0")}, allowed: true},
		{name: "pull of a moved tag", facts: Facts{Subject: SubjectPull, Image: "registry.example.com/apps/web:1.0", Digest: dg("evil")}, want: []string{"trustd: denied", string(dg("evil")), "not the signed digest", string(dg("web-1.0"))}},
		{name: "unsigned tag", facts: Facts{Subject: SubjectPull, Image: "registry.example.com/apps/web:3.0", Digest: dg("x")}, want: []string{`tag "3.0" of registry.example.com/apps/web is not signed`}},
		{name: "unsigned repository", facts: Facts{Subject: SubjectPull, Image: "registry.example.com/apps/other:1", Digest: dg("x")}, want: []string{"registry.example.com/apps/other is not signed"}},
		{name: "container config matches", facts: Facts{Subject: SubjectContainer, Namespace: "default", Image: "registry.example.com/apps/web:1.0", ConfigDigest: cfgWeb, Digest: dg("reencoded"), Covers: covers}, allowed: true, want: []string{"image config"}},
		{name: "container digest matches", facts: Facts{Subject: SubjectContainer, Namespace: "default", Image: "registry.example.com/apps/web:1.0", ConfigDigest: dg("cfg?"), Digest: dg("web-1.0")}, allowed: true},
		{name: "container config differs", facts: Facts{Subject: SubjectContainer, Namespace: "default", Image: "registry.example.com/apps/web:1.0", ConfigDigest: dg("cfg-evil"), Covers: covers}, want: []string{string(dg("cfg-evil")), "not the signed", "in namespace default"}},
		{name: "container config, manifest unknown", facts: Facts{Subject: SubjectContainer, Namespace: "default", Image: "registry.example.com/apps/web:1.0", ConfigDigest: dg("cfg")}, want: []string{"cannot be matched"}},
		{name: "digest-only reference signed under some tag", facts: Facts{Image: "registry.example.com/apps/web@" + string(dg("web-2.0"))}, allowed: true, want: []string{":2.0 is signed"}},
		{name: "digest-only reference unsigned", facts: Facts{Image: "registry.example.com/apps/web@" + string(dg("nope"))}, want: []string{"is not the signed digest of any of the 2 signed tags"}},
		{name: "tag and wrong digest", facts: Facts{Image: "registry.example.com/apps/web:1.0@" + string(dg("web-2.0"))}, want: []string{"requested digest"}},
		{name: "expired", facts: Facts{Image: "registry.example.com/apps/web:1.0"}, now: now.Add(48 * time.Hour), want: []string{"expired at", "timestamp"}},
		{name: "audit rule", facts: Facts{Subject: SubjectContainer, Namespace: "default", Image: "registry.example.com/apps/audited:2", ConfigDigest: dg("c")}, allowed: true, audit: true, want: []string{"trustd: audit: would deny"}},
		{name: "notary releases first", facts: Facts{Subject: SubjectPull, Image: "nginx:1.25", Digest: dg("nginx-rel")}, allowed: true, want: []string{"targets/releases"}},
		{name: "notary targets digest shadowed by releases", facts: Facts{Subject: SubjectPull, Image: "nginx:1.25", Digest: dg("nginx-top")}, want: []string{"not the signed digest"}},
		{name: "notary default tag latest", facts: Facts{Subject: SubjectPull, Image: "nginx", Digest: dg("nginx-latest")}, allowed: true},
		{name: "notary role not among signers", facts: Facts{Image: "nginx:other"}, want: []string{"is not signed by any of [targets/releases, targets]"}},
		{name: "threshold 2 agree", facts: Facts{Image: "docker.io/team/app:agree"}, allowed: true, want: []string{"targets/a, targets/b"}},
		{name: "threshold 2 disagree", facts: Facts{Image: "docker.io/team/app:disagree"}, want: []string{"2 of [targets/a, targets/b]"}},
		{name: "no rule: catch-all deny", facts: Facts{Image: "quay.io/x/y:1"}, want: []string{"the rule denies quay.io/x/y", "rule #7"}},
		{name: "allow rule", facts: Facts{Image: "registry.k8s.io/pause:3.10"}, allowed: true},
		{name: "namespace rule applies in its namespace", facts: Facts{Subject: SubjectContainer, Namespace: "dev", Image: "registry.example.com/dev/tool:1", ConfigDigest: dg("c")}, allowed: true},
		{name: "namespace rule does not apply elsewhere", facts: Facts{Subject: SubjectContainer, Namespace: "prod", Image: "registry.example.com/dev/tool:1", ConfigDigest: dg("c")}, want: []string{"the rule denies"}},
		{name: "pull allowed when some namespace allows", facts: Facts{Subject: SubjectPull, Image: "registry.example.com/dev/tool:1", Digest: dg("c")}, allowed: true},
		{name: "invalid reference", facts: Facts{Image: "UPPER/Case"}, want: []string{"invalid image reference"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.now
			if n.IsZero() {
				n = now
			}
			d := Decide(p, ix, tc.facts, n)
			if d.Allowed != tc.allowed || d.Audit != tc.audit {
				t.Fatalf("allowed=%v audit=%v, want %v/%v: %s", d.Allowed, d.Audit, tc.allowed, tc.audit, d.Message())
			}
			msg := d.Message()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
			if !d.Allowed && (d.Err() == nil || !strings.Contains(d.Err().Error(), "trustd: denied")) {
				t.Errorf("a denial must be an error naming it: %v", d.Err())
			}
			// The same content given as a lookup that Decide asks (one
			// pass, as the engine decides) instead of resolved beforehand
			// gives the same decision; a decision the digests make asks
			// nothing.
			if tc.facts.Covers != nil {
				lf := tc.facts
				lookup := &countingLookup{m: lf.Covers}
				lf.Covers, lf.Content = nil, lookup
				ld := Decide(p, ix, lf, n)
				if ld.Allowed != d.Allowed || ld.Reason != d.Reason || ld.SignedDigest != d.SignedDigest {
					t.Errorf("with a content lookup: %s\nwith Covers: %s", ld.Message(), d.Message())
				}
				if strings.Contains(d.Reason, "digest matches") && lookup.n != 0 {
					t.Errorf("a decision the digests make asked for content %d times", lookup.n)
				}
			}
		})
	}
}

// countingLookup is a ContentLookup over a map that counts its questions.
type countingLookup struct {
	m map[digest.Digest][]digest.Digest
	n int
}

func (c *countingLookup) Covered(d digest.Digest) ([]digest.Digest, bool) {
	c.n++
	v, ok := c.m[d]
	return v, ok
}

func TestDecideNoSourceData(t *testing.T) {
	p, err := policy.Parse("policy.toml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	ix := NewIndex(&SourceIndex{Name: "corp", Kind: "tuf", Err: errString("no trust data cached yet")})
	d := Decide(p, ix, Facts{Image: "registry.example.com/apps/web:1.0"}, time.Now())
	if d.Allowed || !strings.Contains(d.Reason, "no trust data cached yet") {
		t.Fatalf("got %s", d.Message())
	}
	if d := Decide(nil, nil, Facts{Image: "x"}, time.Now()); d.Allowed {
		t.Fatal("nil policy must deny")
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestNeeded(t *testing.T) {
	p, err := policy.Parse("policy.toml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	ix := testIndex(time.Now().Add(time.Hour))
	got := Needed(p, ix, Facts{Subject: SubjectContainer, Namespace: "x", Image: "registry.example.com/apps/web:1.0", ConfigDigest: dg("c")})
	if len(got) != 1 || got[0] != dg("web-1.0") {
		t.Fatalf("tag: %v", got)
	}
	got = Needed(p, ix, Facts{Subject: SubjectContainer, Namespace: "x", Image: "registry.example.com/apps/web@" + string(dg("q")), ConfigDigest: dg("c")})
	if len(got) != 2 {
		t.Fatalf("digest only: %v", got)
	}
	if got := Needed(p, ix, Facts{Image: "registry.example.com/apps/web:1.0"}); got != nil {
		t.Fatalf("no subject: %v", got)
	}
}

func TestSplitTargetName(t *testing.T) {
	for _, tc := range []struct{ in, repo, tag string }{
		{"127.0.0.1:5000/demo/hello:1.0", "127.0.0.1:5000/demo/hello", "1.0"},
		{"docker.io/library/nginx:1.25", "docker.io/library/nginx", "1.25"},
		{"nginx:latest", "docker.io/library/nginx", "latest"},
		{"REGISTRY.corp.example:443/app:1", "registry.corp.example/app", "1"},
		{"registry-1.docker.io/nginx:1", "docker.io/library/nginx", "1"},
	} {
		repo, tag, err := SplitTargetName(tc.in)
		if err != nil || repo != tc.repo || tag != tc.tag {
			t.Errorf("%s: %q %q %v", tc.in, repo, tag, err)
		}
	}
	for _, bad := range []string{"127.0.0.1:5000/demo/hello", "noTag:", "a/b"} {
		if _, _, err := SplitTargetName(bad); err == nil {
			t.Errorf("%s: want error", bad)
		}
	}
}

func TestDecideOfflineGrace(t *testing.T) {
	base := `version = 1
[daemon]
offline_grace = "24h"
[[source]]
name = "corp"
kind = "tuf"
url = "https://tuf.example.com/"
root = "root.json"
repositories = ["registry.example.com/**"]
[[rule]]
images = ["registry.example.com/**"]
action = "verify"
source = "corp"
`
	p, err := policy.Parse("policy.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	strict, err := policy.Parse("policy.toml", []byte(strings.Replace(base, `offline_grace = "24h"`, `offline_grace = "0s"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	fresh := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC) // timestamp expiry
	hard := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)   // targets expiry
	repo := func() map[string]*Repo {
		return map[string]*Repo{"registry.example.com/app": {
			Name: "registry.example.com/app", Expires: hard, ExpiresRole: "targets", FreshUntil: fresh, FreshRole: "timestamp",
			Tags: map[string]RoleTargets{"1": {"targets": {Digest: dg("app-1")}}},
		}}
	}
	reachable := NewIndex(NewSourceIndex("corp", "tuf", repo()))
	unreachable := reachable.With(reachable.Source("corp").WithReachability(true, fresh.Add(-time.Hour)))
	f := Facts{Subject: SubjectPull, Image: "registry.example.com/app:1", Digest: dg("app-1")}
	for _, tc := range []struct {
		name    string
		p       *policy.Policy
		ix      *Index
		now     time.Time
		allowed bool
		want    string
	}{
		{"fresh data", p, reachable, fresh.Add(-time.Minute), true, ""},
		{"expired timestamp, grace 0", strict, unreachable, fresh.Add(time.Hour), false, "offline_grace is 0"},
		{"expired timestamp, source reachable", p, reachable, fresh.Add(time.Hour), false, "offline grace does not apply"},
		{"expired timestamp, unreachable, within grace", p, unreachable, fresh.Add(time.Hour), true, "on offline grace"},
		{"expired timestamp, unreachable, grace over", p, unreachable, fresh.Add(25 * time.Hour), false, "offline grace of 24h0m0s ended"},
		{"targets expired: never graced", p, unreachable, hard.Add(time.Hour), false, "role targets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.p, tc.ix, f, tc.now)
			if d.Allowed != tc.allowed || !strings.Contains(d.Message(), tc.want) {
				t.Fatalf("allowed=%v: %s", d.Allowed, d.Message())
			}
			if tc.allowed && tc.want != "" && d.Grace == "" {
				t.Fatal("a decision on grace must say so")
			}
		})
	}
}

// Regression cases found by golden-test review.
func TestDecideRegressions(t *testing.T) {
	mk := func(src string) *policy.Policy {
		p, err := policy.Parse("policy.toml", []byte("version = 1\n"+src))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("a pull is not allowed by a rule shadowed in every namespace it names", func(t *testing.T) {
		p := mk(`
[[rule]]
images = ["quay.io/x/**"]
namespaces = ["dev"]
action = "deny"
[[rule]]
images = ["quay.io/x/**"]
namespaces = ["dev"]
action = "allow"
[[rule]]
images = ["**"]
action = "deny"
`)
		if d := Decide(p, NewIndex(), Facts{Subject: SubjectPull, Image: "quay.io/x/y:1", Digest: dg("y")}, time.Now()); d.Allowed {
			t.Fatalf("allowed: %s", d.Message())
		}
	})
	t.Run("global audit covers images no rule matches", func(t *testing.T) {
		p := mk(`mode = "audit"
[[rule]]
images = ["registry.corp.example/**"]
action = "allow"
`)
		d := Decide(p, NewIndex(), Facts{Subject: SubjectContainer, Namespace: "default", Image: "quay.io/x/y:1", ConfigDigest: dg("c")}, time.Now())
		if !d.Allowed || !d.Audit {
			t.Fatalf("%s", d.Message())
		}
	})
	t.Run("a rule's enforce mode overrides global off", func(t *testing.T) {
		p := mk(`mode = "off"
[[rule]]
images = ["**"]
action = "deny"
mode = "enforce"
`)
		if d := Decide(p, NewIndex(), Facts{Image: "quay.io/x/y:1"}, time.Now()); d.Allowed {
			t.Fatalf("%s", d.Message())
		}
		if d := Decide(mk(`mode = "off"`), NewIndex(), Facts{Image: "A/B"}, time.Now()); !d.Allowed || strings.Count(d.Reason, "invalid image reference") != 1 {
			t.Fatalf("%s", d.Message())
		}
	})
	t.Run("a digest-only reference counts only the tags signed with that digest", func(t *testing.T) {
		p := mk(`
[[source]]
name = "corp"
kind = "tuf"
url = "https://tuf.example.com/"
root = "root.json"
repositories = ["registry.example.com/**"]
[[rule]]
images = ["**"]
action = "verify"
source = "corp"
`)
		ix := NewIndex(NewSourceIndex("corp", "tuf", map[string]*Repo{"registry.example.com/app": {
			Name: "registry.example.com/app", Expires: time.Now().Add(time.Hour),
			Tags: map[string]RoleTargets{"1.0": {"targets": {Digest: dg("idx")}}, "2.0": {"targets": {Digest: dg("m2")}}},
		}}))
		covers := map[digest.Digest][]digest.Digest{dg("idx"): {dg("idx"), dg("amd64"), dg("cfg-amd64")}, dg("m2"): {dg("m2"), dg("cfg-2")}}
		f := Facts{Subject: SubjectContainer, Namespace: "x", Image: "registry.example.com/app@" + string(dg("m2")), ConfigDigest: dg("cfg-amd64"), Covers: covers}
		if d := Decide(p, ix, f, time.Now()); d.Allowed {
			t.Fatalf("config of another tag's image allowed: %s", d.Message())
		}
		f.ConfigDigest = dg("cfg-2")
		if d := Decide(p, ix, f, time.Now()); !d.Allowed || d.SignedDigest != dg("m2") {
			t.Fatalf("%s", d.Message())
		}
		pf := Facts{Image: "registry.example.com/app@" + string(dg("amd64"))}
		if got := Needed(p, ix, pf); len(got) != 2 {
			t.Fatalf("Needed for a digest-only reference: %v", got)
		}
		pf.Covers = covers
		if d := Decide(p, ix, pf, time.Now()); !d.Allowed || d.Digest != dg("amd64") {
			t.Fatalf("platform manifest of a signed index: %s", d.Message())
		}
	})
}

// TestDecisionSignersAreTheCallers: a caller that changes a decision's
// Signers changes nothing the next decision reads.
func TestDecisionSignersAreTheCallers(t *testing.T) {
	p, err := policy.Parse("policy.toml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ix := testIndex(now.Add(24 * time.Hour))
	for _, image := range []string{"registry.example.com/apps/web:1.0", "docker.io/library/nginx:1.25", "docker.io/team/app:agree"} {
		f := Facts{Subject: SubjectPull, Image: image}
		first := Decide(p, ix, f, now)
		if !first.Allowed || len(first.Signers) == 0 {
			t.Fatalf("%s: %s", image, first.Message())
		}
		want := strings.Join(first.Signers, ",")
		for i := range first.Signers {
			first.Signers[i] = "mallory"
		}
		if again := Decide(p, ix, f, now); strings.Join(again.Signers, ",") != want {
			t.Errorf("%s: signers %v after the caller changed its copy, want %s", image, again.Signers, want)
		}
	}
	d := DefaultNotarySigners()
	d[0] = "mallory"
	if DefaultNotarySigners()[0] != "targets/releases" {
		t.Error("DefaultNotarySigners can be changed by a caller")
	}
}
