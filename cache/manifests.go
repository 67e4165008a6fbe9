package cache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// ManifestCache is trustd's own content-addressed store of signed
// manifests and indexes, under the cache directory. Because an entry is
// stored under the hash of its bytes, any copy of the bytes is as good as
// another: it is filled from containerd's content store whenever a signed
// manifest is seen there, so that a later side-loaded copy of the same
// image (a new manifest, the same config) can still be matched offline.
type ManifestCache struct{ Dir string }

func (m *ManifestCache) path(d digest.Digest) string {
	return filepath.Join(m.Dir, d.Algorithm().String(), d.Encoded())
}

// ReadBlob returns the stored bytes of d.
func (m *ManifestCache) ReadBlob(_ context.Context, d digest.Digest) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(m.path(d))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Put stores data under d after checking that d is its digest.
func (m *ManifestCache) Put(d digest.Digest, data []byte) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if d.Algorithm().FromBytes(data) != d {
		return fmt.Errorf("manifest cache: content does not match %s", d)
	}
	p := m.path(d)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return WriteFileAtomic(p, data, 0o600)
}

// Has reports whether d is stored.
func (m *ManifestCache) Has(d digest.Digest) bool {
	if d.Validate() != nil {
		return false
	}
	_, err := os.Stat(m.path(d))
	return err == nil
}
