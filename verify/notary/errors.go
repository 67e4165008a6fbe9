package notary

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Every error returned by this package wraps at least one of
// them; messages also name the GUN, the role and the key IDs involved.
var (
	// ErrMalformed: a file is not Notary metadata of the expected role
	// (syntax, unknown or missing fields, wrong _type, absurd sizes).
	ErrMalformed = errors.New("malformed metadata")
	// ErrBadSignature: a signature by an authorised key did not verify. It
	// always comes together with ErrThreshold.
	ErrBadSignature = errors.New("bad signature")
	// ErrThreshold: fewer valid signatures by distinct authorised keys than
	// the role's threshold.
	ErrThreshold = errors.New("signature threshold not met")
	// ErrExpired: metadata (or the root certificate) expired at the reference
	// time. The error is also an *ExpiredError.
	ErrExpired = errors.New("expired")
	// ErrRollback: a version lower than the trusted one, or the trusted
	// version with different signed content.
	ErrRollback = errors.New("rollback")
	// ErrHashMismatch: a file's hash differs from the one its parent signed.
	ErrHashMismatch = errors.New("hash mismatch")
	// ErrLength: a file's length differs from the one its parent signed.
	ErrLength = errors.New("length mismatch")
	// ErrNotPinned: no trust pin applies to the GUN, trust on first use is
	// off and there is no previously trusted root.
	ErrNotPinned = errors.New("root not pinned")
	// ErrPinMismatch: a trust pin applies but no root certificate satisfies
	// it.
	ErrPinMismatch = errors.New("root does not match trust pin")
	// ErrCertificate: no root certificate is acceptable (common name,
	// validity, signature algorithm, key size, encoding), or the pinned CA
	// bundle is unusable.
	ErrCertificate = errors.New("invalid root certificate")
	// ErrMissing: a file the verification needs was not supplied (a
	// delegation that the snapshot lists and a verified parent delegates).
	ErrMissing = errors.New("metadata missing")
)

// ExpiredError reports metadata that expired before the reference time. It
// matches ErrExpired with errors.Is.
type ExpiredError struct {
	GUN     string
	Role    string    // "root", "timestamp", "snapshot", "targets", "targets/<name>"
	Expires time.Time // when it expired
	Now     time.Time // the reference time of the verification
	// Certificate is set when it is the root certificate (this key ID) that
	// expired rather than the metadata.
	Certificate string
}

// Error names the GUN, the role, when it expired and the reference time.
func (e *ExpiredError) Error() string {
	what := e.Role
	if e.Certificate != "" {
		what = fmt.Sprintf("%s certificate %s", e.Role, e.Certificate)
	}
	return fmt.Sprintf("notary %s: %s: %s: %s expired at %s (reference time %s)",
		e.GUN, e.Role, ErrExpired, what, e.Expires.UTC().Format(time.RFC3339), e.Now.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrExpired) true.
func (e *ExpiredError) Is(target error) bool { return target == ErrExpired }

// fail builds "notary <gun>: <role>: <sentinel>: <detail>".
func fail(gun, role string, sentinel error, format string, args ...any) error {
	return fmt.Errorf("notary %s: %s: %w: %s", gun, role, sentinel, fmt.Sprintf(format, args...))
}

// malformed wraps a parse error with ErrMalformed and context.
func malformed(gun, role string, err error) error {
	return fmt.Errorf("notary %s: %s: %w: %v", gun, role, ErrMalformed, err)
}
