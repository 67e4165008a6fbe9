package plugin

import (
	"context"
	"fmt"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
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
