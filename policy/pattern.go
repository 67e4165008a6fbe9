package policy

import (
	"errors"
	"strings"
)

// Pattern is a compiled repository pattern, as written in `images`,
// `repositories` and pin `repositories`.
//
// A pattern is a Docker repository name in which a path segment may contain
// `*` (any run of characters within that one segment, never '/') or be `**`
// (zero or more whole segments). It is normalised the way Docker normalises
// names: when its first segment has no '.' or ':', is not "localhost", is
// lowercase and has no wildcard, "docker.io/" is prepended, and a docker.io
// name with a single remaining segment gets "library/"; so "nginx" is
// "docker.io/library/nginx", "library/*" is "docker.io/library/*" and
// "docker.io/*" is "docker.io/library/*". A pattern whose first segment
// contains a wildcard ("*/app", "**/app", "*.corp.example/**") is matched
// against the whole normalised name, registry host included. The registry
// host is in the canonical form of names (host.go): "REGISTRY.x.example:443/**"
// is "registry.x.example/**", a host glob is lowercased. `**` alone
// matches every repository. A pattern never contains a tag or a digest.
//
// A Pattern is immutable and safe for concurrent use; Match does not
// allocate. The zero Pattern matches nothing.
type Pattern struct {
	src    string
	norm   string
	all    bool      // "**": matches everything
	segs   []segment // normalised, consecutive "**" collapsed
	prefix string    // literal prefix every match starts with
	lit    int       // wildcard-free segments
	fixed  int       // characters other than '*' in the segments holding a '*'
	wild   int       // wildcards: one per "**" segment and per run of '*'
	pos    Position  // where the pattern was written, when parsed from a file
}

type segKind uint8

const (
	segLiteral segKind = iota
	segGlob            // contains '*' but is not "**"
	segAny             // "**"
)

type segment struct {
	kind  segKind
	text  string
	parts []string // segGlob: text split around runs of '*' (len >= 2)
}

// ParsePattern compiles a repository pattern (see Pattern). The error, if
// any, says why the pattern is invalid; it does not carry a position.
func ParsePattern(s string) (Pattern, error) {
	norm, err := normalizePattern(s)
	if err != nil {
		return Pattern{}, err
	}
	p := Pattern{src: s, norm: norm}
	if norm == "**" {
		p.all = true
		p.wild = 1
		return p, nil
	}
	for _, t := range strings.Split(norm, "/") {
		switch {
		case t == "**":
			if n := len(p.segs); n > 0 && p.segs[n-1].kind == segAny {
				continue // "**/**" is "**"
			}
			p.segs = append(p.segs, segment{kind: segAny, text: t})
			p.wild++
		case strings.Contains(t, "*"):
			parts := splitStars(t)
			p.segs = append(p.segs, segment{kind: segGlob, text: t, parts: parts})
			p.wild += len(parts) - 1
			p.fixed += len(t) - strings.Count(t, "*")
		default:
			p.segs = append(p.segs, segment{kind: segLiteral, text: t})
			p.lit++
		}
	}
	// The literal prefix: everything before the segment holding the first
	// wildcard (a "**" may match zero segments, so its '/' is not included).
	if i := strings.IndexByte(norm, '*'); i < 0 {
		p.prefix = norm
	} else if j := strings.LastIndexByte(norm[:i], '/'); j >= 0 {
		p.prefix = norm[:j]
	}
	return p, nil
}

// splitStars splits a glob segment around each run of '*': "a*b**c" gives
// ["a", "b", "c"], "*" gives ["", ""].
func splitStars(t string) []string {
	var parts []string
	for {
		i := strings.IndexByte(t, '*')
		if i < 0 {
			return append(parts, t)
		}
		parts = append(parts, t[:i])
		t = strings.TrimLeft(t[i:], "*")
	}
}

