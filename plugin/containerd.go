package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/trustd/trustd/policy"
)

// Containerd is trustd's connection to containerd's content and image
// stores in one namespace. It connects lazily and reconnects after
// containerd restarts; it is safe for concurrent use.
type Containerd struct {
	Address   string
	Namespace string

	mu     sync.Mutex
	client *containerd.Client
}

func (c *Containerd) get(ctx context.Context) (*containerd.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		return c.client, nil
	}
	cl, err := containerd.New(c.Address, containerd.WithDefaultNamespace(c.Namespace), containerd.WithTimeout(2*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", c.Address, err)
	}
	c.client = cl
	return cl, nil
}

// Client returns a connected client.
func (c *Containerd) Client(ctx context.Context) (*containerd.Client, error) { return c.get(ctx) }

// Close closes the connection.
func (c *Containerd) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		return nil
	}
	err := c.client.Close()
	c.client = nil
	return err
}

// Version returns containerd's version string.
func (c *Containerd) Version(ctx context.Context) (string, error) {
	cl, err := c.get(ctx)
	if err != nil {
		return "", err
	}
	v, err := cl.Version(ctx)
	if err != nil {
		return "", err
	}
	return v.Version, nil
}

// ReadBlob implements BlobReader from containerd's content store.
func (c *Containerd) ReadBlob(ctx context.Context, d digest.Digest) ([]byte, error) {
	cl, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	ctx = namespaces.WithNamespace(ctx, c.Namespace)
	cs := cl.ContentStore()
	info, err := cs.Info(ctx, d)
	if err != nil {
		return nil, err
	}
	if info.Size > maxManifestSize {
		return nil, fmt.Errorf("%s: %d bytes is too large for a manifest", d, info.Size)
	}
	return content.ReadBlob(ctx, cs, ocispec.Descriptor{Digest: d, Size: info.Size})
}

// ImageFacts implements ImageStore: the image's target digest and its
// config digest for this platform.
func (c *Containerd) ImageFacts(ctx context.Context, name string) (digest.Digest, digest.Digest, error) {
	cl, err := c.get(ctx)
	if err != nil {
		return "", "", err
	}
	ctx = namespaces.WithNamespace(ctx, c.Namespace)
	ref, err := policy.ParseRef(name)
	if err != nil {
		return "", "", err
	}
	img, err := cl.ImageService().Get(ctx, ref.String())
	if err != nil {
		return "", "", err
	}
	cfg, err := images.Config(ctx, cl.ContentStore(), img.Target, platforms.Default())
	if err != nil {
		return "", "", err
	}
	return img.Target.Digest, cfg.Digest, nil
}

// ContainerImageFacts gives the facts of the image a container is being
// created from when the runtime does not say (containerd < 2.4): the image
// the reference names in the store, checked against the container's root
// filesystem. The container's snapshot (prepared before NRI is called) has
// the chain ID of the image actually used as its parent; when that is not
// the named image's — a tag moved between resolution and creation, or a
// CRI client pairing an image ID with another reference — the image with
// that chain ID is judged instead, so the verdict is about what will run.
func (c *Containerd) ContainerImageFacts(ctx context.Context, containerID, name string) (digest.Digest, digest.Digest, error) {
	parent, err := c.snapshotParent(ctx, containerID)
	if err != nil {
		return "", "", fmt.Errorf("the container's root filesystem cannot be checked against image %s: %w", name, err)
	}
	if dg, cfg, err := c.ImageFacts(ctx, name); err == nil {
		if chain, err := c.chainID(ctx, cfg); err == nil && chain == parent {
			return dg, cfg, nil
		}
	}
	// Not the image the reference names: find the one it is.
	cl, err := c.get(ctx)
	if err != nil {
		return "", "", err
	}
	ctx = namespaces.WithNamespace(ctx, c.Namespace)
	imgs, err := cl.ImageService().List(ctx)
	if err != nil {
		return "", "", err
	}
	seen := map[digest.Digest]bool{}
	for _, img := range imgs {
		icfg, err := images.Config(ctx, cl.ContentStore(), img.Target, platforms.Default())
		if err != nil || seen[icfg.Digest] {
			continue
		}
		seen[icfg.Digest] = true
		if chain, err := c.chainID(ctx, icfg.Digest); err == nil && chain == parent {
			return "", icfg.Digest, nil
		}
	}
	return "", "", fmt.Errorf("the container's root filesystem (layers %s) is not that of image %s, and matches no image in containerd's store", parent, name)
}

// chainID is the chain ID of an image's layers, from its config.
func (c *Containerd) chainID(ctx context.Context, config digest.Digest) (string, error) {
	b, err := c.ReadBlob(ctx, config)
	if err != nil {
		return "", err
	}
	if config.Algorithm().FromBytes(b) != config {
		return "", fmt.Errorf("config %s does not match its digest", config)
	}
	var img ocispec.Image
	if err := json.Unmarshal(b, &img); err != nil {
		return "", err
	}
	return identity.ChainID(img.RootFS.DiffIDs).String(), nil
}

// snapshotParent finds the container's root filesystem snapshot (keyed by
// the container ID) in any snapshotter and returns its parent.
func (c *Containerd) snapshotParent(ctx context.Context, key string) (string, error) {
	cl, err := c.get(ctx)
	if err != nil {
		return "", err
	}
	ctx = namespaces.WithNamespace(ctx, c.Namespace)
	resp, err := cl.IntrospectionService().Plugins(ctx, `type=="io.containerd.snapshotter.v1"`)
	if err != nil {
		return "", err
	}
	for _, p := range resp.Plugins {
		if p.InitErr != nil {
			continue
		}
		info, err := cl.SnapshotService(p.ID).Stat(ctx, key)
		if err == nil {
			if info.Parent == "" {
				return "", fmt.Errorf("snapshot %s has no parent image", key)
			}
			return info.Parent, nil
		}
	}
	return "", fmt.Errorf("no snapshot %s in any snapshotter", key)
}
