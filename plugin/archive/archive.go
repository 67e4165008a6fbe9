package archive

import (
	"errors"
	"io"

	"github.com/opencontainers/go-digest"
)

// ErrFormat is matched (errors.Is) by the error of Read when the input is
// not a readable image archive: not a tar, truncated, or a tar with neither
// an OCI layout nor a docker save manifest.json.
var ErrFormat = errors.New("not a readable image archive")

// ErrLimit is matched (errors.Is) by the error of Read when the archive
// exceeds one of the bounds of Options (entries, metadata size).
var ErrLimit = errors.New("image archive exceeds trustd's limits")

// Format is the layout of an archive, as its loaders will read it.
type Format string

const (
	// FormatDocker is `docker save`'s legacy form: manifest.json with
	// Config, RepoTags and Layers paths.
	FormatDocker Format = "docker"
	// FormatDockerOCI is what Docker 25+ writes: an OCI image layout
	// (oci-layout, index.json, blobs/) with a legacy manifest.json beside
	// it. Docker's classic image store loads the manifest.json, containerd
	// the OCI layout; both are checked.
	FormatDockerOCI Format = "docker+oci"
	// FormatOCI is an OCI image layout tar.
	FormatOCI Format = "oci"
)

// Image is one image the archive would load.
type Image struct {
	// Names are the references the image would be loaded as, as written
	// in the archive: its RepoTags (legacy manifest.json), and its
	// io.containerd.image.name and full-reference
	// org.opencontainers.image.ref.name annotations (index.json). Exact
	// duplicates are removed; references are not normalised.
	Names []string `json:"names"`
	// Tags are org.opencontainers.image.ref.name annotations that are only
	// a tag ("1.0", with no repository): the loader must be told the
	// repository, so they name no image by themselves.
	Tags []string `json:"tags,omitempty"`
	// ManifestDigest is the digest of the image's manifest or index as
	// stored in the archive (OCI forms); "" for an image known only from a
	// legacy manifest.json, which holds no manifest.
	ManifestDigest digest.Digest `json:"manifest_digest,omitempty"`
	// MediaType is the manifest's or index's media type, when known.
	MediaType string `json:"media_type,omitempty"`
	// ConfigDigest is the image's config digest (its image ID). For an
	// index it is the config of its only present platform manifest that
	// is not an attestation, and "" when there are several.
	ConfigDigest digest.Digest `json:"config_digest,omitempty"`
	// Platforms are the manifests of an index, present or not; nil for a
	// single manifest.
	Platforms []Platform `json:"platforms,omitempty"`
	// Problems say why the image must not be trusted as it is in this
	// archive (tampered or missing content); empty when none was found.
	Problems []string `json:"problems,omitempty"`
}

// IsIndex reports whether the image is a (multi-platform) index.
func (i *Image) IsIndex() bool { return i.Platforms != nil }

// Platform is one manifest of an index.
type Platform struct {
	// Manifest is the platform manifest's digest, from the index.
	Manifest digest.Digest `json:"manifest"`
	// Config is its config digest; "" when the manifest is absent.
	Config digest.Digest `json:"config,omitempty"`
	// Platform is os/architecture[/variant], from the index's descriptor
	// (or the config); "" when neither says.
	Platform string `json:"platform,omitempty"`
	// Attestation is true for a build attestation manifest (BuildKit's
	// vnd.docker.reference.type=attestation-manifest): not runnable.
	Attestation bool `json:"attestation,omitempty"`
	// Present is true when the manifest is in the archive (and was
	// checked); Complete when its config and layers are too.
	Present  bool `json:"present"`
	Complete bool `json:"complete"`
}

// Archive is what Read found. It is immutable.
type Archive struct {
	Format Format  `json:"format"`
	Images []Image `json:"images"`
	// Problems are the archive-wide problems, also listed in every image's
	// Problems.
	Problems []string `json:"problems,omitempty"`
	// Size is the number of bytes read.
	Size int64 `json:"size"`
	// SignatureManifests are the cosign signature manifests (tag scheme)
	// an OCI layout written by `cosign save` lists in its index.json
	// (annotation kind = dev.cosignproject.cosign/sigs): signatures, not
	// images. Their content is Blob's, when the archive holds it.
	SignatureManifests []digest.Digest `json:"signature_manifests,omitempty"`

	blobs     map[digest.Digest][]byte          // verified manifests, indexes and signature payloads
	referrers map[digest.Digest][]digest.Digest // subject -> manifests that name it
}

// Blob returns the bytes of a manifest, an index, or a cosign signature
// payload or Sigstore bundle the archive holds under digest d (its content
// hashes to d). The caller must not modify them.
func (a *Archive) Blob(d digest.Digest) ([]byte, bool) {
	b, ok := a.blobs[d]
	return b, ok
}

// Referrers returns the digests of the manifests the archive holds that
// name d as their subject (OCI 1.1 referrers: cosign's Sigstore bundles,
// which `cosign save` writes among the blobs without listing them in
// index.json), in a stable order.
func (a *Archive) Referrers(d digest.Digest) []digest.Digest {
	return a.referrers[d]
}

// Default limits of Options.
const (
	DefaultMaxMetadataEntry = 4 << 20
	DefaultMaxMetadata      = 64 << 20
	DefaultMaxEntries       = 1 << 16
	// DefaultMaxZstdWindow bounds the memory of a zstd decompressor.
	DefaultMaxZstdWindow = 64 << 20
)

// maxNameLen is the longest entry name recorded; longer names (never
// written by image tools) cannot be referenced.
const maxNameLen = 512

// Options configure Read. The zero value is usable.
type Options struct {
	// Progress, if set, is called with the number of bytes read so far,
	// at least once per MiB and once at the end.
	Progress func(bytesRead int64)
	// MaxMetadataEntry bounds one kept JSON entry (default 4 MiB).
	MaxMetadataEntry int64
	// MaxMetadata bounds all kept JSON entries together (default 64 MiB).
	MaxMetadata int64
	// MaxEntries bounds the number of files and links in the archive
	// (default 65536); beyond it Read fails with ErrLimit.
	MaxEntries int

	// maxUncompressed, if > 0, bounds each entry's decompressed size (tests).
	maxUncompressed int64
}

func (o Options) withDefaults() Options {
	if o.MaxMetadataEntry <= 0 {
		o.MaxMetadataEntry = DefaultMaxMetadataEntry
	}
	if o.MaxMetadata <= 0 {
		o.MaxMetadata = DefaultMaxMetadata
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	return o
}

// Read reads an image archive from r in one pass and reports its images.
// An error (ErrFormat, ErrLimit, or r's own) means the archive could not
// be read as a whole; problems of individual images are not errors but
// are listed in Image.Problems.
func Read(r io.Reader, opts Options) (*Archive, error) {
	s := newScanner(opts.withDefaults())
	if err := s.scan(r); err != nil {
		return nil, err
	}
	return s.analyze()
}
