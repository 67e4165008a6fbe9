package ctrd

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trustd/trustd/plugin/engine"
	"github.com/trustd/trustd/plugin/nri"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
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
	// names memoises Image while the image watcher keeps it valid
	// (TrackNames); nil otherwise.
	names atomic.Pointer[nameMemo]
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
	if info.Size > engine.MaxManifestSize {
		return nil, fmt.Errorf("%s: %d bytes is too large for a manifest", d, info.Size)
	}
	return content.ReadBlob(ctx, cs, ocispec.Descriptor{Digest: d, Size: info.Size})
}

// Image implements ImageStore: the record named name (exactly, as CRI
// stores names) with its config digest for this platform.
func (c *Containerd) Image(ctx context.Context, name string) (nri.StoreImage, error) {
	memo := c.names.Load()
	var gen uint64
	if memo != nil {
		si, g, ok := memo.get(name)
		if ok {
			return si, nil
		}
		gen = g
	}
	cl, err := c.get(ctx)
	if err != nil {
		return nri.StoreImage{}, err
	}
	ctx = namespaces.WithNamespace(ctx, c.Namespace)
	img, err := cl.ImageService().Get(ctx, name)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nri.StoreImage{}, fmt.Errorf("%w: %s", nri.ErrNotInStore, name)
		}
		return nri.StoreImage{}, err
	}
	cfg, err := c.imageConfig(ctx, cl, img.Target)
	if err != nil {
		return nri.StoreImage{}, fmt.Errorf("image %s: config for this platform: %w", name, err)
	}
	si := nri.StoreImage{Name: img.Name, Target: img.Target.Digest, Config: cfg}
	if memo != nil {
		memo.put(name, si, gen)
	}
	return si, nil
}

// Images implements ImageStore: every record, with its config digest for
// this platform (records without one, such as an index whose platform
// was not pulled, are left out). Configs come from the memo after the
// first call.
func (c *Containerd) Images(ctx context.Context) ([]nri.StoreImage, error) {
	cl, err := c.get(ctx)
	if err != nil {
		return nil, err
	}
	ctx = namespaces.WithNamespace(ctx, c.Namespace)
	imgs, err := cl.ImageService().List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]nri.StoreImage, 0, len(imgs))
	for _, img := range imgs {
		cfg, err := c.imageConfig(ctx, cl, img.Target)
		if err != nil {
			continue
		}
		out = append(out, nri.StoreImage{Name: img.Name, Target: img.Target.Digest, Config: cfg})
	}
	return out, nil
}

// ContainerChain implements ImageStore: the chain ID of the layers the
// container's root filesystem is made of. The container's snapshot is
// prepared, keyed by the container ID, before NRI is called; its parent is
// the image's layers.
func (c *Containerd) ContainerChain(ctx context.Context, containerID string) (string, error) {
	return c.snapshotParent(ctx, containerID)
}

// ChainID implements ImageStore: the chain ID of a config's layers.
func (c *Containerd) ChainID(ctx context.Context, config digest.Digest) (string, error) {
	return c.chainID(ctx, config)
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
