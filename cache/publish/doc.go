// Package publish is the publishing side of trustd's TUF source: it makes
// and maintains a standard TUF repository (TUF specification 1.0, as
// go-tuf v2 reads it) whose targets are container image tags.
//
// Layout of a repository directory DIR:
//
//	DIR/repo.json        how it was made: key directory, key type, expiry per role
//	DIR/metadata/        the published tree, public metadata only: what any
//	                     static HTTP server or object store serves
//	DIR/pending/         role metadata waiting for signatures (not served)
//	DIR/keys/            private keys (default; 0700, files 0600), never
//	                     inside DIR/metadata
//
// Target names are exactly what trustd's TUF source reads:
// "<normalised repository>:<tag>" (policy.ParseRef's repository, registry
// host in canonical lower case, Docker Hub names in full), with the
// length and sha256 hash of the manifest or index bytes.
//
// Guarantees:
//
//   - Consistent snapshots: every version of root, snapshot, targets and
//     delegated roles is a new file (N.ROLE.json); only timestamp.json is
//     replaced. A new version is staged (every file written and fsynced
//     under a temporary name), renamed into place with timestamp.json last,
//     and the directory fsynced: a crash at any point leaves the previous
//     version served whole, or the new one.
//   - A command that fails before signing (a reference that does not
//     resolve, a key the role does not list, a target outside the role's
//     paths) changes nothing, on disk or in memory.
//   - A role whose threshold is not met by the keys at hand is kept in
//     DIR/pending with the signatures it has, and published by the command
//     that completes it. A delegation is published together with the
//     first signed version of the role it delegates to, so that clients
//     never meet a delegated role without metadata.
//   - A Repo holds DIR's lock while open; it is not safe for concurrent
//     use by several goroutines.
package publish
