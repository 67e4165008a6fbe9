package publish

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/policy"
)

// Resolver finds the manifest (or index) a tag names at its registry.
type Resolver struct {
	// Insecure allows plain HTTP, to loopback registries only.
	Insecure bool
	// Keychain gives credentials (default: the Docker credentials file,
	// ~/.docker/config.json or $DOCKER_CONFIG, when present).
	Keychain authn.Keychain
}

// Resolve returns the binding of image's tag to the digest and length of
// the manifest the registry serves for it (HEAD, or GET when the registry
// does not give the digest on HEAD). A digest in image must be the one
// the registry serves.
func (rv *Resolver) Resolve(ctx context.Context, image string) (Binding, error) {
	tname, want, err := TargetName(image)
	if err != nil {
		return Binding{}, err
	}
	ref, _ := policy.ParseRef(image)
	host, _, _ := strings.Cut(ref.Repo, "/")
	var opts []name.Option
	if rv.Insecure {
		if !loopback(host) {
			return Binding{}, fmt.Errorf("%s: --insecure-registry is for loopback registries only, and %s is not one", image, host)
		}
		opts = append(opts, name.Insecure)
	}
	tag, err := name.NewTag(ref.Repo+":"+ref.Tag, append(opts, name.StrictValidation)...)
	if err != nil {
		return Binding{}, fmt.Errorf("%s: %w", image, err)
	}
	kc := rv.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	desc, err := remote.Head(tag, ropts...)
	if err != nil || desc.Digest.Hex == "" || desc.Size <= 0 {
		got, gerr := remote.Get(tag, ropts...)
		if gerr != nil {
			return Binding{}, fmt.Errorf("resolving %s at its registry: %w", image, gerr)
		}
		desc = &got.Descriptor
	}
	d := digest.Digest(desc.Digest.String())
	if d.Algorithm() != digest.SHA256 {
		return Binding{}, fmt.Errorf("%s: the registry names the manifest by %s, not sha256", image, d)
	}
	if want != "" && want != d {
		return Binding{}, fmt.Errorf("%s: the registry serves %s for the tag, not the digest given", image, d)
	}
	return Binding{Name: tname, Digest: d, Length: desc.Size}, nil
}

// loopback reports whether a registry host is one trustd reaches over
// plain HTTP (cache.Endpoint: loopback addresses and localhost).
func loopback(host string) bool {
	base, _, err := cache.Endpoint(host + "/x")
	return err == nil && strings.HasPrefix(base, "http://")
}

// ArchiveImage is what signing an archive's image needs to know of it
// (plugin/archive's Image, as the command reads it).
type ArchiveImage struct {
	Names    []string
	Digest   digest.Digest
	Length   int64
	Problems []string
}

// ArchiveBindings returns a binding per name each image would be loaded
// as. An image with problems, without a manifest in the archive (legacy
// docker save only) or without a tagged name is an error: nothing of such
// an archive is signed.
func ArchiveBindings(images []ArchiveImage) ([]Binding, error) {
	var out []Binding
	for _, img := range images {
		label := string(img.Digest)
		if len(img.Names) > 0 {
			label = strings.Join(img.Names, ", ")
		}
		switch {
		case len(img.Problems) > 0:
			return nil, fmt.Errorf("archive image %s: %s", label, strings.Join(img.Problems, "; "))
		case img.Digest == "" || img.Length <= 0:
			return nil, fmt.Errorf("archive image %s: the archive holds no manifest for it (a legacy docker save): save it with an OCI layout (Docker 25 or later) or sign it from its registry", label)
		case len(img.Names) == 0:
			return nil, fmt.Errorf("archive image %s has no name to sign it under", label)
		}
		for _, n := range img.Names {
			b, err := NewBinding(n, img.Digest, img.Length)
			if err != nil {
				return nil, fmt.Errorf("archive image %s: %w", label, err)
			}
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the archive holds no image")
	}
	return out, nil
}
