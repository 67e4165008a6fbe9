package policy

import (
	"strings"
	"testing"
)

// hostsPolicy has lowercase rules for registries that an image reference
// may spell otherwise.
const hostsPolicy = v1 + corpSource + `
[[rule]] # index 0
images = ["registry.corp.example/**"]
action = "verify"
source = "corp"
[[rule]] # index 1
images = ["evil.corp.example/**"]
action = "deny"
[[rule]] # index 2
images = ["localhost:5000/**"]
action = "deny"
[[rule]] # index 3
images = ["docker.io/library/*"]
action = "deny"
[[rule]] # index 4
images = ["*.untrusted.example/**"]
action = "deny"
[[rule]] # index 5
images = ["**"]
action = "allow"
[[mirror]]
from = "MIRROR.corp.example:0443"
to = "Registry.Corp.Example"
`

// TestMatchHostSpellings: a registry host is compared case-insensitively,
// with its default port and Docker Hub's aliases, so that no spelling of a
// registry escapes the rule written for it.
func TestMatchHostSpellings(t *testing.T) {
	p := mustParse(t, hostsPolicy)
	tests := []struct {
		image string
		want  int // rule index
	}{
		{"registry.corp.example/app:1", 0},
		{"REGISTRY.corp.example/app:1", 0},
		{"Registry.Corp.Example/team/app", 0},
		{"registry.corp.example:443/app:1", 0},
		{"REGISTRY.CORP.EXAMPLE:0443/app@" + testDigest, 0},
		{"registry.corp.example:5000/app:1", 5}, // another port is another registry
		{"EVIL.corp.example/x", 1},
		{"evil.CORP.example:443/x/y:2", 1},
		{"LOCALHOST:5000/app:1", 2},
		{"localhost:05000/app", 2},
		{"registry-1.docker.io/nginx:1", 3},
		{"Registry-1.Docker.IO:443/library/nginx", 3},
		{"INDEX.docker.io/nginx", 3},
		{"DOCKER.IO/nginx", 3},
		{"docker.io:443/nginx", 3},
		{"eu.UNTRUSTED.example/x", 4},
		{"eu.untrusted.example:443/x", 4},
		{"mirror.corp.example/app:1", 0}, // mirrored onto registry.corp.example
		{"MIRROR.corp.example:443/app:1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			ref, err := ParseRef(tt.image)
			if err != nil {
				t.Fatal(err)
			}
			repo := p.Origin(ref.Repo)
			for _, ns := range []string{"", "default"} {
				if got := p.Match(repo, ns); got == nil || got.Index != tt.want {
					t.Fatalf("Match(%q (%s), %q) = %v, want rule index %d", repo, tt.image, ns, got, tt.want)
				}
			}
			if got := p.Candidates(repo); len(got) == 0 || got[0].Index != tt.want {
				t.Fatalf("Candidates(%q) = %v, want rule index %d first", repo, got, tt.want)
			}
		})
	}
	if got := p.Mirrors[0]; got.From != "mirror.corp.example" || got.To != "registry.corp.example" {
		t.Errorf("mirror = %q -> %q, want mirror.corp.example -> registry.corp.example", got.From, got.To)
	}
}

// TestHostRulesSpelledOtherwise: rules may spell a host any way; they
// apply to every spelling of it.
func TestHostRulesSpelledOtherwise(t *testing.T) {
	p := mustParse(t, v1+`
[[rule]]
images = ["REGISTRY.corp.example/**"]
action = "deny"
[[rule]]
images = ["registry.other.example:443/app"]
action = "deny"
[[rule]]
images = ["**"]
action = "allow"
`)
	for _, repo := range []string{"registry.corp.example/app", "registry.other.example/app"} {
		if r := p.Match(repo, ""); r == nil || r.Action != ActionDeny {
			t.Errorf("Match(%q) = %v, want a deny rule", repo, r)
		}
	}
}

