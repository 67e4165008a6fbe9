package gen

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/internal/testimage"
)

// ArchiveOptions shape a generated docker save archive.
type ArchiveOptions struct {
	// Ref is the name the image is saved under (RepoTags).
	Ref string
	// Layers layers of about LayerSize bytes each, uncompressed, as
	// Docker's classic store saves them.
	Layers    int
	LayerSize int
	// Seed makes the content; the same options give the same bytes.
	Seed uint64
}

// ArchiveInfo describes a generated archive.
type ArchiveInfo struct {
	Size         int64
	ConfigDigest digest.Digest
	DiffIDs      []digest.Digest
}

// WriteDockerArchive writes a `docker save` tar in Docker's legacy form
// (before Docker 25), with testimage.Legacy: <id>/VERSION, <id>/json and
// <id>/layer.tar per layer, then <config hex>.json, manifest.json and
// repositories, in that order, as Docker writes them. Layer content is
// compressible text (16 symbols), like a file system. It holds one layer in
// memory at a time.
func WriteDockerArchive(w io.Writer, o ArchiveOptions) (*ArchiveInfo, error) {
	if o.Ref == "" || o.Layers <= 0 || o.LayerSize <= 0 {
		return nil, fmt.Errorf("gen: ArchiveOptions needs Ref, Layers and LayerSize")
	}
	tw := testimage.NewWriter(w)
	lw := testimage.NewLegacy(tw)
	info := &ArchiveInfo{}
	rng := rand.New(rand.NewChaCha8([32]byte{byte(o.Seed), byte(o.Seed >> 8), byte(o.Seed >> 16), byte(o.Seed >> 24)}))
	content := make([]byte, o.LayerSize)
	var layerPaths []string
	for i := range o.Layers {
		testimage.FillText(content, rng.Uint64)
		layer, err := testimage.Tar(testimage.Entry{Name: fmt.Sprintf("data/file%d", i), Data: content})
		if err != nil {
			return nil, err
		}
		id := digest.FromString(fmt.Sprintf("%s layer %d %d", o.Ref, i, o.Seed)).Encoded()
		p, diffID, err := lw.Layer(id, layer)
		if err != nil {
			return nil, err
		}
		info.DiffIDs = append(info.DiffIDs, diffID)
		layerPaths = append(layerPaths, p)
	}
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Labels": map[string]string{"generated-by": "trustd internal/gen"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": info.DiffIDs},
	})
	if err != nil {
		return nil, err
	}
	info.ConfigDigest = digest.FromBytes(config)
	name, err := lw.Config(config)
	if err != nil {
		return nil, err
	}
	lw.Image(o.Ref, name, layerPaths)
	if err := lw.Close(); err != nil {
		return nil, err
	}
	info.Size = tw.Size()
	return info, nil
}
