package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// ErrInvalidReference is matched (with errors.Is) by the errors of ParseRef
// and NormalizeRepo.
var ErrInvalidReference = errors.New("invalid image reference")

// Ref is a parsed, normalised image reference. Repo is the normalised
// repository name ("docker.io/library/nginx"); Tag is "" only when the
// reference names a digest and no tag; Digest is "" when it names none.
type Ref struct {
	Repo   string
	Tag    string
	Digest digest.Digest
}

// ParseRef parses an image reference the way Docker does: "nginx" is
// {docker.io/library/nginx, latest, ""}, "nginx@sha256:…" has no tag, and
// "nginx:1@sha256:…" keeps both. Names must be lowercase; digests must be
// well formed. The error matches ErrInvalidReference.
func ParseRef(s string) (Ref, error) {
	if s == "" {
		return Ref{}, fmt.Errorf("%w %q: empty reference", ErrInvalidReference, s)
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Ref{}, fmt.Errorf("%w %q: %w", ErrInvalidReference, s, trimRefErr(err))
	}
	r := Ref{Repo: named.Name()}
	if t, ok := named.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		r.Digest = d.Digest()
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// String returns the normalised reference: repo[:tag][@digest].
func (r Ref) String() string {
	s := r.Repo
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + string(r.Digest)
	}
	return s
}

// NormalizeRepo normalises a repository name as Docker does ("nginx" is
// "docker.io/library/nginx", "index.docker.io/x/y" is "docker.io/x/y"). A
// tag or digest is an error, as is anything Docker would reject. The error
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
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return "", trimRefErr(err)
	}
	if !reference.IsNameOnly(named) {
		return "", errors.New("a repository name must not contain a tag or digest")
	}
	return named.Name(), nil
}

// normalizePrefix normalises the `from` or `to` of a mirror: either a
// registry host alone ("mirror.example:5000") or a repository name.
func normalizePrefix(s string) (string, error) {
	if s == "" {
		return "", errors.New("must not be empty")
	}
	if !strings.Contains(s, "/") && (strings.ContainsAny(s, ".:") || s == "localhost") {
		if !anchoredDomain.MatchString(s) {
			return "", fmt.Errorf("invalid registry host %q", s)
		}
		if s == "index.docker.io" {
			return "docker.io", nil
		}
		return s, nil
	}
	n, err := normalizeRepo(s)
	if err != nil {
		return "", fmt.Errorf("invalid repository name %q: %w", s, err)
	}
	return n, nil
}
