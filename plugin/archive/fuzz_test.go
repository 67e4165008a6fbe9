package archive

import (
	"bytes"
	"testing"

	"github.com/opencontainers/go-digest"
)

// fuzzOptions are small limits, so that the fuzzer reaches them.
var fuzzOptions = Options{MaxMetadataEntry: 16 << 10, MaxMetadata: 64 << 10, MaxEntries: 64, maxUncompressed: 16 << 20}

// readChecked reads b and checks the bounds and invariants that hold for
// any input.
func readChecked(t *testing.T, b []byte) {
	s := newScanner(fuzzOptions.withDefaults())
	if err := s.scan(bytes.NewReader(b)); err != nil {
		return
	}
	if s.kept > fuzzOptions.MaxMetadata || len(s.entries) > fuzzOptions.MaxEntries {
		t.Fatalf("bounds exceeded: %d bytes kept, %d entries", s.kept, len(s.entries))
	}
	var kept int64
	for _, e := range s.entries {
		kept += int64(len(e.data))
		if e.data != nil && int64(len(e.data)) > fuzzOptions.MaxMetadataEntry {
			t.Fatalf("%s: %d bytes kept", e.name, len(e.data))
		}
	}
	if kept != s.kept {
		t.Fatalf("kept %d bytes, accounted %d", kept, s.kept)
	}
	a, err := s.analyze()
	if err != nil {
		return
	}
	if a.Size != int64(len(b)) && a.Size > int64(len(b)) {
		t.Fatalf("size %d of %d", a.Size, len(b))
	}
	for d, data := range a.blobs {
		if d.Algorithm().FromBytes(data) != d {
			t.Fatalf("blob %s does not hash to its digest", d)
		}
	}
	for _, img := range a.Images {
		if len(img.Problems) > 0 {
			continue
		}
		// An image without problems has all its metadata in the archive.
		if img.ManifestDigest != "" {
			if _, ok := a.Blob(img.ManifestDigest); !ok {
				t.Fatalf("image %q without problems: manifest %s not in the archive", img.Names, img.ManifestDigest)
			}
		} else if img.ConfigDigest == "" {
			t.Fatalf("image %q without problems has neither manifest nor config", img.Names)
		}
	}
}

// seedArchives are small valid archives of every form.
func seedArchives(f *testing.F) [][]byte {
	x := newTestImage(f, "x", 1, 64, false)
	y := newTestImage(f, "y", 2, 64, true)
	mp, _, _ := multiPlatform(f, "amd64")
	legacy := dockerLegacy(f, map[string]*testImage{"x:1": x, "y:1": y, "": x})
	return [][]byte{
		legacy,
		gzipBytes(f, legacy),
		dockerOCI(f, map[string]*testImage{"x:1": x, "y:1": y}),
		ociLayout(f, map[string]*testImage{"example.com/x:1": x}),
		mp,
	}
}

// FuzzRead: no input makes Read panic or exceed its memory bounds, and
// what it reports is consistent.
func FuzzRead(f *testing.F) {
	for _, b := range seedArchives(f) {
		f.Add(b)
	}
	f.Fuzz(readChecked)
}

// FuzzReadMetadata fuzzes the JSON an archive holds (tar headers stay
// valid, blobs stay content-addressed, so the fuzzer reaches the analysis).
func FuzzReadMetadata(f *testing.F) {
	x := newTestImage(f, "x", 1, 64, true)
	mf := mustJSON(f, []legacyEntry{{Config: x.config.path(), RepoTags: []string{"x:1"}, Layers: []string{x.layers[0].path()}}})
	ix := indexJSON(f, named{x.desc(), map[string]string{annotationImageName: "x:1"}})
	f.Add(ix, mf, x.manifest.data, x.config.data, x.layers[0].data)
	_, index, imgs := multiPlatform(f, "amd64")
	f.Add(indexJSON(f, named{index.desc(mediaTypeOCIIndex), nil}), []byte("[]"), index.data, imgs["amd64"].manifest.data, imgs["amd64"].config.data)
	f.Fuzz(func(t *testing.T, index, manifest, m, c, l []byte) {
		files := []file{{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}, {name: "index.json", data: index}, {name: "manifest.json", data: manifest}}
		for _, b := range [][]byte{m, c, l} {
			files = append(files, file{name: "blobs/sha256/" + digest.FromBytes(b).Encoded(), data: b})
		}
		readChecked(t, tarOf(t, files))
	})
}
