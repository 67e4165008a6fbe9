package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
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

	// facts holds what content-addressed data says about images, so the
	// decision path reads it from memory (see contentFacts).
	facts atomic.Pointer[contentFacts]
	// snapshotters is the list of snapshotters that initialised, in
	// containerd's order, for the current connection; lastSnapshotter is
	// the one the last container's snapshot was found in.
	snapshotters    atomic.Pointer[[]string]
	lastSnapshotter atomic.Pointer[string]
}

// contentFacts is an immutable memo of facts that content-addressed data
// determines once and for all: the config digest of a manifest (or index,
// for this platform) and the chain ID of a config's layers. Being keyed by
// digests of verified content, an entry can never go stale: a moved tag is
// a new key, never a changed value. It is replaced whole (copy on write).
type contentFacts struct {
	configs map[digest.Digest]digest.Digest // manifest or index → config
	chains  map[digest.Digest]string        // config → chain ID
}

// maxContentFacts bounds the memo; past it, it starts afresh.
const maxContentFacts = 1 << 16

// remember adds facts to the memo.
func (c *Containerd) remember(target, config digest.Digest, chain string) {
	for {
		old := c.facts.Load()
		n := &contentFacts{configs: map[digest.Digest]digest.Digest{}, chains: map[digest.Digest]string{}}
		if old != nil && len(old.configs)+len(old.chains) < maxContentFacts {
			if (target == "" || old.configs[target] == config) && (chain == "" || old.chains[config] == chain) {
				return // known
			}
			maps.Copy(n.configs, old.configs)
			maps.Copy(n.chains, old.chains)
		}
		if target != "" {
			n.configs[target] = config
		}
		if chain != "" {
			n.chains[config] = chain
		}
		if c.facts.CompareAndSwap(old, n) {
			return
		}
	}
}

// imageConfig returns the config digest of an image's target for this
// platform, from the memo or else from the content store (and memoised).
func (c *Containerd) imageConfig(ctx context.Context, cl *containerd.Client, target ocispec.Descriptor) (digest.Digest, error) {
	if f := c.facts.Load(); f != nil {
		if cfg, ok := f.configs[target.Digest]; ok {
			return cfg, nil
		}
	}
	cfg, err := images.Config(ctx, cl.ContentStore(), target, platforms.Default())
	if err != nil {
		return "", err
	}
	c.remember(target.Digest, cfg.Digest, "")
	return cfg.Digest, nil
}

// Learn computes and memoises the facts of an image the store holds (its
// config digest and the chain ID of its layers), so that deciding on a
// container made from it needs no content reads. The image watcher calls
// it for every image that arrives.
func (c *Containerd) Learn(ctx context.Context, target ocispec.Descriptor) (config digest.Digest, err error) {
	cl, err := c.get(ctx)
	if err != nil {
		return "", err
	}
	ctx = namespaces.WithNamespace(ctx, c.Namespace)
	cfg, err := c.imageConfig(ctx, cl, target)
	if err != nil {
		return "", err
	}
	if _, err := c.chainID(ctx, cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
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
	c.snapshotters.Store(nil) // containerd may have restarted with others
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
	cfg, err := c.imageConfig(ctx, cl, img.Target)
	if err != nil {
		return "", "", err
	}
	return img.Target.Digest, cfg, nil
}

// ContainerImageFacts gives the facts of the image a container is being
// created from when the runtime does not say (containerd < 2.4): the image
// the reference names in the store, checked against the container's root
// filesystem. The container's snapshot (prepared before NRI is called) has
// the chain ID of the image actually used as its parent; when that is not
// the named image's — a tag moved between resolution and creation, or a
// CRI client pairing an image ID with another reference — the image with
// that chain ID is judged instead, so the verdict is about what will run.
//
// What can change is read from containerd on every call: the container's
// snapshot (one Stat) and the image the name names now (one Get; a List
// when it is not the container's image). What content-addressed data
// determines (an image's config digest, a config's chain ID) comes from a
// memo that Learn fills as images arrive, so a decision reads no content.
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
		icfg, err := c.imageConfig(ctx, cl, img.Target)
		if err != nil || seen[icfg] {
			continue
		}
		seen[icfg] = true
		if chain, err := c.chainID(ctx, icfg); err == nil && chain == parent {
			return "", icfg, nil
		}
	}
	return "", "", fmt.Errorf("the container's root filesystem (layers %s) is not that of image %s, and matches no image in containerd's store", parent, name)
}

// chainID is the chain ID of an image's layers, from its config (memoised).
func (c *Containerd) chainID(ctx context.Context, config digest.Digest) (string, error) {
	if f := c.facts.Load(); f != nil {
		if chain, ok := f.chains[config]; ok {
			return chain, nil
		}
	}
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
	chain := identity.ChainID(img.RootFS.DiffIDs).String()
	c.remember("", config, chain)
	return chain, nil
}

// snapshotParent finds the container's root filesystem snapshot (keyed by
// the container ID) in any snapshotter and returns its parent. It asks the
// snapshotter that held the last container's snapshot first, then the
// others in containerd's order; the list of snapshotters is read once per
// connection.
func (c *Containerd) snapshotParent(ctx context.Context, key string) (string, error) {
	cl, err := c.get(ctx)
	if err != nil {
		return "", err
	}
	ctx = namespaces.WithNamespace(ctx, c.Namespace)
	names, err := c.snapshotterNames(ctx, cl)
	if err != nil {
		return "", err
	}
	if last := c.lastSnapshotter.Load(); last != nil {
		names = append([]string{*last}, slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == *last })...)
	}
	for _, name := range names {
		info, err := cl.SnapshotService(name).Stat(ctx, key)
		if err == nil {
			c.lastSnapshotter.Store(&name)
			if info.Parent == "" {
				return "", fmt.Errorf("snapshot %s has no parent image", key)
			}
			return info.Parent, nil
		}
	}
	c.snapshotters.Store(nil) // read the list again next time
	return "", fmt.Errorf("no snapshot %s in any snapshotter", key)
}

// snapshotterNames lists the snapshotters that initialised.
func (c *Containerd) snapshotterNames(ctx context.Context, cl *containerd.Client) ([]string, error) {
	if names := c.snapshotters.Load(); names != nil {
		return *names, nil
	}
	resp, err := cl.IntrospectionService().Plugins(ctx, `type=="io.containerd.snapshotter.v1"`)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range resp.Plugins {
		if p.InitErr == nil {
			names = append(names, p.ID)
		}
	}
	c.snapshotters.Store(&names)
	return names, nil
}
