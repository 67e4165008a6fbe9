package nri

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/containerd/nri/pkg/api"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/verify"
)

// ErrNotInStore is matched (errors.Is) when containerd's image store has no
// record of a name.
var ErrNotInStore = errors.New("not in containerd's image store")

// StoreImage is one record of containerd's image store.
type StoreImage struct {
	// Name is the record's name, as CRI stores it: a normalised reference
	// ("docker.io/library/nginx:1.25", "…@sha256:…") or an image ID
	// ("sha256:<config>").
	Name string
	// Target is the manifest or index digest the record points to.
	Target digest.Digest
	// Config is the config digest of Target for this platform.
	Config digest.Digest
}

// ImageStore is containerd's image store as the facts need it. Everything
// it answers comes from containerd, never from the request being judged.
type ImageStore interface {
	// Image returns the record named name exactly; an error matching
	// ErrNotInStore when there is none.
	Image(ctx context.Context, name string) (StoreImage, error)
	// Images returns every record whose config is known for this platform.
	Images(ctx context.Context) ([]StoreImage, error)
	// ContainerChain returns the chain ID of the layers the container's
	// root filesystem is made of (containerd < 2.4, which gives NRI no
	// image).
	ContainerChain(ctx context.Context, containerID string) (string, error)
	// ChainID returns the chain ID of a config's layers.
	ChainID(ctx context.Context, config digest.Digest) (string, error)
}

// nameMemo is an ImageStore that memoises Image (plugin/ctrd while its
// image watcher is subscribed): ForgetName makes the next Image of that
// name ask the store.
type nameMemo interface {
	ForgetName(name string)
}

// Judged is one image a container can run code from, with the facts to
// judge it by: its own image, or an image volume.
type Judged struct {
	// Volume is the image volume's mount point in the container; "" for
	// the container's image.
	Volume string
	// Candidates are the names the image can be judged under, each with
	// the same identity (config digest). The image is allowed when one of
	// them is; there is more than one only when the request named no
	// repository (an image ID, an image volume) and containerd's store
	// binds several names to the image.
	Candidates []verify.Facts
	// Err is set when the image cannot be judged: the container is denied
	// with it.
	Err error
}

// imageVolumeDir is the directory of containerd's CRI state directory
// under which image volumes are mounted:
// <state>/image-volumes/<pod sandbox ID>/<manifest hex>[/<sub path>].
const imageVolumeDir = "image-volumes"

var hex64 = regexp.MustCompile(`^[a-f0-9]{64}$`)
var hexPrefix = regexp.MustCompile(`^[a-f0-9]{1,64}$`)

// ContainerImages gathers what a container can run code from — its image
// and every image volume among its mounts (adjust holds the mounts other
// NRI plugins add) — each with the facts to judge it by, in order: the
// image first. The namespace is the pod sandbox's, never an annotation's.
//
// A name from the request (the io.kubernetes.cri.image-name annotation,
// which any CRI client, device plugin or DRA driver can set) is used only
// when containerd's store binds it to the image the container is created
// from: the config digest NRI gives (containerd 2.4), or the layers of the
// container's root filesystem (2.2 and 2.3, which give NRI no image).
// Otherwise the image's Err says why it cannot be judged.
func ContainerImages(ctx context.Context, store ImageStore, pod *api.PodSandbox, ctr *api.Container, adjust *api.ContainerAdjustment) []Judged {
	ns := pod.GetNamespace()
	out := []Judged{containerImage(ctx, store, ns, ctr)}
	mounts := slices.Concat(ctr.GetMounts(), adjust.GetMounts())
	var images []StoreImage // listed once, when the first volume needs it
	var listErr error
	for _, m := range mounts {
		target, ok, err := imageVolumeTarget(m.GetSource())
		if !ok {
			continue
		}
		j := Judged{Volume: m.GetDestination()}
		if err != nil {
			j.Err = err
			out = append(out, j)
			continue
		}
		if images == nil && listErr == nil {
			images, listErr = store.Images(ctx)
		}
		if listErr != nil {
			j.Err = fmt.Errorf("image volume %s (manifest %s): listing containerd's images: %w", m.GetDestination(), target, listErr)
			out = append(out, j)
			continue
		}
		j.Candidates, j.Err = namesOf(images, ns, func(si StoreImage) bool { return si.Target == target })
		if j.Err != nil {
			j.Err = fmt.Errorf("image volume %s (manifest %s from %s): %w", m.GetDestination(), target, m.GetSource(), j.Err)
		}
		out = append(out, j)
	}
	return out
}

