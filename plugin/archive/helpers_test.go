package archive

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/internal/testimage"
)

// file is one entry of a tar built by a test.
type file struct {
	name string
	data []byte
	link string // a symbolic link to this path, when set
	hard bool   // link is a hard link
}

// tarOf writes files, in order, as a tar (testimage.Tar).
func tarOf(t testing.TB, files []file) []byte {
	t.Helper()
	entries := make([]testimage.Entry, len(files))
	for i, f := range files {
		entries[i] = testimage.Entry{Name: f.name, Data: f.data, Link: f.link, Hard: f.hard}
	}
	b, err := testimage.Tar(entries...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// blob is content stored under its digest.
type blob struct {
	d    digest.Digest
	data []byte
}

func newBlob(b []byte) blob { return blob{digest.FromBytes(b), b} }

func (b blob) path() string { return "blobs/sha256/" + b.d.Encoded() }

func (b blob) desc(mediaType string) descriptor {
	return descriptor{MediaType: mediaType, Digest: b.d, Size: int64(len(b.data))}
}

// testImage is a small image made by a test: its layers (as stored, gzip
// or not), config and OCI manifest.
type testImage struct {
	diffIDs  []digest.Digest
	layers   []blob // as stored
	config   blob
	manifest blob
	arch     string
}

// newTestImage builds an image of n layers of about size bytes each, from
// seed; the same arguments give the same image.
func newTestImage(t testing.TB, seed string, n, size int, gz bool) *testImage {
	t.Helper()
	return newPlatformImage(t, seed, n, size, gz, "amd64")
}

func newPlatformImage(t testing.TB, seed string, n, size int, gz bool, arch string) *testImage {
	t.Helper()
	img := &testImage{arch: arch}
	rng := rand.New(rand.NewPCG(uint64(len(seed)), uint64(seed[0])))
	layerType := "application/vnd.oci.image.layer.v1.tar"
	if gz {
		layerType += "+gzip"
	}
	var layerDescs []descriptor
	for i := range n {
		// Compressible about 2:1 by gzip, like real file systems: each byte
		// one of 16 symbols.
		content := make([]byte, size)
		testimage.FillText(content, rng.Uint64)
		layer := tarOf(t, []file{{name: fmt.Sprintf("%s/file%d", seed, i), data: content}})
		img.diffIDs = append(img.diffIDs, digest.FromBytes(layer))
		stored := layer
		if gz {
			stored = gzipBytes(t, layer)
		}
		b := newBlob(stored)
		img.layers = append(img.layers, b)
		layerDescs = append(layerDescs, b.desc(layerType))
	}
	img.config = newBlob(mustJSON(t, map[string]any{
		"architecture": arch,
		"os":           "linux",
		"config":       map[string]any{"Labels": map[string]string{"seed": seed}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": img.diffIDs},
	}))
	cfg := img.config.desc(mediaTypeOCIConfig)
	img.manifest = newBlob(mustJSON(t, manifestJSON{MediaType: "application/vnd.oci.image.manifest.v1+json", Config: &cfg, Layers: layerDescs}))
	// schemaVersion is required by real readers.
	img.manifest = newBlob(bytes.Replace(img.manifest.data, []byte(`{`), []byte(`{"schemaVersion":2,`), 1))
	return img
}

func (img *testImage) desc() descriptor {
	d := img.manifest.desc("application/vnd.oci.image.manifest.v1+json")
	d.Platform = &platformJSON{OS: "linux", Architecture: img.arch}
	return d
}

// blobFiles are the image's blobs as OCI layout entries.
func (img *testImage) blobFiles() []file {
	var fs []file
	for _, l := range img.layers {
		fs = append(fs, file{name: l.path(), data: l.data})
	}
	return append(fs, file{name: img.config.path(), data: img.config.data}, file{name: img.manifest.path(), data: img.manifest.data})
}

// named is an index.json entry: an image (or index) with annotations.
type named struct {
	desc descriptor
	anns map[string]string
}

func indexJSON(t testing.TB, entries ...named) []byte {
	t.Helper()
	var ix struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}
	ix.SchemaVersion, ix.MediaType, ix.Manifests = 2, mediaTypeOCIIndex, []descriptor{}
	for _, e := range entries {
		d := e.desc
		d.Annotations = e.anns
		ix.Manifests = append(ix.Manifests, d)
	}
	return mustJSON(t, ix)
}

// ociLayout is an OCI image layout tar of images under full reference names.
func ociLayout(t testing.TB, images map[string]*testImage) []byte {
	t.Helper()
	files := []file{{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}}
	var entries []named
	for _, ref := range sortedKeys(images) {
		img := images[ref]
		files = append(files, img.blobFiles()...)
		entries = append(entries, named{img.desc(), map[string]string{annotationImageName: ref}})
	}
	files = append(files, file{name: "index.json", data: indexJSON(t, entries...)})
	return tarOf(t, files)
}

// legacyEntry is one image of a hand-made docker save manifest.json.
type legacyEntry = testimage.LegacyManifest

// dockerLegacy is a docker save tar as Docker before 25 writes it
// (testimage.Legacy): <config hex>.json, then <id>/layer.tar (uncompressed),
// <id>/json, <id>/VERSION, then manifest.json and repositories. A layer
// shared with an earlier image is a symbolic link to its first copy.
func dockerLegacy(t testing.TB, images map[string]*testImage) []byte {
	t.Helper()
	var buf bytes.Buffer
	lw := testimage.NewLegacy(testimage.NewWriter(&buf))
	for _, ref := range sortedKeys(images) {
		img := images[ref]
		config, err := lw.Config(img.config.data)
		if err != nil {
			t.Fatal(err)
		}
		var layers []string
		for i, l := range img.layers {
			p, _, err := lw.Layer(digest.FromString(ref+fmt.Sprint(i)).Encoded(), l.data)
			if err != nil {
				t.Fatal(err)
			}
			layers = append(layers, p)
		}
		lw.Image(ref, config, layers)
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// dockerOCI is a docker save tar as Docker 25+ writes it: an OCI layout
// with a legacy manifest.json whose paths are blobs.
func dockerOCI(t testing.TB, images map[string]*testImage) []byte {
	t.Helper()
	return tarOf(t, dockerOCIFiles(t, images))
}

func dockerOCIFiles(t testing.TB, images map[string]*testImage) []file {
	t.Helper()
	files := []file{{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}}
	var entries []named
	var mf []legacyEntry
	for _, ref := range sortedKeys(images) {
		img := images[ref]
		files = append(files, img.blobFiles()...)
		entries = append(entries, named{img.desc(), map[string]string{annotationImageName: "docker.io/library/" + ref, annotationRefName: "1.0"}})
		e := legacyEntry{Config: img.config.path(), RepoTags: []string{ref}}
		for _, l := range img.layers {
			e.Layers = append(e.Layers, l.path())
		}
		mf = append(mf, e)
	}
	files = append(files,
		file{name: "index.json", data: indexJSON(t, entries...)},
		file{name: "manifest.json", data: mustJSON(t, mf)})
	return files
}

func sortedKeys(m map[string]*testImage) []string { return slices.Sorted(maps.Keys(m)) }

// readBytes reads an archive held in memory.
func readBytes(t testing.TB, b []byte) *Archive {
	t.Helper()
	a, err := Read(bytes.NewReader(b), Options{})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return a
}
