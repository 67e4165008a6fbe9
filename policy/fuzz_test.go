package policy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func FuzzParsePolicy(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.toml"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(matchPolicy))
	f.Add([]byte(v1 + hubSource + corpSource + "[[rule]]\nimages = [\"a/**/b\", \"*.x.io/*\"]\nnamespaces = [\"a-?\"]\naction = \"verify\"\nsource = \"hub\"\nthreshold = 2\n"))
	f.Add([]byte(v1 + "rule = [{images = [\"**\"], action = \"deny\"}]\nmirror = [{from = \"a.io\", to = \"b.io/c\"}]\n"))
	f.Add([]byte(v1 + "[daemon]\nrefresh = \"1h\"\n[[source]]\n[[source.pin]]\n[[source.pin]]\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.toml", data)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy and an error")
			}
			msg := err.Error()
			for _, line := range strings.Split(msg, "\n") {
				if !strings.HasPrefix(line, "fuzz.toml:") {
					t.Fatalf("error line without position: %q", line)
				}
			}
			var errs Errors
			if !asErrors(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is not a non-empty Errors: %T %v", err, err)
			}
			for _, e := range errs {
				if e.Pos.Line < 1 || e.Pos.Col < 1 {
					t.Fatalf("error without line and column: %+v", e)
				}
			}
			return
		}
		// Parsing is deterministic.
		p2, err := Parse("fuzz.toml", data)
		if err != nil {
			t.Fatalf("second Parse failed: %v", err)
		}
		if a, b := jsonOf(t, dump(p, true)), jsonOf(t, dump(p2, true)); a != b {
			t.Fatalf("Parse is not deterministic:\n%s\n%s", a, b)
		}
		// Re-encoding the parsed policy and parsing that gives the same
		// policy: validation is consistent with what it accepted.
		enc := encodePolicy(t, p)
		p3, err := Parse("fuzz.toml", enc)
		if err != nil {
			t.Fatalf("re-encoded policy does not parse: %v\n%s", err, enc)
		}
		if a, b := jsonOf(t, dump(p, false)), jsonOf(t, dump(p3, false)); a != b {
			t.Fatalf("re-encoded policy differs:\n%s\n%s\nfrom:\n%s", a, b, enc)
		}
		if len(p.Check()) != len(p3.Check()) {
			t.Fatalf("Check differs after re-encoding: %v vs %v", p.Check(), p3.Check())
		}
		// Matching never panics, and Match agrees with Candidates.
		for _, repo := range probeRepos(p) {
			for _, ns := range []string{"", "default", "kube-system"} {
				if got, want := p.Match(repo, ns), naiveMatch(p, repo, ns); got != want {
					t.Fatalf("Match(%q, %q) = %v, naive = %v", repo, ns, got, want)
				}
			}
			cands := p.Candidates(repo)
			if all := p.allCandidates(repo); !slices.Equal(cands, all) {
				t.Fatalf("Candidates(%q) = %v, the long way %v", repo, cands, all)
			}
			m := p.Match(repo, "")
			switch {
			case len(cands) > 0 && cands[len(cands)-1].anyNS:
				if m != cands[len(cands)-1] {
					t.Fatalf("Match(%q, \"\") = %v, Candidates = %v", repo, m, cands)
				}
			case m != nil:
				t.Fatalf("Match(%q, \"\") = %v, but Candidates has no rule for every namespace: %v", repo, m, cands)
			}
			p.Origin(repo)
		}
	})
}

func asErrors(err error, target *Errors) bool {
	es, ok := err.(Errors)
	*target = es
	return ok
}

