package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestNormalizeRepo(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "nginx", want: "docker.io/library/nginx"},
		{in: "library/nginx", want: "docker.io/library/nginx"},
		{in: "docker.io/nginx", want: "docker.io/library/nginx"},
		{in: "index.docker.io/nginx", want: "docker.io/library/nginx"},
		{in: "docker.io/library/nginx", want: "docker.io/library/nginx"},
		{in: "user/app", want: "docker.io/user/app"},
		{in: "localhost/app", want: "localhost/app"},
		{in: "localhost:5000/a/b", want: "localhost:5000/a/b"},
		{in: "127.0.0.1:5000/demo/hello", want: "127.0.0.1:5000/demo/hello"},
		{in: "[::1]:5000/demo", want: "[::1]:5000/demo"},
		{in: "registry.k8s.io/pause", want: "registry.k8s.io/pause"},
		// Registry hosts in canonical form: the network does not tell these apart.
		{in: "REGISTRY.corp.example/app", want: "registry.corp.example/app"},
		{in: "registry.corp.example:443/app", want: "registry.corp.example/app"},
		{in: "Registry.Corp.Example:0443/app", want: "registry.corp.example/app"},
		{in: "registry.corp.example:05000/app", want: "registry.corp.example:5000/app"},
		{in: "LOCALHOST:5000/app", want: "localhost:5000/app"},
		{in: "localhost:443/app", want: "localhost/app"},
		{in: "registry-1.docker.io/nginx", want: "docker.io/library/nginx"},
		{in: "Registry-1.Docker.IO:443/corp/app", want: "docker.io/corp/app"},
		{in: "INDEX.DOCKER.IO/nginx", want: "docker.io/library/nginx"},
		{in: "DOCKER.IO/corp/app", want: "docker.io/corp/app"},
		{in: "docker.io:443/nginx", want: "docker.io/library/nginx"},
		{in: "registry-1.docker.io:5000/nginx", want: "registry-1.docker.io:5000/nginx"},
		{in: "registry:443/app", want: "registry:443/app"}, // without its port, a Docker Hub namespace
		{in: "Registry:0443/app", want: "registry:443/app"},
		{in: "[::1]:443/demo", want: "[::1]/demo"},
		{in: "[0:0:0:0:0:0:0:1]:5000/demo", want: "[::1]:5000/demo"},
		{in: "[FE80::A]/demo", want: "[fe80::a]/demo"},
		{in: "Registry/app", err: `invalid image reference "Registry/app": registry host "Registry" is a host only by its upper case (it has no '.' and no port and is not localhost): trustd compares hosts in lower case, where it would be a Docker Hub namespace; write the host with its domain or its port`},
		{in: "Nginx", err: `invalid image reference "Nginx": repository name (library/Nginx) must be lowercase`},
		{in: "docker.io/Library/nginx", err: `invalid image reference "docker.io/Library/nginx": repository name (Library/nginx) must be lowercase`},
		{in: "nginx:1", err: `invalid image reference "nginx:1": a repository name must not contain a tag or digest`},
		{in: "nginx@" + testDigest, err: `invalid image reference "nginx@` + testDigest + `": a repository name must not contain a tag or digest`},
		{in: "", err: `invalid image reference "": empty repository name`},
		{in: "a//b", err: `invalid image reference "a//b": not a valid repository name`},
		{in: strings.Repeat("a", 64), err: `invalid image reference "` + strings.Repeat("a", 64) + `": invalid repository name (` + strings.Repeat("a", 64) + `), cannot specify 64-byte hexadecimal strings`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeRepo(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || !errors.Is(err, ErrInvalidReference) {
					t.Fatalf("NormalizeRepo(%q) = %q, %v; want error %s", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeRepo(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		in   string
		want Ref
		str  string
		err  string
	}{
		{in: "nginx", want: Ref{Repo: "docker.io/library/nginx", Tag: "latest"}, str: "docker.io/library/nginx:latest"},
		{in: "library/nginx:1.25", want: Ref{Repo: "docker.io/library/nginx", Tag: "1.25"}, str: "docker.io/library/nginx:1.25"},
		{in: "docker.io/nginx", want: Ref{Repo: "docker.io/library/nginx", Tag: "latest"}, str: "docker.io/library/nginx:latest"},
		{in: "localhost:5000/a/b", want: Ref{Repo: "localhost:5000/a/b", Tag: "latest"}, str: "localhost:5000/a/b:latest"},
		{in: "127.0.0.1:5000/demo/hello:1.0", want: Ref{Repo: "127.0.0.1:5000/demo/hello", Tag: "1.0"}, str: "127.0.0.1:5000/demo/hello:1.0"},
		{in: "nginx@" + testDigest, want: Ref{Repo: "docker.io/library/nginx", Digest: testDigest}, str: "docker.io/library/nginx@" + testDigest},
		{in: "nginx:1@" + testDigest, want: Ref{Repo: "docker.io/library/nginx", Tag: "1", Digest: testDigest}, str: "docker.io/library/nginx:1@" + testDigest},
		{in: "REGISTRY.corp.example/app:1", want: Ref{Repo: "registry.corp.example/app", Tag: "1"}, str: "registry.corp.example/app:1"},
		{in: "registry.corp.example:443/app@" + testDigest, want: Ref{Repo: "registry.corp.example/app", Digest: testDigest}, str: "registry.corp.example/app@" + testDigest},
		{in: "Registry-1.Docker.IO/nginx:1", want: Ref{Repo: "docker.io/library/nginx", Tag: "1"}, str: "docker.io/library/nginx:1"},
		{in: "LOCALHOST:05000/app", want: Ref{Repo: "localhost:5000/app", Tag: "latest"}, str: "localhost:5000/app:latest"},
		{in: "Registry:443/app:1", want: Ref{Repo: "registry:443/app", Tag: "1"}, str: "registry:443/app:1"},
		{in: "Team/app:1", err: `invalid image reference "Team/app:1": registry host "Team" is a host only by its upper case (it has no '.' and no port and is not localhost): trustd compares hosts in lower case, where it would be a Docker Hub namespace; write the host with its domain or its port`},
		{in: "Nginx:1", err: `invalid image reference "Nginx:1": repository name (library/Nginx) must be lowercase`},
		{in: "nginx@sha256:0123", err: `invalid image reference "nginx@sha256:0123": not a valid repository name`},
		{in: "nginx@sha256:" + strings.Repeat("0", 63) + "g", err: `invalid image reference "nginx@sha256:` + strings.Repeat("0", 63) + `g": not a valid repository name`},
		{in: "nginx@sha256:" + strings.Repeat("0", 62), err: `invalid image reference "nginx@sha256:` + strings.Repeat("0", 62) + `": invalid checksum digest length`},
		{in: "nginx:", err: `invalid image reference "nginx:": not a valid repository name`},
		{in: "", err: `invalid image reference "": empty reference`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRef(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err || !errors.Is(err, ErrInvalidReference) {
					t.Fatalf("ParseRef(%q) = %+v, %v; want error %s", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRef(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			// The normalised form parses to itself.
			if again, err := ParseRef(got.String()); err != nil || again != got {
				t.Errorf("ParseRef(String()) = %+v, %v", again, err)
			}
		})
	}
}

func TestParsePattern(t *testing.T) {
	tests := []struct {
		in, norm  string
		lit, wild int
	}{
		{"nginx", "docker.io/library/nginx", 3, 0},
		{"library/nginx", "docker.io/library/nginx", 3, 0},
		{"library/*", "docker.io/library/*", 2, 1},
		{"docker.io/*", "docker.io/library/*", 2, 1},
		{"docker.io/**", "docker.io/**", 1, 1},
		{"index.docker.io/corp/**", "docker.io/corp/**", 2, 1},
		{"corp/**", "docker.io/corp/**", 2, 1},
		{"ngin*", "docker.io/library/ngin*", 2, 1},
		{"**", "**", 0, 1},
		{"**/nginx", "**/nginx", 1, 1},
		{"*/nginx", "*/nginx", 1, 1},
		{"*.corp.example/**", "*.corp.example/**", 0, 2},
		{"localhost:5000/**", "localhost:5000/**", 1, 1},
		{"localhost/app", "localhost/app", 2, 0},
		{"registry.k8s.io/pause", "registry.k8s.io/pause", 2, 0},
		{"a/**/**/b", "docker.io/a/**/**/b", 3, 1},
		{"docker.io/a**b*c/*", "", 0, 0}, // invalid: ** inside a segment
		{"docker.io/a*b*c/*", "docker.io/a*b*c/*", 1, 3},
		{"Registry/app", "", 0, 0}, // a host only by its upper case: in lower case, a Docker Hub namespace
		{"Registry:443/app", "registry:443/app", 2, 0},
		{"[::1]:5000/app", "[::1]:5000/app", 2, 0},
		// Hosts in canonical form, as names are.
		{"REGISTRY.corp.example/app", "registry.corp.example/app", 2, 0},
		{"registry.corp.example:443/**", "registry.corp.example/**", 1, 1},
		{"registry.corp.example:0443/**", "registry.corp.example/**", 1, 1},
		{"LOCALHOST:5000/**", "localhost:5000/**", 1, 1},
		{"registry-1.docker.io/nginx", "docker.io/library/nginx", 3, 0},
		{"Index.Docker.IO:443/corp/**", "docker.io/corp/**", 2, 1},
		{"[0:0::1]:5000/app", "[::1]:5000/app", 2, 0},
		{"*.CORP.example:443/**", "*.corp.example/**", 0, 2},
		{"*.corp.example:5000/**", "*.corp.example:5000/**", 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParsePattern(tt.in)
			if tt.norm == "" {
				if err == nil {
					t.Fatalf("ParsePattern(%q) succeeded: %q", tt.in, p.Normalized())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Normalized() != tt.norm || p.String() != tt.in || p.lit != tt.lit || p.wild != tt.wild {
				t.Errorf("ParsePattern(%q) = %q (%q) lit %d wild %d; want %q lit %d wild %d",
					tt.in, p.Normalized(), p.String(), p.lit, p.wild, tt.norm, tt.lit, tt.wild)
			}
			if p.IsLiteral() != (tt.wild == 0) {
				t.Errorf("IsLiteral() = %v", p.IsLiteral())
			}
			if b, _ := p.MarshalText(); string(b) != tt.in {
				t.Errorf("MarshalText() = %q", b)
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern string
		yes, no []string
	}{
		{"nginx", []string{"docker.io/library/nginx"}, []string{"docker.io/library/nginx2", "docker.io/library/ngin", "docker.io/library/nginx/x", "quay.io/library/nginx", "nginx"}},
		{"library/*", []string{"docker.io/library/nginx", "docker.io/library/a"}, []string{"docker.io/library/a/b", "docker.io/user/nginx", "docker.io/library"}},
		{"docker.io/**", []string{"docker.io/library/nginx", "docker.io/a/b/c/d"}, []string{"quay.io/a", "docker.iox/a", "xdocker.io/a"}},
		{"a/**/b", []string{"docker.io/a/b", "docker.io/a/x/b", "docker.io/a/x/y/b"}, []string{"docker.io/a/x/b/c", "docker.io/a/bb", "docker.io/a", "docker.io/ab/b"}},
		{"**", []string{"docker.io/library/nginx", "x", "a/b/c/d/e/f"}, nil},
		{"**/nginx", []string{"docker.io/library/nginx", "quay.io/nginx", "a/b/c/nginx"}, []string{"quay.io/nginx/x", "quay.io/nginx2"}},
		{"*/nginx", []string{"quay.io/nginx", "localhost:5000/nginx"}, []string{"docker.io/library/nginx", "quay.io/a/nginx"}},
		{"*.corp.example/**", []string{"registry.corp.example/a/b", "r.corp.example/x"}, []string{"corp.example/a", "evil.example/a.corp.example", "registry.corp.example.evil/a"}},
		{"docker.io/library/ngin*", []string{"docker.io/library/nginx", "docker.io/library/ngin"}, []string{"docker.io/library/nginy/x", "docker.io/library/apache", "docker.io/library/ngi"}},
		{"docker.io/*/*-agent", []string{"docker.io/corp/foo-agent", "docker.io/x/-agent"}, []string{"docker.io/corp/agent", "docker.io/a/b/c-agent", "docker.io/corp/foo-agent2"}},
		{"docker.io/library/a*b*c", []string{"docker.io/library/abc", "docker.io/library/axxbyyc", "docker.io/library/abbc"}, []string{"docker.io/library/acb", "docker.io/library/abcb", "docker.io/library/ab"}},
		{"localhost:5000/**", []string{"localhost:5000/a/b", "localhost:5000/a"}, []string{"localhost:5001/a", "localhost/a"}},
		{"**/x/**", []string{"docker.io/a/x/b", "x", "a/x", "x/b"}, []string{"docker.io/a/y", "docker.io/a/xx/b"}},
		{"**/a/b", []string{"x.io/a/a/b", "x.io/a/b/a/b"}, []string{"x.io/a/b/c", "x.io/a/a"}},
		{"**/a/*/c", []string{"x.io/a/a/b/c", "x.io/a/a/c"}, []string{"x.io/a/c", "x.io/a/b/c/d"}},
		{"x.io/**/a/**/b", []string{"x.io/a/b", "x.io/1/a/2/3/b", "x.io/a/a/b/b"}, []string{"x.io/b/a", "x.io/a", "y.io/a/b"}},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			p, err := ParsePattern(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tt.yes {
				if !p.Match(r) {
					t.Errorf("%q (%s) does not match %q", tt.pattern, p.Normalized(), r)
				}
				if !refMatch(p.Normalized(), r) {
					t.Errorf("reference matcher disagrees on %q", r)
				}
			}
			for _, r := range tt.no {
				if p.Match(r) {
					t.Errorf("%q (%s) matches %q", tt.pattern, p.Normalized(), r)
				}
				if refMatch(p.Normalized(), r) {
					t.Errorf("reference matcher disagrees on %q", r)
				}
			}
		})
	}
	var zero Pattern
	if zero.Match("docker.io/library/nginx") || zero.Match("") {
		t.Error("the zero Pattern matches")
	}
}

// refMatch is a slow, obviously correct matcher for normalised patterns:
// recursion over segments ("**" takes zero or more whole segments) and, in
// a segment, over characters ("*" takes zero or more), memoised so that it
// stays polynomial on the fuzzer's inputs.
func refMatch(pattern, name string) bool {
	if pattern == "**" {
		return true
	}
	ps, ns := strings.Split(pattern, "/"), strings.Split(name, "/")
	memo := map[[2]int]bool{}
	var segs func(i, j int) bool
	segs = func(i, j int) bool {
		k := [2]int{i, j}
		if v, ok := memo[k]; ok {
			return v
		}
		var v bool
		switch {
		case i == len(ps):
			v = j == len(ns)
		case ps[i] == "**":
			v = segs(i+1, j) || (j < len(ns) && segs(i, j+1))
		default:
			v = j < len(ns) && refGlob(ps[i], ns[j]) && segs(i+1, j+1)
		}
		memo[k] = v
		return v
	}
	return segs(0, 0)
}

func refGlob(p, s string) bool {
	memo := map[[2]int]bool{}
	var glob func(i, j int) bool
	glob = func(i, j int) bool {
		k := [2]int{i, j}
		if v, ok := memo[k]; ok {
			return v
		}
		var v bool
		switch {
		case i == len(p):
			v = j == len(s)
		case p[i] == '*':
			v = glob(i+1, j) || (j < len(s) && glob(i, j+1))
		default:
			v = j < len(s) && s[j] == p[i] && glob(i+1, j+1)
		}
		memo[k] = v
		return v
	}
	return glob(0, 0)
}

const tieBreakPolicy = v1 + `
[[rule]]
images = ["docker.io/**"]
action = "deny"
[[rule]]
images = ["docker.io/library/nginx", "docker.io/**"]
action = "allow"
`

const matchPolicy = `version = 1
[[source]]
name = "hub"
kind = "notary"
url = "https://notary.docker.io"
repositories = ["docker.io/**", "quay.io/**"]

[[rule]] # 0
images = ["**"]
action = "deny"

[[rule]] # 1: one literal segment, two wildcards
images = ["docker.io/*/*"]
action = "deny"

[[rule]] # 2: one literal segment, one wildcard: beats rule 1 though later
images = ["docker.io/**"]
action = "verify"
source = "hub"

[[rule]] # 3
images = ["docker.io/library/*"]
action = "verify"
source = "hub"

[[rule]] # 4: only for prod
images = ["nginx"]
namespaces = ["prod"]
action = "allow"

[[rule]] # 5: ties with rule 3, which comes first
images = ["library/*"]
action = "deny"

[[rule]] # 6: its most specific matching pattern counts
images = ["quay.io/**", "docker.io/*/nginx"]
action = "verify"
source = "hub"

[[rule]] # 7
images = ["registry.k8s.io/**"]
namespaces = ["kube-*", "monitoring"]
action = "allow"

[[rule]] # 8: same specificity as 7, later, every namespace
images = ["registry.k8s.io/**"]
action = "deny"
`

func TestMatch(t *testing.T) {
	p := mustParse(t, matchPolicy)
	tests := []struct {
		repo, ns string
		want     int // rule index, -1: none
	}{
		{"docker.io/library/nginx", "default", 3},
		{"docker.io/library/nginx", "prod", 4},
		{"docker.io/library/nginx", "", 3},
		{"docker.io/library/redis", "prod", 3},
		{"docker.io/corp/app", "default", 2},
		{"docker.io/corp/app/sub", "default", 2},
		{"docker.io/corp/nginx", "default", 6},
		{"quay.io/x/y", "default", 6},
		{"ghcr.io/x/y", "default", 0},
		{"ghcr.io/x/y", "", 0},
		{"registry.k8s.io/pause", "kube-system", 7},
		{"registry.k8s.io/pause", "monitoring", 7},
		{"registry.k8s.io/pause", "kube", 8},
		{"registry.k8s.io/pause", "default", 8},
		{"registry.k8s.io/pause", "", 8},
	}
	for _, tt := range tests {
		t.Run(tt.repo+"@"+tt.ns, func(t *testing.T) {
			got := p.Match(tt.repo, tt.ns)
			if got == nil || got.Index != tt.want {
				t.Fatalf("Match(%q, %q) = %v, want rule index %d", tt.repo, tt.ns, got, tt.want)
			}
			if got != p.Rules[tt.want] {
				t.Fatal("Match does not return the policy's own *Rule")
			}
		})
	}

	// Without a catch-all, unmatched repositories get no rule; a rule for
	// some namespaces does not apply to others, nor to non-pod images.
	p2 := mustParse(t, v1+"[[rule]]\nimages = [\"nginx\"]\nnamespaces = [\"prod\"]\naction = \"allow\"\n")
	for _, c := range [][2]string{{"docker.io/library/redis", "prod"}, {"docker.io/library/nginx", "dev"}, {"docker.io/library/nginx", ""}} {
		if r := p2.Match(c[0], c[1]); r != nil {
			t.Errorf("Match(%q, %q) = %v, want nil", c[0], c[1], r)
		}
	}
	if r := p2.Match("docker.io/library/nginx", "prod"); r == nil {
		t.Error("Match(nginx, prod) = nil")
	}
	// A rule whose best pattern does not match competes with the specificity
	// of the pattern that does: on a tie, the first rule in the file wins.
	p4 := mustParse(t, tieBreakPolicy)
	if r := p4.Match("docker.io/corp/app", "default"); r == nil || r.Index != 0 {
		t.Errorf("tie between rules: Match = %v, want rule index 0", r)
	}
	if r := p4.Match("docker.io/library/nginx", "default"); r == nil || r.Index != 1 {
		t.Errorf("Match(nginx) = %v, want rule index 1", r)
	}
	// Namespace globs.
	p3 := mustParse(t, v1+"[[rule]]\nimages = [\"**\"]\nnamespaces = [\"team-?\", \"ci-[0-9]*\"]\naction = \"allow\"\n")
	for ns, want := range map[string]bool{"team-a": true, "team-ab": false, "ci-1x": true, "ci-x": false, "": false} {
		if got := p3.Match("docker.io/library/nginx", ns) != nil; got != want {
			t.Errorf("namespace %q: matched = %v, want %v", ns, got, want)
		}
	}
}

// naiveMatch is Match without its pruning: every rule, in file order.
func naiveMatch(p *Policy, repo, ns string) *Rule {
	var best *Rule
	bestScore := 0
	for _, r := range p.Rules {
		if s, ok := r.score(repo); ok && r.appliesTo(ns) && (best == nil || s > bestScore) {
			best, bestScore = r, s
		}
	}
	return best
}

func TestMatchEqualsNaive(t *testing.T) {
	policies := []*Policy{mustParse(t, matchPolicy), mustParse(t, tieBreakPolicy), benchPolicy(t)}
	for _, file := range goldenFiles(t, "valid") {
		p, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		policies = append(policies, p)
	}
	n := 0
	for _, p := range policies {
		for _, repo := range append(probeRepos(p), benchRepos()...) {
			for _, ns := range []string{"", "default", "prod", "kube-system", "team-3", "ci-1", "dev-x", "sandbox"} {
				if got, want := p.Match(repo, ns), naiveMatch(p, repo, ns); got != want {
					t.Errorf("%s: Match(%q, %q) = %v, naive = %v", p.File, repo, ns, got, want)
				}
				n++
			}
		}
	}
	if n < 1000 {
		t.Errorf("only %d cases", n)
	}
}

func TestCandidates(t *testing.T) {
	p := mustParse(t, matchPolicy)
	tests := []struct {
		repo string
		want []int
	}{
		{"docker.io/library/nginx", []int{4, 3}},
		{"registry.k8s.io/pause", []int{7, 8}},
		{"docker.io/corp/app", []int{2}},
		{"ghcr.io/x/y", []int{0}},
	}
	for _, tt := range tests {
		var got []int
		for _, r := range p.Candidates(tt.repo) {
			got = append(got, r.Index)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Candidates(%q) = %v, want %v", tt.repo, got, tt.want)
		}
	}
	p2 := mustParse(t, v1+"[[rule]]\nimages = [\"nginx\"]\nnamespaces = [\"prod\"]\naction = \"allow\"\n[[rule]]\nimages = [\"library/*\"]\nnamespaces = [\"dev\"]\naction = \"allow\"\n")
	if got := p2.Candidates("docker.io/library/nginx"); len(got) != 2 || got[0].Index != 0 || got[1].Index != 1 {
		t.Errorf("Candidates without catch-all = %v", got)
	}
	if got := p2.Candidates("quay.io/a"); len(got) != 0 {
		t.Errorf("Candidates(unmatched) = %v", got)
	}
}

func TestOrigin(t *testing.T) {
	p := mustParse(t, v1+`
[[mirror]]
from = "mirror.corp.example:5000/hub"
to = "docker.io"
[[mirror]]
from = "mirror.corp.example:5000"
to = "quay.io"
[[mirror]]
from = "localhost:5000/proxy"
to = "registry.k8s.io"
[[mirror]]
from = "m.example/official"
to = "library"
`)
	tests := []struct{ in, want string }{
		{"mirror.corp.example:5000/hub/nginx", "docker.io/library/nginx"},
		{"mirror.corp.example:5000/hub/library/nginx", "docker.io/library/nginx"},
		{"mirror.corp.example:5000/hub/corp/app", "docker.io/corp/app"},
		{"mirror.corp.example:5000/hubx/nginx", "quay.io/hubx/nginx"},    // not under .../hub: the host mirror applies
		{"mirror.corp.example:5000/hub", "mirror.corp.example:5000/hub"}, // "docker.io" alone is not a repository
		{"mirror.corp.example:5000/other/x", "quay.io/other/x"},
		{"localhost:5000/proxy/pause", "registry.k8s.io/pause"},
		{"localhost:5000/proxy", "localhost:5000/proxy"}, // "registry.k8s.io" alone is not a repository
		{"localhost:5000/proxyx/pause", "localhost:5000/proxyx/pause"},
		{"m.example/official/nginx", "docker.io/library/library/nginx"},
		{"docker.io/library/nginx", "docker.io/library/nginx"},
	}
	for _, tt := range tests {
		if got := p.Origin(tt.in); got != tt.want {
			t.Errorf("Origin(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := mustParse(t, v1).Origin("a/b"); got != "a/b" {
		t.Errorf("Origin without mirrors = %q", got)
	}
}

func TestCheck(t *testing.T) {
	key := strings.Repeat("b", 64)
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"clean", v1 + hubSource + `
[[rule]]
images = ["docker.io/library/*"]
action = "verify"
source = "hub"
[[rule]]
images = ["nginx"]
namespaces = ["prod"]
action = "allow"
[[rule]]
images = ["**"]
action = "deny"
`, nil},
		{"no catch-all", v1 + "[[rule]]\nimages = [\"a/b\"]\naction = \"allow\"\n[[rule]]\nimages = [\"**\"]\nnamespaces = [\"prod\"]\naction = \"deny\"\n",
			[]string{"p.toml:1:1: warning: no catch-all rule: images matching no rule are denied"}},
		{"mode audit", v1 + "mode = \"audit\"\n[[rule]]\nimages = [\"**\"]\naction = \"deny\"\n",
			[]string{`p.toml:2:8: warning: mode is "audit": denied images are logged but still run`}},
		{"mode off", v1 + "mode = \"off\"\n[[rule]]\nimages = [\"**\"]\naction = \"deny\"\n",
			[]string{`p.toml:2:8: warning: mode is "off": images are not checked`}},
		{"unused source and pin outside repositories", v1 + hubSource + "[[source.pin]]\nrepositories = [\"docker.io/library/*\", \"quay.io/**\"]\nroot_keys = [\"" + key + "\"]\n" + corpSource +
			"[[rule]]\nimages = [\"**\"]\naction = \"verify\"\nsource = \"hub\"\n",
			[]string{
				`p.toml:9:40: warning: pin repository pattern "quay.io/**" is not within the repositories of source "hub"`,
				`p.toml:12:1: warning: source "corp" is not used by any rule`,
				`p.toml:19:11: warning: image pattern "**" is not within the repositories of source "hub": images it matches there cannot be verified and are denied`,
			}},
		{"shadowed rules", v1 + hubSource + `
[[rule]] # 1
images = ["docker.io/library/*"]
action = "verify"
source = "hub"
[[rule]] # 2: the same after normalisation
images = ["library/*"]
action = "allow"
[[rule]] # 3
images = ["**"]
action = "deny"
[[rule]] # 4: ** after **, for fewer namespaces
images = ["**"]
namespaces = ["prod"]
action = "allow"
[[rule]] # 5: not within hub's repositories
images = ["quay.io/**"]
action = "verify"
source = "hub"
[[rule]] # 6: more specific than 1: not shadowed
images = ["docker.io/library/nginx"]
namespaces = ["prod"]
action = "allow"
[[rule]] # 7: nothing shadows it in kube-system
images = ["docker.io/*/*"]
namespaces = ["kube-system"]
action = "deny"
[[rule]] # 8: nginx is shadowed by 6, redis is not
images = ["docker.io/library/nginx", "docker.io/library/redis"]
namespaces = ["prod"]
action = "deny"
[[rule]] # 9: after a catch-all of equal specificity
images = ["**"]
action = "allow"
[[rule]] # 10: shadowed by two rules together
images = ["quay.io/**", "docker.io/library/*"]
namespaces = ["prod-1"]
action = "deny"
[[rule]] # 11: namespace glob covers it
images = ["quay.io/**"]
namespaces = ["prod-1"]
action = "deny"
`, []string{
			`p.toml:13:1: warning: rule #2 (p.toml:13) can never apply: rule #1 (p.toml:9) decides every image and namespace it matches`,
			`p.toml:19:1: warning: rule #4 (p.toml:19) can never apply: rule #3 (p.toml:16) decides every image and namespace it matches`,
			`p.toml:24:11: warning: image pattern "quay.io/**" is not within the repositories of source "hub": images it matches there cannot be verified and are denied`,
			`p.toml:39:1: warning: rule #9 (p.toml:39) can never apply: rule #3 (p.toml:16) decides every image and namespace it matches`,
			`p.toml:42:1: warning: rule #10 (p.toml:42) can never apply: rule #1 (p.toml:9), rule #5 (p.toml:23) decide every image and namespace it matches`,
			`p.toml:46:1: warning: rule #11 (p.toml:46) can never apply: rule #5 (p.toml:23) decides every image and namespace it matches`,
		}},
		{"namespace glob coverage", v1 + "[[rule]]\nimages = [\"a/b\"]\nnamespaces = [\"team-*\"]\naction = \"allow\"\n[[rule]]\nimages = [\"a/b\"]\nnamespaces = [\"team-x\"]\naction = \"deny\"\n[[rule]]\nimages = [\"a/b\"]\nnamespaces = [\"team-?\"]\naction = \"deny\"\n[[rule]]\nimages = [\"**\"]\naction = \"deny\"\n",
			[]string{`p.toml:6:1: warning: rule #2 (p.toml:6) can never apply: rule #1 (p.toml:2) decides every image and namespace it matches`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.doc)
			var got []string
			for _, w := range p.Check() {
				got = append(got, w.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Check():\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "))
			}
		})
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		p, q string
		want bool
	}{
		{"**", "docker.io/**", true},
		{"docker.io/**", "**", false},
		{"docker.io/**", "library/*", true},
		{"docker.io/**", "docker.io/**", true},
		{"docker.io/library/*", "nginx", true},
		{"docker.io/library/*", "docker.io/**", false},
		{"docker.io/*/*", "docker.io/library/ngin*", true},
		{"docker.io/library/ngin*", "docker.io/library/*", false},
		{"docker.io/library/a*", "docker.io/library/ab*", true},
		{"docker.io/library/ab*", "docker.io/library/a*", false},
		{"docker.io/library/*x*", "docker.io/library/*", false},
		{"docker.io/**/b", "docker.io/a/**/b", true},
		{"docker.io/a/**/b", "docker.io/**/b", false},
		{"*/nginx", "quay.io/nginx", true},
		{"*/nginx", "**/nginx", false},
		{"**/nginx", "*/nginx", true},
		{"docker.io/**/b", "docker.io/a/c", false},
		{"docker.io/**/b", "docker.io/a/b", true},
		{"docker.io/a/**", "docker.io/b/c", false},
		{"**/x/**", "docker.io/a/b", false},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.p)
		if err != nil {
			t.Fatal(err)
		}
		q, err := ParsePattern(tt.q)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.covers(&q); got != tt.want {
			t.Errorf("%q covers %q = %v, want %v", tt.p, tt.q, got, tt.want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	p := benchPolicy(t)
	repos := benchRepos()
	m := mustParse(t, v1+"[[mirror]]\nfrom = \"m.example\"\nto = \"docker.io\"\n")
	allocs := testing.AllocsPerRun(100, func() {
		for _, r := range repos {
			p.Match(r, "default")
			p.Match(r, "")
			p.Match(r, "team-7")
			m.Origin(r)
		}
	})
	if allocs != 0 {
		t.Errorf("Match/Origin allocate: %v allocations per run", allocs)
	}
	pat, err := ParsePattern("x.io/**/a/*b*/**/c")
	if err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(100, func() { pat.Match("x.io/1/2/a/xbx/3/c") }); allocs != 0 {
		t.Errorf("Pattern.Match allocates: %v allocations per run", allocs)
	}
}

// TestConcurrentUse is for the race detector: a parsed policy is read by
// many goroutines at once.
func TestConcurrentUse(t *testing.T) {
	p := benchPolicy(t)
	done := make(chan bool)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; i < 200; i++ {
				for _, r := range benchRepos() {
					p.Match(r, "team-1")
					p.Candidates(r)
					p.Origin(r)
				}
				p.Check()
			}
			done <- true
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
}

// benchPolicy builds a policy of 50 rules of assorted shapes.
func benchPolicy(tb testing.TB) *Policy {
	tb.Helper()
	var b strings.Builder
	b.WriteString(v1 + hubSource)
	for i := 0; i < 12; i++ {
		fmt.Fprintf(&b, "[[rule]]\nimages = [\"registry%d.example/team%d/*\", \"registry%d.example/shared/**\"]\naction = \"verify\"\nsource = \"hub\"\n", i, i, i)
		fmt.Fprintf(&b, "[[rule]]\nimages = [\"docker.io/org%d/**\"]\nnamespaces = [\"team-%d\", \"ci-*\"]\naction = \"allow\"\n", i, i)
		fmt.Fprintf(&b, "[[rule]]\nimages = [\"library/app%d\"]\naction = \"verify\"\nsource = \"hub\"\nmode = \"audit\"\n", i)
		fmt.Fprintf(&b, "[[rule]]\nimages = [\"**/tools%d/*-agent\"]\naction = \"deny\"\n", i)
	}
	b.WriteString("[[rule]]\nimages = [\"docker.io/library/*\"]\naction = \"verify\"\nsource = \"hub\"\n")
	b.WriteString("[[rule]]\nimages = [\"**\"]\naction = \"deny\"\n")
	p, err := Parse("bench.toml", []byte(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	if len(p.Rules) != 50 {
		tb.Fatalf("%d rules", len(p.Rules))
	}
	return p
}

func benchRepos() []string {
	return []string{
		"docker.io/library/nginx",
		"docker.io/library/app7",
		"registry3.example/team3/api",
		"registry11.example/shared/a/b/c",
		"docker.io/org5/service",
		"quay.io/corp/tools4/node-agent",
		"ghcr.io/some/thing",
		"registry.k8s.io/pause",
	}
}

func BenchmarkMatch(b *testing.B) {
	p := benchPolicy(b)
	repos := benchRepos()
	nss := []string{"default", "team-5", "ci-42", ""}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if p.Match(repos[i%len(repos)], nss[i%len(nss)]) == nil {
			b.Fatal("no rule")
		}
	}
}
