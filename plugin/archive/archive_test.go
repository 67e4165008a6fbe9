package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/internal/testimage"
)

// wantImage is what a test expects of one image.
type wantImage struct {
	names    []string
	tags     []string
	manifest digest.Digest
	config   digest.Digest
}

func checkImages(t *testing.T, a *Archive, want []wantImage) {
	t.Helper()
	if len(a.Images) != len(want) {
		t.Fatalf("%d images, want %d: %+v", len(a.Images), len(want), a.Images)
	}
	for i, w := range want {
		got := a.Images[i]
		if !slices.Equal(got.Names, w.names) || !slices.Equal(got.Tags, w.tags) || got.ManifestDigest != w.manifest || got.ConfigDigest != w.config {
			t.Errorf("image %d:\n got names %q tags %q manifest %s config %s\nwant names %q tags %q manifest %s config %s",
				i, got.Names, got.Tags, got.ManifestDigest, got.ConfigDigest, w.names, w.tags, w.manifest, w.config)
		}
		if len(got.Problems) > 0 {
			t.Errorf("image %d: unexpected problems: %q", i, got.Problems)
		}
	}
}

func ggcrImage(t *testing.T, layers int) v1.Image {
	t.Helper()
	img, err := random.Image(2048, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func ggcrConfig(t *testing.T, img v1.Image) digest.Digest {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

func ggcrManifest(t *testing.T, img v1.Image) digest.Digest {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

// ggcrDockerSave writes images as go-containerregistry's tarball package
// does (legacy manifest.json, gzip layers, config named sha256:<hex>).
func ggcrDockerSave(t *testing.T, images map[string]v1.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := testimage.DockerSave(&buf, images); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ggcrLayout writes images as an OCI layout with go-containerregistry's
// layout package, each with its annotations, and tars it.
func ggcrLayout(t *testing.T, images []v1.Image, anns []map[string]string) []byte {
	t.Helper()
	entries := make([]testimage.Layout, len(images))
	for i, img := range images {
		entries[i] = testimage.Layout{Image: img, Annotations: anns[i]}
	}
	var buf bytes.Buffer
	if err := testimage.OCILayout(&buf, entries); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadDockerSaveGGCR(t *testing.T) {
	a1, a2 := ggcrImage(t, 2), ggcrImage(t, 3)
	b := ggcrDockerSave(t, map[string]v1.Image{"example.com/a:1": a1, "example.com/b:2": a2})
	a := readBytes(t, b)
	if a.Format != FormatDocker || a.Size != int64(len(b)) || len(a.Problems) > 0 {
		t.Fatalf("format %s size %d/%d problems %q", a.Format, a.Size, len(b), a.Problems)
	}
	checkImages(t, a, []wantImage{
		{names: []string{"example.com/a:1"}, config: ggcrConfig(t, a1)},
		{names: []string{"example.com/b:2"}, config: ggcrConfig(t, a2)},
	})
}

func TestReadDockerLegacy(t *testing.T) {
	x := newTestImage(t, "x", 2, 4096, false)
	y := newTestImage(t, "x", 3, 4096, false) // shares x's two layers: symbolic links
	z := newTestImage(t, "z", 1, 100, false)
	b := dockerLegacy(t, map[string]*testImage{"x:1": x, "quay.io/y/y:2": y, "": z})
	if !bytes.Contains(b, []byte("../")) {
		t.Fatal("the archive has no symbolic link to a shared layer")
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{{"tar", b}, {"tar.gz", gzipBytes(t, b)}} {
		t.Run(tc.name, func(t *testing.T) {
			a := readBytes(t, tc.data)
			if a.Format != FormatDocker {
				t.Fatalf("format %s", a.Format)
			}
			checkImages(t, a, []wantImage{
				{names: nil, config: z.config.d}, // untagged: docker save <image ID>
				{names: []string{"quay.io/y/y:2"}, config: y.config.d},
				{names: []string{"x:1"}, config: x.config.d},
			})
		})
	}
}

func TestReadDockerOCI(t *testing.T) {
	x := newTestImage(t, "x", 2, 1000, false)
	y := newTestImage(t, "y", 1, 1000, true)
	a := readBytes(t, dockerOCI(t, map[string]*testImage{"x:1.0": x, "y:1.0": y}))
	if a.Format != FormatDockerOCI {
		t.Fatalf("format %s", a.Format)
	}
	checkImages(t, a, []wantImage{
		{names: []string{"docker.io/library/x:1.0", "x:1.0"}, tags: []string{"1.0"}, manifest: x.manifest.d, config: x.config.d},
		{names: []string{"docker.io/library/y:1.0", "y:1.0"}, tags: []string{"1.0"}, manifest: y.manifest.d, config: y.config.d},
	})
	if b, ok := a.Blob(x.manifest.d); !ok || !bytes.Equal(b, x.manifest.data) {
		t.Errorf("Blob(%s) = %q, %v", x.manifest.d, b, ok)
	}
	if _, ok := a.Blob(x.config.d); ok {
		t.Error("Blob returns a config; it holds manifests and indexes only")
	}
}

func TestReadOCILayout(t *testing.T) {
	full, tagged, bare := ggcrImage(t, 1), ggcrImage(t, 2), ggcrImage(t, 1)
	b := ggcrLayout(t, []v1.Image{full, tagged, bare}, []map[string]string{
		{annotationImageName: "registry.example/full:1", annotationRefName: "1"},
		{annotationRefName: "registry.example/tagged:2"}, // a ref name may be a full reference
		{annotationRefName: "3"},                         // or only a tag
	})
	a := readBytes(t, b)
	if a.Format != FormatOCI {
		t.Fatalf("format %s", a.Format)
	}
	checkImages(t, a, []wantImage{
		{names: []string{"registry.example/full:1"}, tags: []string{"1"}, manifest: ggcrManifest(t, full), config: ggcrConfig(t, full)},
		{names: []string{"registry.example/tagged:2"}, manifest: ggcrManifest(t, tagged), config: ggcrConfig(t, tagged)},
		{tags: []string{"3"}, manifest: ggcrManifest(t, bare), config: ggcrConfig(t, bare)},
	})
}

// multiPlatform is an index of amd64, arm64 and an attestation; the
// archive holds the index and the platforms listed in present.
func multiPlatform(t testing.TB, present ...string) ([]byte, blob, map[string]*testImage) {
	t.Helper()
	imgs := map[string]*testImage{
		"amd64":   newPlatformImage(t, "mp", 1, 500, true, "amd64"),
		"arm64":   newPlatformImage(t, "mp-arm", 1, 500, true, "arm64"),
		"unknown": newPlatformImage(t, "att", 1, 50, false, "unknown"),
	}
	att := imgs["unknown"].desc()
	att.Platform = &platformJSON{OS: "unknown", Architecture: "unknown"}
	att.Annotations = map[string]string{annotationRefType: refTypeAttestation}
	index := newBlob(indexJSON(t, named{desc: imgs["amd64"].desc()}, named{desc: imgs["arm64"].desc()}, named{desc: att, anns: att.Annotations}))
	files := []file{{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}, {name: index.path(), data: index.data}}
	for _, p := range present {
		files = append(files, imgs[p].blobFiles()...)
	}
	files = append(files, file{name: "index.json", data: indexJSON(t, named{index.desc(mediaTypeOCIIndex), map[string]string{annotationImageName: "example.com/mp:1"}})})
	return tarOf(t, files), index, imgs
}

func TestReadMultiPlatform(t *testing.T) {
	t.Run("one platform saved", func(t *testing.T) {
		b, index, imgs := multiPlatform(t, "amd64")
		a := readBytes(t, b)
		checkImages(t, a, []wantImage{{names: []string{"example.com/mp:1"}, manifest: index.d, config: imgs["amd64"].config.d}})
		want := []Platform{
			{Manifest: imgs["amd64"].manifest.d, Config: imgs["amd64"].config.d, Platform: "linux/amd64", Present: true, Complete: true},
			{Manifest: imgs["arm64"].manifest.d, Platform: "linux/arm64"},
			{Manifest: imgs["unknown"].manifest.d, Platform: "unknown/unknown", Attestation: true},
		}
		if got := a.Images[0].Platforms; !slices.Equal(got, want) {
			t.Errorf("platforms:\n got %+v\nwant %+v", got, want)
		}
		if _, ok := a.Blob(index.d); !ok {
			t.Error("the index is not among the archive's blobs")
		}
	})
	t.Run("all platforms saved", func(t *testing.T) {
		b, index, _ := multiPlatform(t, "amd64", "arm64", "unknown")
		a := readBytes(t, b)
		// Two runnable platforms: no single config digest.
		checkImages(t, a, []wantImage{{names: []string{"example.com/mp:1"}, manifest: index.d}})
		for _, p := range a.Images[0].Platforms {
			if !p.Present || !p.Complete {
				t.Errorf("platform %+v not complete", p)
			}
		}
	})
	t.Run("no platform saved", func(t *testing.T) {
		b, _, _ := multiPlatform(t, "unknown")
		a := readBytes(t, b)
		wantProblems(t, a.Images[0], "none of the 3 manifests")
	})
}

func wantProblems(t *testing.T, img Image, fragments ...string) {
	t.Helper()
	all := strings.Join(img.Problems, "\n")
	if len(img.Problems) == 0 {
		t.Fatalf("no problem reported for %q, want %q", img.Names, fragments)
	}
	for _, f := range fragments {
		if !strings.Contains(all, f) {
			t.Errorf("problems lack %q:\n%s", f, all)
		}
	}
}

// edit returns files with the entry named name changed by fn (removed
// when fn returns nil).
func edit(files []file, name string, fn func(file) *file) []file {
	var out []file
	for _, f := range files {
		if f.name == name {
			if g := fn(f); g != nil {
				out = append(out, *g)
			}
			continue
		}
		out = append(out, f)
	}
	return out
}

func replaceData(data []byte) func(file) *file {
	return func(f file) *file { f.data = data; return &f }
}

func TestReadTampered(t *testing.T) {
	x := newTestImage(t, "x", 2, 2000, false)
	other := newTestImage(t, "other", 2, 2000, false)
	gz := newTestImage(t, "gz", 1, 2000, true)
	ociFiles := func(img *testImage) []file {
		return append(append([]file{{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}}, img.blobFiles()...),
			file{name: "index.json", data: indexJSON(t, named{img.desc(), map[string]string{annotationImageName: "example.com/x:1"}})})
	}
	legacyFiles := func(img *testImage, layers ...blob) []file {
		if layers == nil {
			layers = img.layers
		}
		fs := []file{{name: img.config.d.Encoded() + ".json", data: img.config.data}}
		var paths []string
		for i, l := range layers {
			p := string(rune('a'+i)) + "/layer.tar"
			fs = append(fs, file{name: p, data: l.data})
			paths = append(paths, p)
		}
		return append(fs, file{name: "manifest.json", data: mustJSON(t, []legacyEntry{{Config: img.config.d.Encoded() + ".json", RepoTags: []string{"x:1"}, Layers: paths}})})
	}
	swapped := *x
	swapped.layers = []blob{x.layers[1], x.layers[0]}
	cfg := x.config.desc(mediaTypeOCIConfig)
	swapped.manifest = newBlob(mustJSON(t, manifestJSON{Config: &cfg, Layers: []descriptor{x.layers[1].desc(""), x.layers[0].desc("")}}))
	badSize := *x
	wrong := x.layers[0].desc("")
	wrong.Size++
	badSize.manifest = newBlob(mustJSON(t, manifestJSON{Config: &cfg, Layers: []descriptor{wrong, x.layers[1].desc("")}}))
	truncated := gz.layers[0].data[:len(gz.layers[0].data)-20]

	for _, tc := range []struct {
		name  string
		files []file
		want  []string
	}{
		{"legacy tampered layer", edit(legacyFiles(x), "b/layer.tar", replaceData(other.layers[1].data)),
			[]string{"layer 2 of 2 (b/layer.tar) does not match the image config", string(x.diffIDs[1]), "tampered layer"}},
		{"legacy layers reordered", legacyFiles(x, x.layers[1], x.layers[0]), []string{"layer 1 of 2", "layer 2 of 2"}},
		{"legacy tampered config", edit(legacyFiles(x), x.config.d.Encoded()+".json", replaceData(bytes.Replace(x.config.data, []byte(`"x"`), []byte(`"y"`), 1))),
			[]string{"does not hash to its name", "tampered config"}},
		{"legacy missing layer", edit(legacyFiles(x), "a/layer.tar", func(file) *file { return nil }), []string{"layer 1 of 2 (a/layer.tar) is not in the archive"}},
		{"legacy layer count", legacyFiles(x, x.layers[0]), []string{"lists 1 layers", "2 diff_ids"}},
		{"legacy corrupt gzip layer", edit(legacyFiles(gz), "a/layer.tar", replaceData(truncated)), []string{"cannot be decompressed"}},
		{"legacy symlink out of the archive", edit(legacyFiles(x), "a/layer.tar", func(f file) *file { f.link = "../../etc/passwd"; return &f }),
			[]string{"points outside the archive"}},
		{"legacy second manifest.json", append(legacyFiles(x), file{name: "manifest.json", data: mustJSON(t, []legacyEntry{{Config: x.config.d.Encoded() + ".json", RepoTags: []string{"evil:1"}, Layers: []string{"a/layer.tar", "b/layer.tar"}}})}),
			[]string{"the archive holds manifest.json more than once"}},
		{"legacy conflicting copies", append(legacyFiles(x), file{name: "./a/layer.tar", data: other.layers[0].data}),
			[]string{"a/layer.tar more than once"}},
		{"OCI tampered layer", edit(ociFiles(x), x.layers[0].path(), replaceData(other.layers[0].data)),
			[]string{x.layers[0].path() + " does not hash to its name", "layer 1 of 2 " + string(x.layers[0].d) + ": the archive's"}},
		{"OCI tampered manifest", edit(ociFiles(x), x.manifest.path(), replaceData(bytes.Replace(x.manifest.data, []byte(x.layers[1].d), []byte(other.layers[1].d), 1))),
			[]string{x.manifest.path() + " does not hash to its name", "manifest " + string(x.manifest.d)}},
		{"OCI tampered config", edit(ociFiles(x), x.config.path(), replaceData(other.config.data)),
			[]string{"config " + string(x.config.d) + ": the archive's " + x.config.path() + " has content " + string(other.config.d)}},
		{"OCI missing blob", edit(ociFiles(x), x.layers[1].path(), func(file) *file { return nil }),
			[]string{"layer 2 of 2 " + string(x.layers[1].d) + " is not in the archive"}},
		{"OCI missing manifest", edit(ociFiles(x), x.manifest.path(), func(file) *file { return nil }),
			[]string{"manifest " + string(x.manifest.d) + " is not in the archive"}},
		{"OCI layers swapped", append(ociFiles(&swapped)[:0:0], ociFiles(&swapped)...), []string{"does not match the image config"}},
		{"OCI wrong layer size", ociFiles(&badSize), []string{"is 3584 bytes in the archive, 3585 in its descriptor"}},
		{"OCI unreferenced tampered blob", append(ociFiles(x), file{name: other.layers[0].path(), data: x.layers[0].data}),
			[]string{other.layers[0].path() + " does not hash to its name"}},
		{"OCI path out of the archive", append(ociFiles(x), file{name: "../../x", data: []byte("x")}), []string{`entry "../../x" leaves the archive's root`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := readBytes(t, tarOf(t, tc.files))
			if len(a.Images) != 1 {
				t.Fatalf("%d images", len(a.Images))
			}
			wantProblems(t, a.Images[0], tc.want...)
			t.Logf("%s", strings.Join(a.Images[0].Problems, "\n"))
		})
	}
}

func TestReadMultiImageProblemsStayPerImage(t *testing.T) {
	good, bad := newTestImage(t, "good", 1, 100, false), newTestImage(t, "bad", 1, 100, false)
	files := []file{{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}}
	files = append(files, good.blobFiles()...)
	files = append(files, bad.blobFiles()[1:]...) // bad's layer is missing
	files = append(files, file{name: "index.json", data: indexJSON(t,
		named{good.desc(), map[string]string{annotationImageName: "example.com/good:1"}},
		named{bad.desc(), map[string]string{annotationImageName: "example.com/bad:1"}})})
	a := readBytes(t, tarOf(t, files))
	if len(a.Images) != 2 || len(a.Images[0].Problems) != 0 {
		t.Fatalf("images %+v", a.Images)
	}
	wantProblems(t, a.Images[1], "is not in the archive")
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestReadErrors(t *testing.T) {
	x := newTestImage(t, "x", 1, 100, false)
	valid := dockerLegacy(t, map[string]*testImage{"x:1": x})
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		r    io.Reader
		opts Options
		want error
		frag string
	}{
		{"empty", bytes.NewReader(nil), Options{}, ErrFormat, "neither an OCI image layout"},
		{"not a tar", strings.NewReader(strings.Repeat("not a tar archive ", 100)), Options{}, ErrFormat, ""},
		{"truncated", bytes.NewReader(valid[:700]), Options{}, ErrFormat, ""},
		{"no manifest", bytes.NewReader(tarOf(t, []file{{name: "a", data: []byte("a")}})), Options{}, ErrFormat, "neither"},
		{"pre-1.10 docker save", bytes.NewReader(tarOf(t, []file{{name: "repositories", data: []byte("{}")}})), Options{}, ErrFormat, "before Docker 1.10"},
		{"bad manifest.json", bytes.NewReader(tarOf(t, []file{{name: "manifest.json", data: []byte("[{]")}})), Options{}, ErrFormat, "manifest.json"},
		{"layout without index", bytes.NewReader(tarOf(t, []file{{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)}})), Options{}, ErrFormat, "index.json is missing"},
		{"layout version", bytes.NewReader(tarOf(t, []file{{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"9"}`)}})), Options{}, ErrFormat, "version"},
		{"too many entries", bytes.NewReader(valid), Options{MaxEntries: 2}, ErrLimit, "more than 2 files"},
		{"manifest.json too large", bytes.NewReader(valid), Options{MaxMetadataEntry: 10}, ErrLimit, "manifest.json"},
		{"reader error", io.MultiReader(bytes.NewReader(valid[:1024]), failingReader{boom}), Options{}, boom, "boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Read(tc.r, tc.opts)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.frag) {
				t.Fatalf("Read = %+v, %v; want %v containing %q", a, err, tc.want, tc.frag)
			}
		})
	}
}

func TestReadMetadataBudget(t *testing.T) {
	x, y := newTestImage(t, "x", 1, 100, false), newTestImage(t, "y", 1, 100, false)
	files := dockerOCIFiles(t, map[string]*testImage{"x:1": x, "y:1": y})
	// The archive's own files first, then room for some of the blobs only.
	n := len(files)
	files = append(files[n-2:], files[:n-2]...)
	a, err := Read(bytes.NewReader(tarOf(t, files)), Options{MaxMetadata: 1300})
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	for _, img := range a.Images {
		problems = append(problems, img.Problems...)
	}
	if !strings.Contains(strings.Join(problems, "\n"), "metadata exceeds 1300 bytes") {
		t.Fatalf("problems %q", problems)
	}
}

func TestReadProgress(t *testing.T) {
	x := newTestImage(t, "x", 3, 1<<20, false)
	b := dockerLegacy(t, map[string]*testImage{"x:1": x})
	var calls []int64
	a, err := Read(bytes.NewReader(b), Options{Progress: func(n int64) { calls = append(calls, n) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) < 3 || !slices.IsSorted(calls) || calls[len(calls)-1] != int64(len(b)) || a.Size != int64(len(b)) {
		t.Fatalf("progress %v, size %d of %d", calls, a.Size, len(b))
	}
}

// TestReadMemory: a large archive is streamed, not held.
func TestReadMemory(t *testing.T) {
	x := newTestImage(t, "x", 4, 8<<20, true)
	b := dockerLegacy(t, map[string]*testImage{"x:1": x})
	uncompressed := int64(4 * 8 << 20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	a, err := Read(bytes.NewReader(b), Options{})
	runtime.ReadMemStats(&after)
	if err != nil || len(a.Images[0].Problems) > 0 {
		t.Fatalf("%v %+v", err, a)
	}
	if alloc := int64(after.TotalAlloc - before.TotalAlloc); alloc > 8<<20 {
		t.Errorf("reading %d bytes (%d uncompressed) allocated %d bytes", len(b), uncompressed, alloc)
	}
}

// TestReadFanOut: metadata that names the same content many times (an
// index.json of one index many times, an index listing one manifest many
// times, a manifest.json of one image many times) is checked once, fast.
func TestReadFanOut(t *testing.T) {
	x := newTestImage(t, "x", 2, 100, false)
	var kids []named
	for range 2000 {
		kids = append(kids, named{desc: x.desc()})
	}
	index := newBlob(indexJSON(t, kids...))
	var tops []named
	for i := range 10000 {
		tops = append(tops, named{index.desc(mediaTypeOCIIndex), map[string]string{annotationImageName: fmt.Sprintf("example.com/x:%d", i)}})
	}
	var mf []legacyEntry
	for i := range 10000 {
		mf = append(mf, legacyEntry{Config: x.config.path(), RepoTags: []string{fmt.Sprintf("x:%d", i)}, Layers: []string{x.layers[0].path(), "missing"}})
	}
	files := append(x.blobFiles(),
		file{name: index.path(), data: index.data},
		file{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		file{name: "index.json", data: indexJSON(t, tops...)},
		file{name: "manifest.json", data: mustJSON(t, mf)})
	start := time.Now()
	a := readBytes(t, tarOf(t, files))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v", took)
	}
	// The legacy images are the index's platform: their names join it.
	if len(a.Images) != 10000 || len(a.Images[0].Names) != 10001 || len(a.Images[1].Names) != 1 {
		t.Fatalf("%d images, %d and %d names", len(a.Images), len(a.Images[0].Names), len(a.Images[1].Names))
	}
	if p := a.Images[1].Platforms; len(p) != 1 || !p[0].Complete {
		t.Errorf("platforms %+v", p)
	}
	wantProblems(t, a.Images[0], "layer 2 of 2 (missing) is not in the archive")
	if n := len(a.Images[0].Problems); n > maxImageProblems+1 {
		t.Errorf("%d problems listed", n)
	}
}

func zstdBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// TestReadZstd: zstd layers, in an archive itself zstd-compressed (two
// decompressors at once).
func TestReadZstd(t *testing.T) {
	x := newTestImage(t, "x", 2, 3000, false)
	files := []file{{name: "c.json", data: x.config.data}}
	for i, l := range x.layers {
		files = append(files, file{name: fmt.Sprintf("%d/layer.tar", i), data: zstdBytes(t, l.data)})
	}
	files = append(files, file{name: "manifest.json", data: mustJSON(t, []legacyEntry{{Config: "c.json", RepoTags: []string{"x:1"}, Layers: []string{"0/layer.tar", "1/layer.tar"}}})})
	b := tarOf(t, files)
	for name, data := range map[string][]byte{"tar": b, "tar.zst": zstdBytes(t, b)} {
		t.Run(name, func(t *testing.T) {
			checkImages(t, readBytes(t, data), []wantImage{{names: []string{"x:1"}, config: x.config.d}})
		})
	}
	t.Run("tampered", func(t *testing.T) {
		bad := slices.Clone(x.layers[1].data)
		bad[100] ^= 1
		files[2].data = zstdBytes(t, bad)
		a := readBytes(t, zstdBytes(t, tarOf(t, files)))
		wantProblems(t, a.Images[0], "layer 2 of 2 (1/layer.tar) does not match the image config")
	})
}
