package gen

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
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

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// WriteDockerArchive writes a `docker save` tar in Docker's legacy form
// (before Docker 25): <id>/VERSION, <id>/json and <id>/layer.tar per
// layer, then <config hex>.json, manifest.json and repositories, in that
// order, as Docker writes them. Layer content is compressible text (16
// symbols), like a file system. It holds one layer in memory at a time.
func WriteDockerArchive(w io.Writer, o ArchiveOptions) (*ArchiveInfo, error) {
	if o.Ref == "" || o.Layers <= 0 || o.LayerSize <= 0 {
		return nil, fmt.Errorf("gen: ArchiveOptions needs Ref, Layers and LayerSize")
	}
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	epoch := time.Unix(0, 0)
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, ModTime: epoch, Typeflag: tar.TypeReg, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	info := &ArchiveInfo{}
	rng := rand.New(rand.NewChaCha8([32]byte{byte(o.Seed), byte(o.Seed >> 8), byte(o.Seed >> 16), byte(o.Seed >> 24)}))
	content := make([]byte, o.LayerSize)
	var layerPaths []string
	for i := range o.Layers {
		for j := 0; j < len(content); j += 16 {
			r := rng.Uint64()
			for k := j; k < min(j+16, len(content)); k++ {
				content[k] = "abcdefghijklmn \n"[r&15]
				r >>= 4
			}
		}
		var layer bytes.Buffer
		ltw := tar.NewWriter(&layer)
		if err := ltw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/file%d", i), Mode: 0o644, ModTime: epoch, Typeflag: tar.TypeReg, Size: int64(len(content))}); err != nil {
			return nil, err
		}
		if _, err := ltw.Write(content); err != nil {
			return nil, err
		}
		if err := ltw.Close(); err != nil {
			return nil, err
		}
		info.DiffIDs = append(info.DiffIDs, digest.FromBytes(layer.Bytes()))
		id := digest.FromString(fmt.Sprintf("%s layer %d %d", o.Ref, i, o.Seed)).Encoded()
		if err := put(id+"/VERSION", []byte("1.0")); err != nil {
			return nil, err
		}
		if err := put(id+"/json", []byte(`{"id":"`+id+`"}`)); err != nil {
			return nil, err
		}
		if err := put(id+"/layer.tar", layer.Bytes()); err != nil {
			return nil, err
		}
		layerPaths = append(layerPaths, id+"/layer.tar")
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
	if err := put(info.ConfigDigest.Encoded()+".json", config); err != nil {
		return nil, err
	}
	mf, err := json.Marshal([]map[string]any{{"Config": info.ConfigDigest.Encoded() + ".json", "RepoTags": []string{o.Ref}, "Layers": layerPaths}})
	if err != nil {
		return nil, err
	}
	if err := put("manifest.json", mf); err != nil {
		return nil, err
	}
	repo, tag := o.Ref, "latest"
	if i := strings.LastIndexByte(o.Ref, ':'); i > strings.LastIndexByte(o.Ref, '/') {
		repo, tag = o.Ref[:i], o.Ref[i+1:]
	}
	last := strings.TrimSuffix(layerPaths[len(layerPaths)-1], "/layer.tar")
	repos, err := json.Marshal(map[string]map[string]string{repo: {tag: last}})
	if err != nil {
		return nil, err
	}
	if err := put("repositories", repos); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	info.Size = cw.n
	return info, nil
}
