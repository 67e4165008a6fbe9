// Package notary verifies Notary v1 (Docker Content Trust) trust data: the
// root, timestamp, snapshot, targets and delegation metadata that a Notary
// server serves under /v2/<gun>/_trust/tuf/.
//
// Everything here is pure: functions take the bytes of metadata files, the
// previously trusted state and a reference time, and return verified values
// or typed errors. Nothing reads files, the network or the clock, and nothing
// keeps global state, so every function is safe for concurrent use and every
// returned value is immutable.
//
// The semantics follow Notary's own client (notaryproject/notary: tuf/data,
// tuf/signed, trustpinning, client), which is what Docker uses:
//
//   - the signed bytes are the OLPC canonical JSON of the re-parsed "signed"
//     object; ECDSA signatures are raw r‖s over SHA-256, RSA-PSS uses SHA-256
//     with a 32-byte salt; a key ID is the SHA-256 of the canonical key object
//     (for *-x509 keys, of the certificate PEM);
//   - root keys are x509 certificates whose common name is the GUN, valid at
//     the reference time, checked against a trust pin (root key IDs, a CA, or
//     trust on first use); a new root must be signed by a threshold of the
//     previously trusted root's keys and of its own;
//   - timestamp → snapshot → targets → delegations are chained by length and
//     hashes; every role is checked for threshold, version (no rollback) and
//     expiry;
//   - delegations (targets/<name>, nested targets/a/b) are walked
//     breadth-first as Notary does; their paths are string prefixes
//     restricted to their parent's; an expired or under-threshold delegation
//     is ignored and reported, not fatal;
//   - a tag resolves as Docker resolves it: targets/releases first, then
//     targets (Repo.Order lists the roles in that order).
//
// Verification fails closed: any doubt is an error, never a partial trust
// decision. Errors wrap sentinels (ErrBadSignature, ErrThreshold, ErrExpired,
// ErrRollback, ErrHashMismatch, ErrLength, ErrNotPinned, ErrPinMismatch,
// ErrCertificate, ErrMalformed, ErrMissing) for errors.Is; expiry is also an
// *ExpiredError for errors.As.
package notary
