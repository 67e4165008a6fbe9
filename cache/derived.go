package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/trustd/trustd/verify"
)

// derivedFormat versions the derived index files.
const derivedFormat = 1

// derivedIndex is the index trustd derived from a bundle it verified,
// stored beside the bundle so that a restart need not verify every
// signature again: it is used only while its key — the SHA-256 of the
// bundle file's bytes and of what the policy pins (the root, the pins) —
// still matches. It is written only by trustd after a full verification,
// into the cache directory (root only, 0700); anything that does not match
// or does not decode is ignored and the bundle is verified in full.
type derivedIndex struct {
	Format  int
	Key     string
	Version string
	Repos   map[string]*verify.Repo
	Extra   []byte // source-specific (Notary: the keys, JSON)
}

// derivedKey binds a derived index to the exact bundle bytes and trust anchors.
func derivedKey(bundle []byte, anchors ...[]byte) string {
	h := sha256.New()
	h.Write(bundle)
	for _, a := range anchors {
		s := sha256.Sum256(a)
		h.Write(s[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func readDerived(path, key string) (*derivedIndex, error) {
	b, err := readFileLimit(path, maxBundleFileBytes)
	if err != nil {
		return nil, err
	}
	var d derivedIndex
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&d); err != nil {
		return nil, fmt.Errorf("derived index %s: %w", path, err)
	}
	if d.Format != derivedFormat || d.Key != key {
		return nil, errors.New("derived index is stale")
	}
	return &d, nil
}

func writeDerived(path string, d *derivedIndex) error {
	d.Format = derivedFormat
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(d); err != nil {
		return err
	}
	RemoveStaleTemps(path)
	return WriteFileAtomic(path, buf.Bytes(), 0o600)
}

func removeDerived(path string) { os.Remove(path) }
