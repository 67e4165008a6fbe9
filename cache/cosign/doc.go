// Package cosign verifies cosign signature artifacts offline: it is the
// only place in trustd that knows what a cosign signature is and checks
// one. It does no I/O: callers (cache.SigstoreSource, which fetches them
// from registries; plugin/archive, which reads them from `cosign save`
// layouts) hand it an Artifact as found, and it says which signer made it
// and which of the policy's keys and identities that signer satisfies.
//
// Two forms are read:
//
//   - simple signing, cosign's tag scheme (<repo>:sha256-<hex>.sig): a
//     payload naming the image digest and repository, its signature, and,
//     for keyless signing, the signing certificate with its chain and the
//     transparency log's signed entry timestamp (annotations of the layer);
//   - a Sigstore bundle (cosign v3's default, attached to the image through
//     OCI 1.1 referrers or the referrers tag scheme).
//
// Keyed signatures are checked against public keys and need no trust root.
// Keyless ones are checked with sigstore-go against a trusted root (Fulcio
// CAs, Rekor and CT log keys, timestamp authorities): the certificate
// chains to a Fulcio CA at the signing time that a log entry or a
// timestamp proves, and its identity matches one the policy names.
package cosign
