package policy

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"
)

// Check returns lint warnings about a valid policy, in file order: rules
// that can never decide anything (shadowed), sources that no rule uses, the
// absence of a catch-all rule, verify rules whose images lie outside their
// source's repositories, pins outside their source's repositories, and a
// global mode other than "enforce", and registries that one rule governs
// under one spelling and another under another. Shadowing and coverage are judged
// soundly but not completely: a warning is always right, but some exotic
// cases go unreported. Check does not modify the policy.
func (p *Policy) Check() []Warning {
	var ws []Warning
	warn := func(pos Position, format string, args ...any) {
		ws = append(ws, Warning{Pos: pos, Message: fmt.Sprintf(format, args...)})
	}

	switch p.Mode {
	case ModeAudit:
		warn(p.modePos, "mode is %q: denied images are logged but still run", p.Mode)
	case ModeOff:
		warn(p.modePos, "mode is %q: images are not checked", p.Mode)
	}

	used := map[string]bool{}
	catchAll := false
	for _, r := range p.Rules {
		for _, a := range r.Requirements() {
			used[a.Source] = true
		}
		if r.anyNS && slices.ContainsFunc(r.Images, func(im Pattern) bool { return im.all }) {
			catchAll = true
		}
	}
	for _, s := range p.Sources {
		if !used[s.Name] {
			warn(s.Pos, "source %q is not used by any rule", s.Name)
		}
		for _, pin := range s.Pins {
			for i := range pin.Repositories {
				q := &pin.Repositories[i]
				if !coveredBy(q, s.Repositories) {
					warn(q.pos, "pin repository pattern %q is not within the repositories of source %q", q.src, s.Name)
				}
			}
		}
	}
	if !catchAll {
		warn(Position{File: p.File, Line: 1, Col: 1}, "no catch-all rule: images matching no rule are denied")
	}

	for _, r := range p.Rules {
		if by := p.shadowedBy(r); len(by) > 0 {
			names := make([]string, len(by))
			for i, a := range by {
				names[i] = a.String()
			}
			verb := "decides"
			if len(by) > 1 {
				verb = "decide"
			}
			warn(r.Pos, "%s can never apply: %s %s every image and namespace it matches", r, strings.Join(names, ", "), verb)
		}
		if r.Action != ActionVerify {
			continue
		}
		for _, a := range r.Requirements() {
			src := p.Source(a.Source)
			if src == nil {
				continue
			}
			for i := range r.Images {
				q := &r.Images[i]
				if !coveredBy(q, src.Repositories) {
					warn(q.pos, "image pattern %q is not within the repositories of source %q: images it matches there cannot be verified and are denied", q.src, src.Name)
				}
			}
		}
	}

	for _, r := range p.Rules {
		for i := range r.Images {
			q := &r.Images[i]
			for _, w := range p.spellings(q) {
				warn(q.pos, "%s", w)
			}
		}
	}

	slices.SortStableFunc(ws, func(a, b Warning) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
	return ws
}

func coveredBy(q *Pattern, ps []Pattern) bool {
	for i := range ps {
		if ps[i].covers(q) {
			return true
		}
	}
	return false
}

// shadowedBy returns rules that together take precedence over b for every
// repository and namespace b matches, or nil if it cannot show that b is
// shadowed. For each of b's patterns q it looks for a rule a that applies to
// every namespace b applies to, with a pattern covering q that beats every
// pattern of b that may match the same names as q (or ties with the best
// of them and comes first).
func (p *Policy) shadowedBy(b *Rule) []*Rule {
	if len(b.Images) == 0 {
		return nil
	}
	var by []*Rule
	for i := range b.Images {
		q := &b.Images[i]
		// b's specificity on names q matches is at most bound: patterns
		// whose literal prefixes are not prefix-related match no common name.
		bound := q.score()
		for j := range b.Images {
			o := &b.Images[j]
			if strings.HasPrefix(q.prefix, o.prefix) || strings.HasPrefix(o.prefix, q.prefix) {
				bound = max(bound, o.score())
			}
		}
		var found *Rule
	rules:
		for _, a := range p.Rules {
			if a == b || !nsCovers(a, b) {
				continue
			}
			for j := range a.Images {
				pa := &a.Images[j]
				s := pa.score()
				if (s > bound || (s == bound && a.Index < b.Index)) && pa.covers(q) {
					found = a
					break rules
				}
			}
		}
		if found == nil {
			return nil
		}
		if !slices.Contains(by, found) {
			by = append(by, found)
		}
	}
	slices.SortFunc(by, func(x, y *Rule) int { return cmp.Compare(x.Index, y.Index) })
	return by
}

// nsCovers reports whether a applies to every namespace b applies to.
func nsCovers(a, b *Rule) bool {
	if a.anyNS {
		return true
	}
	if b.anyNS {
		return false
	}
	for _, nb := range b.Namespaces {
		ok := false
		for _, na := range a.Namespaces {
			if na == nb {
				ok = true
				break
			}
			if !strings.ContainsAny(nb, "*?[") {
				if m, _ := path.Match(na, nb); m {
					ok = true
					break
				}
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// loopbackHosts are the spellings of the host itself: containerd reaches
// the same registry (with the same scheme rules) under each, and only a
// resolver could tell they differ, so they are not one canonical name.
var loopbackHosts = []string{"localhost", "127.0.0.1", "[::1]"}

// spellings returns a message for each other spelling of q's registry host
// under which a name q matches is governed differently: a rule names
// "localhost:5000/**" but "127.0.0.1:5000/…", the same registry, falls to
// another rule. The name compared is one that q matches (each wildcard
// taken as "x"), after mirror rewriting, under every namespace
// (Candidates): a warning is shown by that name.
func (p *Policy) spellings(q *Pattern) []string {
	if len(q.segs) == 0 || q.segs[0].kind != segLiteral {
		return nil
	}
	host, port := splitHostPort(q.segs[0].text)
	if !slices.Contains(loopbackHosts, host) {
		return nil
	}
	name := sampleName(q)
	rest := name[len(q.segs[0].text):]
	here := p.Candidates(p.Origin(name))
	var out []string
	for _, h := range loopbackHosts {
		if h == host {
			continue
		}
		alias := h
		if port != "" {
			alias += ":" + port
		}
		there := p.Candidates(p.Origin(alias + rest))
		if slices.EqualFunc(here, there, sameEffect) {
			continue
		}
		out = append(out, fmt.Sprintf("registry %s is also reachable as %s, where %s decides %s, not %s: write the rule for both spellings, or map one onto the other with a [[mirror]]",
			q.segs[0].text, alias, describeRules(there), alias+rest, describeRules(here)))
	}
	return out
}

// sampleName returns a name that q matches: its segments, with each run of
// '*' taken as "x" and each "**" as the segment "x".
func sampleName(q *Pattern) string {
	parts := make([]string, len(q.segs))
	for i, s := range q.segs {
		switch s.kind {
		case segLiteral:
			parts[i] = s.text
		case segGlob:
			parts[i] = strings.Join(s.parts, "x")
		default:
			parts[i] = "x"
		}
	}
	return strings.Join(parts, "/")
}

// sameEffect reports whether two rules judge an image alike.
func sameEffect(a, b *Rule) bool {
	return a.Action == b.Action && a.Source == b.Source && a.Threshold == b.Threshold && a.Mode == b.Mode &&
		slices.Equal(a.Signers, b.Signers) && slices.Equal(a.Namespaces, b.Namespaces)
}

// describeRules names the rules that may decide a name, most specific
// first, or says that none does.
func describeRules(rs []*Rule) string {
	if len(rs) == 0 {
		return "no rule"
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.String()
	}
	return strings.Join(names, ", then ")
}
