// Package archive reads an image archive — a `docker save` tar (the legacy
// manifest.json form, or the OCI form Docker 25+ writes next to it) or an
// OCI image layout tar — in one streaming pass, and reports every image it
// would load: the names it would be loaded as, its manifest (or index) and
// config digests, and every integrity problem found.
//
// It is a pure reader: it makes no trust or policy decision. A caller
// decides each image by its names and digests, and must refuse any image
// whose Problems are not empty.
//
// Guarantees:
//
//   - The input is read once, front to back; it is never held in memory.
//     Only small JSON entries (manifest.json, index.json, oci-layout,
//     repositories, and entries that parse as image manifests, indexes or
//     configs) are kept, each up to Options.MaxMetadataEntry bytes and
//     Options.MaxMetadata in total; the table of entries is bounded by
//     Options.MaxEntries. Memory is therefore bounded whatever the input.
//   - Every regular entry is SHA-256 hashed while it streams past (and also
//     with its own algorithm when it is named blobs/<alg>/<hex>); compressed
//     entries (gzip, zstd, bzip2, detected by their magic bytes) are also
//     decompressed and hashed, giving the diff ID a layer must have.
//   - Integrity: each blobs/<alg>/<hex> entry hashes to its name; a legacy
//     config file hashes to its name when its name is a digest; an image's
//     layers have the uncompressed digests listed in its config's
//     rootfs.diff_ids, in order; every descriptor of a manifest or index
//     names an entry of that digest and size. A platform manifest of an
//     index that is absent (or whose layers are absent) is reported in
//     Image.Platforms, and is a problem only when no platform is complete.
//   - An archive-wide problem (an entry that does not hash to its name, a
//     path that leaves the archive, conflicting copies of one path, ...) is
//     a problem of every image: a tampered archive loads nothing trusted.
//
// Read is safe for concurrent use on different readers; an Archive is
// immutable once returned.
package archive
