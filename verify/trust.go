// Package verify holds trustd's view of verified trust data and the pure
// decision function. Everything in this package is free of I/O: trust data
// arrives here already verified (by the TUF or Notary verifiers) and is held
// in immutable values that are safe for concurrent readers.
package verify

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// Target is what one role signed for one tag: the digest and length of the
// manifest (or index) bytes.
type Target struct {
	Digest digest.Digest `json:"digest"`
	Length int64         `json:"length"`
}

// RoleTargets maps a role name ("targets", "targets/releases", or a TUF
// delegated role) to the target it signed.
type RoleTargets map[string]Target

// Repo is the verified trust data of one repository from one source. A Repo
// is never modified after it is built.
type Repo struct {
	// Source is the policy name of the source the data came from.
	Source string `json:"source"`
	// Name is the normalised repository name (docker.io/library/nginx).
	Name string `json:"name"`
	// Tags maps a tag to the roles that signed it. Only roles whose
	// signatures verified and whose delegation covers the tag appear.
	// Order maps the same tag to its roles in resolution order (the order
	// in which the source's own client would consult them).
	Tags  map[string]RoleTargets `json:"tags"`
	Order map[string][]string    `json:"order,omitempty"`
	// Expires is the earliest expiry among the metadata this data rests
	// on that offline grace never extends: root (and its certificates),
	// targets and delegations.
	Expires time.Time `json:"expires"`
	// ExpiresRole names the role that expires first.
	ExpiresRole string `json:"expires_role"`
	// FreshUntil is the earliest expiry of the timestamp and snapshot: the
	// freshness guarantee, which `offline_grace` may extend while the
	// source is unreachable. Zero means the same as Expires.
	FreshUntil time.Time `json:"fresh_until,omitzero"`
	// FreshRole names the role that expires at FreshUntil.
	FreshRole string `json:"fresh_role,omitempty"`
	// Problems lists non-fatal findings made during verification (an
	// expired or under-threshold delegation that was ignored).
	Problems []string `json:"problems,omitempty"`
	// Denied maps a tag that must be refused to the reason (a TUF target
	// in the paths of a delegated role that failed to load or verify, or
	// whose role signed it without a sha256 hash). A tag is in Tags or in
	// Denied, never both.
	Denied map[string]string `json:"denied,omitempty"`
}
