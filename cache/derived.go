package cache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"

	"github.com/trustd/trustd/verify"
)

// derivedFormat versions the derived index files.
const derivedFormat = 2

const derivedMagic = "trustd-derived\n"

// derivedIndex is the index trustd derived from a bundle it verified,
// stored beside the bundle so that a restart need not verify every
// signature again: it is used only while its key — the SHA-256 of the
// bundle file's bytes and of what the policy pins (the root, the pins) —
// still matches. It is written only by trustd after a full verification,
// into the cache directory (root only, 0700); anything that does not match,
// fails its checksum or does not decode is ignored and the bundle is
// verified in full.
//
// On disk: magic, format, then length-prefixed key, version and extra,
// the verification time, the Trust in its binary form (verify.DecodeTrust
// checks every offset), and a CRC-32C of everything before it. Loading is
// a read, a checksum and a bounds check: no signature, no JSON, no
// per-tag allocation.
type derivedIndex struct {
	Key      string
	Version  string
	Verified time.Time
	Trust    *verify.Trust
	Extra    []byte // source-specific (Notary: the keys, JSON)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// derivedKey binds a derived index to the exact bundle bytes and trust anchors.
func derivedKey(bundle []byte, anchors ...[]byte) string {
	h := sha256.New()
	h.Write(bundle)
	return sumAnchors(h, anchors)
}

// derivedKeyOfFile is derivedKey of a file's bytes, read in a stream
// (a bundle of 100,000 tags is tens of megabytes: hashing it must not
// hold it in memory).
func derivedKeyOfFile(path string, anchors ...[]byte) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, maxBundleFileBytes+1)); err != nil {
		return "", err
	}
	return sumAnchors(h, anchors), nil
}

func sumAnchors(h interface {
	io.Writer
	Sum([]byte) []byte
}, anchors [][]byte) string {
	for _, a := range anchors {
		s := sha256.Sum256(a)
		h.Write(s[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func encodeDerived(d *derivedIndex) ([]byte, error) {
	le := binary.LittleEndian
	b := append([]byte(nil), derivedMagic...)
	b = le.AppendUint32(b, derivedFormat)
	for _, s := range [][]byte{[]byte(d.Key), []byte(d.Version), d.Extra} {
		b = le.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	b = le.AppendUint64(b, uint64(d.Verified.Unix()))
	b = le.AppendUint32(b, uint32(d.Verified.Nanosecond()))
	b, err := d.Trust.AppendBinary(b)
	if err != nil {
		return nil, err
	}
	return le.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

var errStaleDerived = errors.New("derived index is stale")

func decodeDerived(b []byte, key string) (*derivedIndex, error) {
	le := binary.LittleEndian
	if len(b) < len(derivedMagic)+8 || string(b[:len(derivedMagic)]) != derivedMagic {
		return nil, errors.New("not a derived index")
	}
	body, sum := b[:len(b)-4], le.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, errors.New("derived index: checksum mismatch")
	}
	b = body[len(derivedMagic):]
	if le.Uint32(b) != derivedFormat {
		return nil, errStaleDerived
	}
	b = b[4:]
	var fields [3][]byte
	for i := range fields {
		if len(b) < 4 || uint64(len(b)-4) < uint64(le.Uint32(b)) {
			return nil, errors.New("derived index: truncated")
		}
		n := le.Uint32(b)
		fields[i], b = b[4:4+n], b[4+n:]
	}
	if string(fields[0]) != key {
		return nil, errStaleDerived
	}
	if len(b) < 12 {
		return nil, errors.New("derived index: truncated")
	}
	d := &derivedIndex{Key: key, Version: string(fields[1]), Extra: fields[2]}
	if sec, nsec := int64(le.Uint64(b)), le.Uint32(b[8:]); nsec < 1e9 {
		d.Verified = time.Unix(sec, int64(nsec)).UTC()
	}
	t, err := verify.DecodeTrust(b[12:])
	if err != nil {
		return nil, fmt.Errorf("derived index: %w", err)
	}
	d.Trust = t
	return d, nil
}

func readDerived(path, key string) (*derivedIndex, error) {
	b, err := readFileLimit(path, maxBundleFileBytes)
	if err != nil {
		return nil, err
	}
	d, err := decodeDerived(b, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// writeDerived writes d to path. Stale temporary files of path are the
// caller's to remove (RemoveStaleTemps, or RemoveStaleTempsIn for a
// directory of many repositories).
func writeDerived(path string, d *derivedIndex) error {
	b, err := encodeDerived(d)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b, 0o600)
}

func removeDerived(path string) { os.Remove(path) }