func jsonOf(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// probeRepos returns names that the policy's patterns match or nearly
// match.
func probeRepos(p *Policy) []string {
	out := []string{"docker.io/library/nginx", "quay.io/a/b"}
	add := func(ps []Pattern) {
		for _, pat := range ps {
			n := strings.ReplaceAll(pat.Normalized(), "**", "x/y")
			out = append(out, strings.ReplaceAll(n, "*", "z"), n)
		}
	}
	for _, r := range p.Rules {
		add(r.Images)
	}
	for _, s := range p.Sources {
		add(s.Repositories)
	}
	for _, m := range p.Mirrors {
		out = append(out, m.From, m.From+"/a/b")
	}
	return out
}

// encodePolicy writes a parsed policy back as TOML, with go-toml, through
// the same raw types Parse decodes.
func encodePolicy(t *testing.T, p *Policy) []byte {
	str := func(s string) *string { return &s }
	strs := func(ss []string) *[]string {
		if ss == nil {
			return nil
		}
		return &ss
	}
	pats := func(ps []Pattern) *[]string {
		out := []string{}
		for _, pat := range ps {
			out = append(out, pat.String())
		}
		return &out
	}
	dstr := func(s string) *durationString { d := durationString(s); return &d }
	version := int64(p.Version)
	raw := rawPolicy{
		Version: &version,
		Mode:    str(string(p.Mode)),
		Daemon: &rawDaemon{
			CacheDir:            str(p.Daemon.CacheDir),
			Refresh:             dstr(p.Daemon.Refresh.String()),
			OfflineGrace:        dstr(p.Daemon.OfflineGrace.String()),
			NRISocket:           str(p.Daemon.NRISocket),
			ContainerdAddress:   str(p.Daemon.ContainerdAddress),
			ContainerdNamespace: str(p.Daemon.ContainerdNamespace),
			ControlSocket:       str(p.Daemon.ControlSocket),
			MetricsAddress:      str(p.Daemon.MetricsAddress),
		},
	}
	for _, s := range p.Sources {
		rs := rawSource{Name: str(s.Name), Kind: str(s.Kind), URL: str(s.URL), Repositories: pats(s.Repositories), TrustOnFirstUse: &s.TrustOnFirstUse}
		if s.Kind == KindSigstore {
			rs.TrustOnFirstUse = nil
			if s.URL == "" {
				rs.URL = nil
			}
			if s.TrustedRoot != "" {
				rs.TrustedRoot = str(s.TrustedRoot)
			}
		}
		if s.Root != "" {
			rs.Root = str(s.Root)
		}
		if s.OfflineGrace != nil {
			rs.OfflineGrace = dstr(s.OfflineGrace.String())
		}
		for _, pin := range s.Pins {
			rp := rawPin{Repositories: pats(pin.Repositories), RootKeys: strs(pin.RootKeys)}
			if pin.CA != "" {
				rp.CA = str(pin.CA)
			}
			rs.Pin = append(rs.Pin, rp)
		}
		raw.Source = append(raw.Source, rs)
	}
	for _, r := range p.Rules {
		rr := rawRule{Images: pats(r.Images), Namespaces: strs(r.Namespaces), Action: str(string(r.Action))}
		if r.Action == ActionVerify {
			req := rawRequirement(p, r)
			rr.Source, rr.Signers, rr.Threshold, rr.Keys, rr.Identities = req.Source, req.Signers, req.Threshold, req.Keys, req.Identities
			for _, a := range r.Also {
				rr.Also = append(rr.Also, rawRequirement(p, a))
			}
		}
		if r.Mode != "" {
			rr.Mode = str(string(r.Mode))
		}
		raw.Rule = append(raw.Rule, rr)
	}
	for _, m := range p.Mirrors {
		raw.Mirror = append(raw.Mirror, rawMirror{From: str(m.From), To: str(m.To)})
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(raw); err != nil {
		t.Fatalf("encode: %v", err)
	}
	return buf.Bytes()
}

// rawRequirement re-encodes what a verify rule (or one of its Also)
// requires.
func rawRequirement(p *Policy, r *Rule) rawAlso {
	str := func(s string) *string { return &s }
	var req rawAlso
	req.Source = str(r.Source)
	if len(r.Signers) > 0 {
		signers := slices.Clone(r.Signers)
		req.Signers = &signers
	}
	if p.Source(r.Source).Kind == KindSigstore {
		req.Signers = nil
		if len(r.Keys) > 0 {
			var keys []string
			for _, k := range r.Keys {
				keys = append(keys, k.Path)
			}
			req.Keys = &keys
		}
		if len(r.Identities) > 0 {
			ids := []rawIdentity{}
			for _, id := range r.Identities {
				ids = append(ids, rawIdentity{Issuer: nonEmpty(id.Issuer), IssuerRegexp: nonEmpty(id.IssuerRegexp), Subject: nonEmpty(id.Subject), SubjectRegexp: nonEmpty(id.SubjectRegexp)})
			}
			req.Identities = &ids
		}
	}
	th := int64(r.Threshold)
	req.Threshold = &th
	return req
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func FuzzMatch(f *testing.F) {
	seeds := [][3]string{
		{"nginx", "docker.io/library/nginx", "library/*"},
		{"library/*", "docker.io/library/nginx", "docker.io/**"},
		{"docker.io/**", "docker.io/a/b/c", "**"},
		{"a/**/b", "docker.io/a/x/y/b", "a/*/b"},
		{"**/nginx", "quay.io/nginx", "*/nginx"},
		{"*.corp.example/**", "registry.corp.example/a", "registry.corp.example/**"},
		{"docker.io/library/a*b*c", "docker.io/library/axbxc", "docker.io/library/a*"},
		{"localhost:5000/**", "localhost:5000/a/b", "localhost:5000/a/*"},
		{"127.0.0.1:5000/demo/hello", "127.0.0.1:5000/demo/hello", "127.0.0.1:5000/demo/*"},
		{"x.io/**/a/**/b", "x.io/a/a/b/b", "x.io/**"},
		{"[::1]:5000/app", "[::1]:5000/app", "**"},
		{"Registry/app", "Registry/app", "*/app"},
		{"REGISTRY.corp.example:443/**", "registry.corp.example/app", "*.CORP.example/**"},
		{"registry-1.docker.io/nginx", "Registry-1.Docker.IO/nginx", "docker.io:0443/library/*"},
		{"[0:0::1]:5000/app", "[::1]:05000/app", "LOCALHOST:5000/**"},
		{"nginx:1", "nginx@" + testDigest, "Nginx"},
		{"docker.io/**/b", "docker.io/a/c", "docker.io/a/c"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pattern, repo, other string) {
		// Reference parsing never panics.
		ParseRef(repo)
		if n, err := NormalizeRepo(repo); err == nil {
			// A normalised name is a literal pattern that matches exactly itself.
			lit, err := ParsePattern(n)
			if err != nil {
				t.Fatalf("normalised name %q is not a valid pattern: %v", n, err)
			}
			if !lit.IsLiteral() || lit.Normalized() != n || !lit.Match(n) {
				t.Fatalf("literal pattern %q: normalised %q, literal %v, matches itself %v", n, lit.Normalized(), lit.IsLiteral(), lit.Match(n))
			}
			if again, err := NormalizeRepo(n); err != nil || again != n {
				t.Fatalf("NormalizeRepo is not idempotent: %q -> %q -> %q, %v", repo, n, again, err)
			}
		}

		p, err := ParsePattern(pattern)
		if err != nil {
			return
		}
		got := p.Match(repo)
		if p.IsLiteral() {
			if !p.Match(p.Normalized()) {
				t.Fatalf("literal pattern %q does not match itself", p.Normalized())
			}
			if got != (repo == p.Normalized()) {
				t.Fatalf("literal pattern %q: Match(%q) = %v", p.Normalized(), repo, got)
			}
		}
		// Against the slow reference matcher.
		if len(p.Normalized()) <= 512 && len(repo) <= 512 {
			if want := refMatch(p.Normalized(), repo); got != want {
				t.Fatalf("pattern %q (%s), repo %q: Match = %v, reference = %v", pattern, p.Normalized(), repo, got, want)
			}
		}
		if got && !strings.HasPrefix(repo, p.prefix) {
			t.Fatalf("pattern %q matches %q outside its literal prefix %q", p.Normalized(), repo, p.prefix)
		}
		// covers is sound.
		q, err := ParsePattern(other)
		if err != nil {
			return
		}
		if p.covers(&q) && q.Match(repo) && !got {
			t.Fatalf("%q covers %q, which matches %q, but it does not match", p.Normalized(), q.Normalized(), repo)
		}
		if q.covers(&p) && got && !q.Match(repo) {
			t.Fatalf("%q covers %q, which matches %q, but it does not match", q.Normalized(), p.Normalized(), repo)
		}
	})
}