// TestHostGlobSpecificity: a pattern whose host is a glob outranks "**",
// and a longer fixed part outranks a shorter one, whatever the file order.
func TestHostGlobSpecificity(t *testing.T) {
	p := mustParse(t, v1+`
[[rule]] # index 0
images = ["**"]
action = "allow"
[[rule]] # index 1
images = ["*.example/**"]
action = "allow"
[[rule]] # index 2
images = ["*.corp.example/**"]
action = "deny"
[[rule]] # index 3
images = ["registry.corp.example/**"]
action = "allow"
[[rule]] # index 4
images = ["docker.io/library/*"]
action = "deny"
[[rule]] # index 5
images = ["docker.io/library/ngin*"]
action = "allow"
`)
	tests := []struct {
		repo string
		want int
	}{
		{"eu.corp.example/app", 2},
		{"eu.other.example/app", 1},
		{"registry.corp.example/app", 3},
		{"quay.io/app", 0},
		{"docker.io/library/nginx", 5},
		{"docker.io/library/redis", 4},
	}
	for _, tt := range tests {
		if got := p.Match(tt.repo, "default"); got == nil || got.Index != tt.want {
			t.Errorf("Match(%q) = %v, want rule index %d", tt.repo, got, tt.want)
		}
	}
	for _, w := range p.Check() {
		if strings.Contains(w.Message, "can never apply") {
			t.Errorf("Check: %s", w)
		}
	}
}

// TestCheckHostSpellings: `policy check` warns where a registry is
// reachable under another spelling of its host that another rule governs.
func TestCheckHostSpellings(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"loopback spellings", v1 + `
[[rule]]
images = ["localhost:5000/**"]
action = "deny"
[[rule]]
images = ["[::1]:5000/**"]
action = "deny"
[[rule]]
images = ["**"]
action = "allow"
`, []string{
			`p.toml:4:11: warning: registry localhost:5000 is also reachable as 127.0.0.1:5000, where rule #3 (p.toml:9) decides 127.0.0.1:5000/x, not rule #1 (p.toml:3): write the rule for both spellings, or map one onto the other with a [[mirror]]`,
			`p.toml:7:11: warning: registry [::1]:5000 is also reachable as 127.0.0.1:5000, where rule #3 (p.toml:9) decides 127.0.0.1:5000/x, not rule #2 (p.toml:6): write the rule for both spellings, or map one onto the other with a [[mirror]]`,
		}},
		{"without a catch-all", v1 + "[[rule]]\nimages = [\"127.0.0.1/app\"]\naction = \"allow\"\n", []string{
			`p.toml:1:1: warning: no catch-all rule: images matching no rule are denied`,
			`p.toml:3:11: warning: registry 127.0.0.1 is also reachable as localhost, where no rule decides localhost/app, not rule #1 (p.toml:2): write the rule for both spellings, or map one onto the other with a [[mirror]]`,
			`p.toml:3:11: warning: registry 127.0.0.1 is also reachable as [::1], where no rule decides [::1]/app, not rule #1 (p.toml:2): write the rule for both spellings, or map one onto the other with a [[mirror]]`,
		}},
		{"every spelling alike", v1 + `
[[rule]]
images = ["localhost:5000/**", "127.0.0.1:5000/**"]
action = "deny"
[[rule]]
images = ["[::1]:5000/**"]
action = "deny"
[[rule]]
images = ["**"]
action = "allow"
`, nil},
		{"mirrored onto one spelling", v1 + `
[[rule]]
images = ["localhost:5000/**"]
action = "deny"
[[rule]]
images = ["**"]
action = "allow"
[[mirror]]
from = "127.0.0.1:5000"
to = "localhost:5000"
[[mirror]]
from = "[::1]:5000"
to = "localhost:5000"
`, nil},
		{"other ports are other registries", v1 + `
[[rule]]
images = ["localhost:5000/**"]
action = "deny"
[[rule]]
images = ["127.0.0.1:5000/**", "[::1]:5000/**"]
action = "deny"
[[rule]]
images = ["localhost:5001/**"]
action = "allow"
[[rule]]
images = ["**"]
action = "deny"
`, []string{
			`p.toml:10:11: warning: registry localhost:5001 is also reachable as 127.0.0.1:5001, where rule #4 (p.toml:12) decides 127.0.0.1:5001/x, not rule #3 (p.toml:9): write the rule for both spellings, or map one onto the other with a [[mirror]]`,
			`p.toml:10:11: warning: registry localhost:5001 is also reachable as [::1]:5001, where rule #4 (p.toml:12) decides [::1]:5001/x, not rule #3 (p.toml:9): write the rule for both spellings, or map one onto the other with a [[mirror]]`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, w := range mustParse(t, tt.doc).Check() {
				got = append(got, w.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Check():\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "))
			}
		})
	}
}