// normalizePattern validates a pattern and returns its normalised text.
func normalizePattern(s string) (string, error) {
	switch {
	case s == "":
		return "", errors.New("empty pattern")
	case s == "**":
		return s, nil
	case s == "*":
		return "", errors.New(`"*" is ambiguous: write "**" for every repository or "docker.io/library/*" for Docker official images`)
	case strings.ContainsRune(s, '@'):
		return "", errors.New("a pattern must not contain a digest")
	case strings.TrimSpace(s) != s:
		return "", errors.New("leading or trailing white space")
	}
	segs := strings.Split(s, "/")
	for i, t := range segs {
		if t == "" {
			return "", errors.New("empty path segment")
		}
		if strings.Contains(t, "**") && t != "**" {
			return "", errors.New(`"**" must be a whole path segment`)
		}
		if strings.ContainsRune(t, ':') && (i > 0 || len(segs) == 1) {
			return "", errors.New("a pattern must not contain a tag")
		}
	}
	// Normalise like parseNormalized (splitDockerDomain), but
	// never treat a wildcard first segment as a Docker Hub namespace.
	var domain string
	var rest []string
	first := segs[0]
	switch {
	case len(segs) == 1:
		domain, rest = "docker.io", []string{"library", first}
	case strings.ContainsRune(first, '*'),
		strings.EqualFold(first, "localhost"),
		strings.ContainsAny(first, ".:"),
		strings.ToLower(first) != first:
		domain, rest = first, segs[1:]
	default:
		domain, rest = "docker.io", segs
	}
	// Hosts compare in canonical form (host.go), as names do.
	candidate := func(t string) string {
		if t == "**" {
			return "0/0"
		}
		return strings.ReplaceAll(t, "*", "0")
	}
	switch {
	case domain == "**":
	case strings.ContainsRune(domain, '*'):
		if !isDomainAndPort(candidate(domain)) {
			return "", errors.New("invalid registry host")
		}
		domain = canonicalGlobHost(domain)
	case isDomainAndPort(domain):
		var err error
		if domain, err = canonicalHost(domain); err != nil {
			return "", err
		}
	}
	if domain == "docker.io" && len(rest) == 1 && rest[0] != "**" {
		rest = append([]string{"library"}, rest...)
	}
	norm := domain + "/" + strings.Join(rest, "/")
	if p := strings.Join(rest, "/"); strings.ToLower(p) != p {
		return "", errors.New("repository names must be lowercase")
	}

	// Validate with Docker's grammar: every '*' stands for "0", every "**"
	// for two segments.
	cand := make([]string, len(rest))
	for i, t := range rest {
		cand[i] = candidate(t)
	}
	path := strings.Join(cand, "/")
	if strings.ContainsRune(domain, '*') {
		domain = "wildcard.invalid"
	}
	name := domain + "/" + path
	// Docker's grammar, and the name must be canonical (reference.ParseNamed).
	r, err := parseNormalized(name)
	if err != nil {
		return "", err
	}
	if !r.IsString(name) {
		return "", errRefFormat
	}
	if r.Tag != "" || r.Digest != "" {
		return "", errors.New("a pattern must not contain a tag or digest")
	}
	return norm, nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.src }

// Normalized returns the normalised pattern, e.g. "docker.io/library/*" for
// "library/*".
func (p Pattern) Normalized() string { return p.norm }

// MarshalText returns the pattern as written.
func (p Pattern) MarshalText() ([]byte, error) { return []byte(p.src), nil }

// IsLiteral reports whether the pattern has no wildcard: it then matches
// exactly one repository, its normalised text.
func (p Pattern) IsLiteral() bool { return p.norm != "" && p.wild == 0 }

// Match reports whether the normalised repository name repo matches the
// pattern. It does not allocate.
func (p Pattern) Match(repo string) bool { return p.match(repo) }