// imageVolumeTarget reports whether source is (or is inside) an image
// volume mounted by containerd's CRI plugin, and which manifest or index
// digest it is mounted from. A path with an image-volumes element that does
// not have that shape is an image volume that cannot be judged: ok with an
// error.
func imageVolumeTarget(source string) (target digest.Digest, ok bool, err error) {
	if source == "" {
		return "", false, nil
	}
	parts := strings.Split(filepath.Clean(source), "/")
	i := slices.Index(parts, imageVolumeDir)
	// An image-volumes directory followed by a pod sandbox ID (64 hex
	// digits) is containerd's; /srv/image-volumes/photos is not.
	if i < 0 || i+1 >= len(parts) || !hex64.MatchString(parts[i+1]) {
		return "", false, nil
	}
	if i+2 >= len(parts) || !hex64.MatchString(parts[i+2]) {
		return "", true, fmt.Errorf("mount source %s looks like an image volume but names no image manifest (want …/%s/<pod>/<manifest sha256 hex>)", source, imageVolumeDir)
	}
	return digest.NewDigestFromEncoded(digest.SHA256, parts[i+2]), true, nil
}

// containerImage gathers the facts of the container's own image.
func containerImage(ctx context.Context, store ImageStore, ns string, ctr *api.Container) Judged {
	j := Judged{}
	img := ctr.GetImage()
	claim := ctr.GetAnnotations()[AnnotationImageName]
	if claim == "" {
		claim = img.GetName() // containerd's own record name (2.4)
	}
	if claim == "" {
		j.Err = fmt.Errorf("container %s names no image (no %s annotation and no image in the NRI message)", ctr.GetName(), AnnotationImageName)
		return j
	}
	if store == nil {
		j.Err = errors.New("no connection to containerd's image store to check the image name against")
		return j
	}
	// runs reports whether a record is the image the container is created
	// from; what says so depends on the runtime.
	var runs func(StoreImage) bool
	var identity func() string // the image that runs, for a person
	if cfg := digest.Digest(img.GetConfigDigest()); cfg != "" {
		if err := cfg.Validate(); err != nil {
			j.Err = fmt.Errorf("invalid image config digest from the runtime: %w", err)
			return j
		}
		runs = func(si StoreImage) bool { return si.Config == cfg }
		identity = func() string { return "config " + string(cfg) }
	} else {
		if ctr.GetId() == "" {
			j.Err = errors.New("the runtime gave neither the container's image nor its ID")
			return j
		}
		chain, err := store.ContainerChain(ctx, ctr.GetId())
		if err != nil {
			j.Err = fmt.Errorf("the container's root filesystem cannot be checked against image %s: %w", claim, err)
			return j
		}
		runs = func(si StoreImage) bool {
			c, err := store.ChainID(ctx, si.Config)
			return err == nil && c == chain
		}
		identity = func() string {
			// Name the image that runs by its config when the store
			// holds exactly one with these layers, as 2.4's facts do.
			if images, err := store.Images(ctx); err == nil {
				if cfg := onlyConfig(images, runs); cfg != "" {
					return "config " + string(cfg)
				}
			}
			return "layers " + chain
		}
	}

	// Resolve the claim as CRI resolves a container's image: an image ID
	// (sha256:<config>), else a name in the store, else a short image ID.
	var id string
	if _, err := digest.Parse(claim); err == nil {
		id = claim
	} else {
		named, perr := reference.ParseDockerRef(claim)
		if perr == nil {
			si, err := store.Image(ctx, named.String())
			if err == nil && !runs(si) {
				// A memoised binding may predate an image event still on
				// its way: ask the store itself before denying.
				if m, ok := store.(nameMemo); ok {
					m.ForgetName(named.String())
					si, err = store.Image(ctx, named.String())
				}
			}
			switch {
			case err == nil:
				if !runs(si) {
					j.Err = fmt.Errorf("the container claims image %s, but containerd's store binds that name to config %s, not to the image the container is created from (%s): the name is not the image that runs", claim, si.Config, identity())
					return j
				}
				j.Candidates = []verify.Facts{{Subject: verify.SubjectContainer, Image: claim, Namespace: ns, Digest: si.Target, ConfigDigest: si.Config}}
				return j
			case !errors.Is(err, ErrNotInStore):
				j.Err = fmt.Errorf("looking up image %s in containerd's store: %w", claim, err)
				return j
			}
		}
		if !hexPrefix.MatchString(claim) {
			j.Err = fmt.Errorf("the container claims image %s, which containerd's store does not hold: the name cannot be bound to the image that runs (%s)", claim, identity())
			return j
		}
		id = "sha256:" + claim
	}
	images, err := store.Images(ctx)
	if err != nil {
		j.Err = fmt.Errorf("listing containerd's images: %w", err)
		return j
	}
	var config digest.Digest
	for _, si := range images {
		if strings.HasPrefix(string(si.Config), id) && si.Config != config {
			if config != "" {
				j.Err = fmt.Errorf("image ID %s is ambiguous in containerd's store (%s, %s)", claim, config, si.Config)
				return j
			}
			config = si.Config
		}
	}
	if config == "" {
		j.Err = fmt.Errorf("the container claims image ID %s, which containerd's store does not hold", claim)
		return j
	}
	if !slices.ContainsFunc(images, func(si StoreImage) bool { return si.Config == config && runs(si) }) {
		j.Err = fmt.Errorf("the container claims image ID %s (config %s), which is not the image it is created from (%s)", claim, config, identity())
		return j
	}
	j.Candidates, j.Err = namesOf(images, ns, func(si StoreImage) bool { return si.Config == config && runs(si) })
	if j.Err != nil {
		j.Err = fmt.Errorf("image ID %s (config %s, the container runs %s): %w", claim, config, identity(), j.Err)
	}
	return j
}

