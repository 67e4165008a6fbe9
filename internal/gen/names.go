package gen

import (
	"crypto/sha256"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// DefaultRegistry is the registry host of generated TUF repositories.
const DefaultRegistry = "registry.example.com"

// Teams is how many team namespaces generated repositories are spread
// over (RepoName); the generated policy has one rule per team.
const Teams = 40

// RepoName is the normalised name of generated repository i on registry:
// <registry>/team<i mod Teams>/app<i>.
func RepoName(registry string, i int) string {
	return fmt.Sprintf("%s/team%02d/app%05d", registry, i%Teams, i)
}

// Tag is the name of generated tag j of a repository with few tags.
func Tag(j int) string { return fmt.Sprintf("v%d.%d", j/10, j%10) }

// BigTag is the name of tag j of a repository with very many tags, a
// release version ("9.12.34"); 100,000 of them make a Notary targets.json
// of about 9 MB.
func BigTag(j int) string {
	return fmt.Sprintf("%d.%d.%d", j/10000, (j/100)%100, j%100)
}

// Manifest returns the image manifest generated for repo:tag: a small
// OCI manifest whose config is ConfigDigest(repo, tag). The same repo and
// tag always give the same bytes.
func Manifest(repo, tag string) []byte {
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1469},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":3623807}]}`,
		ConfigDigest(repo, tag), digest.FromString("layer "+repo+":"+tag))
}

// ManifestDigest is the digest of Manifest(repo, tag).
func ManifestDigest(repo, tag string) digest.Digest { return digest.FromBytes(Manifest(repo, tag)) }

// ConfigDigest is the config digest of the image generated for repo:tag.
func ConfigDigest(repo, tag string) digest.Digest {
	return digest.FromString("config " + repo + ":" + tag)
}

// target is what a role signs for one tag.
type target struct {
	sum    [sha256.Size]byte
	length int64
}

func targetFor(repo, tag string) target {
	m := Manifest(repo, tag)
	return target{sum: sha256.Sum256(m), length: int64(len(m))}
}
