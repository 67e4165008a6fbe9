package policy

// A hand-written parser for image references, in place of
// distribution/reference's regular expressions on the decision path (issue
// 7: they took ~2 µs per decision and allocated). It accepts exactly the
// language of reference.ParseNormalizedNamed and gives its results and its
// error messages, trimmed of "invalid reference format: " as before;
// FuzzParseRefOracle compares the two. The grammar, from reference's
// regexp.go:
//
//	reference  := name [ ":" tag ] [ "@" digest ]
//	name       := [ domain "/" ] path
//	domain     := host [ ":" [0-9]+ ]
//	host       := label ( "." label )* | "[" [a-fA-F0-9:]+ "]"
//	label      := [a-zA-Z0-9] | [a-zA-Z0-9] [a-zA-Z0-9-]* [a-zA-Z0-9]
//	path       := component ( "/" component )*     at most 255 bytes
//	component  := [a-z0-9]+ ( separator [a-z0-9]+ )*
//	separator  := "." | "_" | "__" | "-"+
//	tag        := [\w] [\w.-]{0,127}
//	digest     := algorithm ":" [0-9a-fA-F]{32,}   then go-digest's checks
//	algorithm  := [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*
//
// Docker's normalisation (splitDockerDomain) decides which first segment
// is a domain before the grammar is applied. ParseRef and NormalizeRepo
// then put the registry host in trustd's canonical form (host.go), which
// reference does not do: that is the one intended difference, held by
// checkCanonical in the oracle test.

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
)

const (
	defaultDomain      = "docker.io"
	legacyDomain       = "index.docker.io"
	officialRepoPrefix = "library/"
	maxRepoPath        = 255 // reference.RepositoryNameTotalLengthMax
	maxTag             = 128
	minDigestHex       = 32
)

// The messages of reference's errors, as ParseRef has always shown them.
var (
	errRefFormat  = errors.New("not a valid repository name") // reference.ErrReferenceInvalidFormat
	errRefUpper   = errors.New("repository name must be lowercase")
	errRefTooLong = fmt.Errorf("repository name must not be more than %d characters", maxRepoPath)
)

// parseNormalized is reference.ParseNormalizedNamed: s parsed and
// normalised, without a default tag. The fields of the result are
// substrings of s, except a Repo to which Docker's defaults were added.
func parseNormalized(s string) (Ref, error) {
	if isIdentifier(s) {
		return Ref{}, fmt.Errorf("invalid repository name (%s), cannot specify 64-byte hexadecimal strings", s)
	}
	domain, rest, library, inPlace := splitDockerDomain(s)
	remote := rest
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		remote = rest[:i]
	}
	if hasUpper(remote) {
		if library {
			remote = officialRepoPrefix + remote
		}
		return Ref{}, fmt.Errorf("repository name (%s) must be lowercase", remote)
	}
	m, ok := matchRef(domain, rest)
	if !ok {
		// reference.Parse: would the reference be valid in lowercase?
		full := domain + "/" + rest
		if library {
			full = domain + "/" + officialRepoPrefix + rest
		}
		if d, r, _ := strings.Cut(strings.ToLower(full), "/"); isValidRef(d, r) {
			return Ref{}, errRefUpper
		}
		return Ref{}, errRefFormat
	}
	// reference.Parse limits the path: the name less a domain, if any.
	n := len(m.path)
	if library {
		n += len(officialRepoPrefix)
	}
	if !m.domain {
		n += len(domain) + 1
	}
	if n > maxRepoPath {
		return Ref{}, errRefTooLong
	}
	if m.digest != "" && !isSHA256(m.digest) {
		if err := digest.Digest(m.digest).Validate(); err != nil {
			return Ref{}, err
		}
	}
	r := Ref{Tag: m.tag, Digest: digest.Digest(m.digest)}
	switch {
	case inPlace:
		r.Repo = s[:len(domain)+1+len(m.path)]
	case library:
		r.Repo = domain + "/" + officialRepoPrefix + m.path
	default:
		r.Repo = domain + "/" + m.path
	}
	return r, nil
}

// splitDockerDomain is reference's splitDockerDomain: the domain and the
// rest of s (path, tag and digest). library says that "library/" goes
// before rest; inPlace that s is domain + "/" + rest.
func splitDockerDomain(s string) (domain, rest string, library, inPlace bool) {
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return defaultDomain, s, true, false
	}
	d, r := s[:i], s[i+1:]
	switch {
	case d == legacyDomain:
		domain, rest = defaultDomain, r
	case d == "localhost", strings.ContainsAny(d, ".:"), hasUpper(d):
		domain, rest, inPlace = d, r, true
	default:
		domain, rest = defaultDomain, s
	}
	if domain == defaultDomain && strings.IndexByte(rest, '/') < 0 {
		library, inPlace = true, false
	}
	return domain, rest, library, inPlace
}

