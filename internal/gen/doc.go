// Package gen generates large, really signed trust data for benchmarks
// and tests: Notary v1 repositories (root, targets with N tags, a
// targets/releases delegation, snapshot and timestamp, ECDSA keys,
// canonical JSON as Notary signs it), standard TUF repositories whose
// targets "<repository>:<tag>" sit in succinct hash bins (TAP 15), host
// policies with many rules, docker save archives, and HTTP servers for
// them that count what crosses the wire. The Cache* functions fill a
// trustd cache directory through the cache package's own sync code, so
// what they write is exactly what trustd itself would have written.
//
// Everything here is deterministic where it matters to a benchmark (names,
// manifests and their digests) and random where security requires it
// (keys, signatures). Nothing here is used by trustd itself.
package gen