func (p *Pattern) match(repo string) bool {
	if p.all {
		return true
	}
	if len(p.segs) == 0 || !strings.HasPrefix(repo, p.prefix) {
		return false
	}
	if p.wild == 0 {
		return repo == p.norm
	}
	// Greedy matching with backtracking to the last "**", over segments.
	// ni is the offset of the current segment of repo; ni > len(repo) once
	// every segment is consumed.
	segs := p.segs
	pi, ni := 0, 0
	starPi, starNi := -1, 0
	for {
		if ni > len(repo) {
			for pi < len(segs) && segs[pi].kind == segAny {
				pi++
			}
			return pi == len(segs)
		}
		if pi < len(segs) {
			s := &segs[pi]
			if s.kind == segAny {
				starPi, starNi = pi, ni
				pi++
				continue
			}
			end := segEnd(repo, ni)
			if s.matchSeg(repo[ni:end]) {
				pi++
				ni = end + 1
				continue
			}
		}
		if starPi < 0 {
			return false
		}
		starNi = segEnd(repo, starNi) + 1
		ni = starNi
		pi = starPi + 1
	}
}

// segEnd returns the offset of the '/' ending the segment starting at i, or
// len(s).
func segEnd(s string, i int) int {
	if j := strings.IndexByte(s[i:], '/'); j >= 0 {
		return i + j
	}
	return len(s)
}

func (s *segment) matchSeg(t string) bool {
	if s.kind == segLiteral {
		return s.text == t
	}
	return globMatch(s.parts, t)
}

// globMatch matches t against a glob split around its stars (len(parts) >=
// 2): parts[0] must be a prefix, the last part a suffix, and the middle
// parts must appear in order in between.
func globMatch(parts []string, t string) bool {
	first, last := parts[0], parts[len(parts)-1]
	if len(t) < len(first)+len(last) || !strings.HasPrefix(t, first) || !strings.HasSuffix(t, last) {
		return false
	}
	t = t[len(first) : len(t)-len(last)]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(t, mid)
		if i < 0 {
			return false
		}
		t = t[i+len(mid):]
	}
	return true
}

// score orders patterns by specificity: more literal segments first, then
// more fixed characters in the segments that hold a '*' (so
// "*.corp.example/**" outranks "**", and "team-*" outranks "*"), then
// fewer wildcards. Higher is more specific. Each count is clamped to 1023,
// which no valid name reaches for lit and wild, so that the three fields
// fit in 31 bits and compare in that order.
func (p *Pattern) score() int {
	const m = 1<<10 - 1
	return min(p.lit, m)<<20 + min(p.fixed, m)<<10 - min(p.wild, m)
}

// covers reports whether every repository that q matches is also matched by
// p. It is sound (never true when some name matches q but not p) but not
// complete: it may say false for exotic pairs that do cover.
func (p *Pattern) covers(q *Pattern) bool {
	if p.all {
		return true
	}
	if q.all || len(p.segs) == 0 || len(q.segs) == 0 {
		return false
	}
	ps, qs := p.segs, q.segs
	// dp[i][j]: ps[i:] covers qs[j:].
	dp := make([][]bool, len(ps)+1)
	for i := range dp {
		dp[i] = make([]bool, len(qs)+1)
	}
	dp[len(ps)][len(qs)] = true
	for i := len(ps) - 1; i >= 0; i-- {
		for j := len(qs); j >= 0; j-- {
			if ps[i].kind == segAny {
				dp[i][j] = dp[i+1][j] || (j < len(qs) && dp[i][j+1])
				continue
			}
			dp[i][j] = j < len(qs) && qs[j].kind != segAny &&
				segCovers(&ps[i], &qs[j]) && dp[i+1][j+1]
		}
	}
	return dp[0][0]
}

// segCovers reports whether every segment text matched by q is matched by p
// (neither is "**"). A glob p that matches q's text, with q's stars taken as
// ordinary characters, covers q: each of q's stars then falls inside one of
// p's.
func segCovers(p, q *segment) bool {
	if p.kind == segLiteral {
		return q.kind == segLiteral && p.text == q.text
	}
	return globMatch(p.parts, q.text)
}
