package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// ErrInvalidReference is matched (with errors.Is) by the errors of ParseRef
// and NormalizeRepo.
var ErrInvalidReference = errors.New("invalid image reference")

// Ref is a parsed, normalised image reference. Repo is the normalised
// repository name ("docker.io/library/nginx") with its registry host in
// trustd's canonical form (host.go: lower case, no ":443", Docker Hub's
// aliases as "docker.io"); Tag is "" only when the reference names a
// digest and no tag; Digest is "" when it names none.
type Ref struct {
	Repo   string
	Tag    string
	Digest digest.Digest
}

// ParseRef parses an image reference the way Docker does: "nginx" is
// {docker.io/library/nginx, latest, ""}, "nginx@sha256:…" has no tag, and
// "nginx:1@sha256:…" keeps both. Names must be lowercase; digests must be
// well formed. The error matches ErrInvalidReference.
//
// ParseRef accepts the language of distribution/reference's
// ParseNormalizedNamed, with the same normalisation and error messages
// (refgrammar.go; a differential fuzz test holds it to that), and then
// puts the registry host in canonical form, where reference keeps it as
// written: "REGISTRY.corp.example:443/app" is registry.corp.example/app,
// the name the network reaches. That is the one intended difference, and
// it refuses a name whose host is a host only by its upper case
// ("Registry/app": in lower case, a Docker Hub namespace). It is on the
// decision path: it does not allocate when s is already normalised (the
// fields are substrings of s), and allocates the repository name alone
// when Docker's defaults must be added ("nginx") or the host is not
// canonical.
func ParseRef(s string) (Ref, error) {
	if s == "" {
		return Ref{}, fmt.Errorf("%w %q: empty reference", ErrInvalidReference, s)
	}
	r, err := parseNormalized(s)
	if err == nil {
		r.Repo, err = canonicalRepo(r.Repo)
	}
	if err != nil {
		return Ref{}, fmt.Errorf("%w %q: %w", ErrInvalidReference, s, err)
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// String returns the normalised reference: repo[:tag][@digest].
func (r Ref) String() string {
	switch {
	case r.Digest == "":
		if r.Tag == "" {
			return r.Repo
		}
		return r.Repo + ":" + r.Tag
	case r.Tag == "":
		return r.Repo + "@" + string(r.Digest)
	}
	return r.Repo + ":" + r.Tag + "@" + string(r.Digest)
}

// IsString reports whether s is r.String(), without building it: a caller
// that holds the text a Ref was parsed from can keep that text, and not
// allocate, when it was already normalised.
func (r Ref) IsString(s string) bool {
	rest, ok := strings.CutPrefix(s, r.Repo)
	if !ok {
		return false
	}
	if r.Tag != "" {
		if rest, ok = strings.CutPrefix(rest, ":"); !ok {
			return false
		}
		if rest, ok = strings.CutPrefix(rest, r.Tag); !ok {
			return false
		}
	}
	if r.Digest != "" {
		if rest, ok = strings.CutPrefix(rest, "@"); !ok {
			return false
		}
		if rest, ok = strings.CutPrefix(rest, string(r.Digest)); !ok {
			return false
		}
	}
	return rest == ""
}

// NormalizeRepo normalises a repository name as Docker does ("nginx" is
// "docker.io/library/nginx", "index.docker.io/x/y" is "docker.io/x/y"),
// with the registry host in canonical form as ParseRef puts it. A tag or
// digest is an error, as is anything ParseRef would reject. The error
// matches ErrInvalidReference.
func NormalizeRepo(s string) (string, error) {
	n, err := normalizeRepo(s)
	if err != nil {
		return "", fmt.Errorf("%w %q: %w", ErrInvalidReference, s, err)
	}
	return n, nil
}

// normalizeRepo is NormalizeRepo with an error that only says what is wrong.
func normalizeRepo(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty repository name")
	}
	r, err := parseNormalized(s)
	if err != nil {
		return "", err
	}
	if r.Tag != "" || r.Digest != "" {
		return "", errors.New("a repository name must not contain a tag or digest")
	}
	return canonicalRepo(r.Repo)
}

// normalizePrefix normalises the `from` or `to` of a mirror: either a
// registry host alone ("mirror.example:5000") or a repository name.
func normalizePrefix(s string) (string, error) {
	if s == "" {
		return "", errors.New("must not be empty")
	}
	if !strings.Contains(s, "/") && (strings.ContainsAny(s, ".:") || strings.EqualFold(s, "localhost")) {
		if !isDomainAndPort(s) {
			return "", fmt.Errorf("invalid registry host %q", s)
		}
		return canonicalHost(s)
	}
	n, err := normalizeRepo(s)
	if err != nil {
		return "", fmt.Errorf("invalid repository name %q: %w", s, err)
	}
	return n, nil
}