// refParts is a reference split by the grammar. domain says that the first
// segment is a domain, not a path component.
type refParts struct {
	domain            bool
	path, tag, digest string
}

// matchRef matches domain + "/" + rest against the grammar.
func matchRef(domain, rest string) (refParts, bool) {
	var m refParts
	switch {
	case isDomainAndPort(domain):
		m.domain = true
	case isPathComponent(domain):
	default:
		return m, false
	}
	end := 0
	for end < len(rest) && rest[end] != ':' && rest[end] != '@' {
		end++
	}
	m.path, rest = rest[:end], rest[end:]
	if !isPath(m.path) {
		return m, false
	}
	if tag, ok := strings.CutPrefix(rest, ":"); ok {
		end := strings.IndexByte(tag, '@')
		if end < 0 {
			end = len(tag)
		}
		m.tag, rest = tag[:end], tag[end:]
		if !isTag(m.tag) {
			return m, false
		}
	}
	if rest != "" {
		m.digest = rest[1:] // rest[0] == '@'
		if !isRefDigest(m.digest) {
			return m, false
		}
	}
	return m, true
}

func isValidRef(domain, rest string) bool {
	_, ok := matchRef(domain, rest)
	return ok
}

// isDomainAndPort reports whether s is a registry host with an optional
// port (reference.DomainRegexp, anchored).
func isDomainAndPort(s string) bool {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		host, port = s[:end+1], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
			if port == "" {
				return false
			}
		}
		if !isIPv6Literal(host) {
			return false
		}
	} else {
		if i := strings.IndexByte(s, ':'); i >= 0 {
			host, port = s[:i], s[i+1:]
			if port == "" {
				return false
			}
		}
		if !isDomainName(host) {
			return false
		}
	}
	for i := 0; i < len(port); i++ {
		if !isDigit(port[i]) {
			return false
		}
	}
	return true
}

// isIPv6Literal: "[" [a-fA-F0-9:]+ "]".
func isIPv6Literal(s string) bool {
	if len(s) < 3 || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isHex(c) && c != ':' {
			return false
		}
	}
	return true
}

// isDomainName: labels of letters, digits and inner '-', joined by '.'.
func isDomainName(s string) bool {
	for {
		end := strings.IndexByte(s, '.')
		label := s
		if end >= 0 {
			label = s[:end]
		}
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return false
			}
		}
		if end < 0 {
			return true
		}
		s = s[end+1:]
	}
}

// isPath: path components joined by '/'.
func isPath(s string) bool {
	for {
		end := strings.IndexByte(s, '/')
		if end < 0 {
			return isPathComponent(s)
		}
		if !isPathComponent(s[:end]) {
			return false
		}
		s = s[end+1:]
	}
}

// isPathComponent: runs of [a-z0-9] joined by ".", "_", "__" or "-"+.
func isPathComponent(s string) bool {
	i := 0
	for {
		start := i
		for i < len(s) && (isDigit(s[i]) || 'a' <= s[i] && s[i] <= 'z') {
			i++
		}
		if i == start {
			return false
		}
		if i == len(s) {
			return true
		}
		switch s[i] {
		case '.':
			i++
		case '_':
			i++
			if i < len(s) && s[i] == '_' {
				i++
			}
		case '-':
			for i < len(s) && s[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

// isTag: [\w][\w.-]{0,127}.
func isTag(s string) bool {
	if s == "" || len(s) > maxTag || !isWord(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isWord(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// isRefDigest: the digest grammar of reference (go-digest checks the
// algorithm and the length of the hex after it).
func isRefDigest(s string) bool {
	i := 0
	for {
		if i == len(s) || !isLetter(s[i]) {
			return false
		}
		for i++; i < len(s) && isAlnum(s[i]); i++ {
		}
		if i < len(s) && strings.IndexByte("-_+.", s[i]) >= 0 {
			i++
			continue
		}
		break
	}
	if i == len(s) || s[i] != ':' {
		return false
	}
	hex := s[i+1:]
	if len(hex) < minDigestHex {
		return false
	}
	for j := 0; j < len(hex); j++ {
		if !isHex(hex[j]) {
			return false
		}
	}
	return true
}

// isSHA256 reports whether s is a valid sha256 digest by go-digest's
// rules, without its regular expression.
func isSHA256(s string) bool {
	hex, ok := strings.CutPrefix(s, "sha256:")
	return ok && isLowerHex(hex, 64) && digest.SHA256.Available()
}

// isIdentifier: 64 lowercase hex digits, which Docker refuses as a name.
func isIdentifier(s string) bool { return isLowerHex(s, 64) }

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isDigit(c) && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// hasUpper reports whether strings.ToLower(s) != s, as reference checks.
func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return strings.ToLower(s) != s
		}
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isAlnum(c byte) bool  { return isDigit(c) || isLetter(c) }
func isWord(c byte) bool   { return isAlnum(c) || c == '_' }
func isHex(c byte) bool    { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