// namesOf returns the facts of each repository name the store binds to
// the records that match, sorted by name; image ID records (sha256:…) name
// no repository and are left out.
func namesOf(images []StoreImage, ns string, match func(StoreImage) bool) ([]verify.Facts, error) {
	var out []verify.Facts
	found := false
	for _, si := range images {
		if !match(si) {
			continue
		}
		found = true
		if _, err := digest.Parse(si.Name); err == nil {
			continue
		}
		out = append(out, verify.Facts{Subject: verify.SubjectContainer, Image: si.Name, Namespace: ns, Digest: si.Target, ConfigDigest: si.Config})
	}
	switch {
	case !found:
		return nil, errors.New("no such image in containerd's store")
	case len(out) == 0:
		return nil, errors.New("containerd's store has no repository name for this image, so no rule can apply to it")
	}
	slices.SortFunc(out, func(a, b verify.Facts) int { return strings.Compare(a.Image, b.Image) })
	return out, nil
}

// onlyConfig is the config of the records that match, when they all have
// the same one; "" otherwise.
func onlyConfig(images []StoreImage, match func(StoreImage) bool) digest.Digest {
	var cfg digest.Digest
	for _, si := range images {
		if match(si) {
			if cfg != "" && cfg != si.Config {
				return ""
			}
			cfg = si.Config
		}
	}
	return cfg
}
