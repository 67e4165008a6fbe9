package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/internal/testimage"
	"github.com/trustd/trustd/plugin/local"
	"github.com/trustd/trustd/test/harness"
	"github.com/trustd/trustd/verify"
)

// archiveImages are the images of the archive tests.
type archiveImages struct {
	reg string // the registry's host:port/demo/
	// signed is signed as demo/hello:1.0 and pushed, so that sync caches
	// its manifest; unpushed is signed as demo/unpushed:1.0 only.
	signed, unpushed, unsigned v1.Image
	// index is a two-platform index signed as demo/multi:1; reindexed has
	// the same platform manifests under an index nobody signed.
	index, reindexed v1.ImageIndex
	amd64, arm64     v1.Image
	// platformOnly is a platform manifest signed by itself as demo/plat:1.
	platformOnly v1.Image
}

// testImage is a small random image for arch, with a label of its own.
func testImage(t *testing.T, name, arch string) v1.Image {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.Labels = map[string]string{harness.ImageLabel: name}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func indexOf(t *testing.T, annotation string, imgs ...v1.Image) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: cf.Architecture}}})
	}
	idx := mutate.AppendManifests(empty.Index, adds...)
	return mutate.Annotations(idx, map[string]string{"built-by": annotation}).(v1.ImageIndex)
}

func rawIndex(t *testing.T, idx v1.ImageIndex) (digest.Digest, []byte) {
	t.Helper()
	raw, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.FromBytes(raw), raw
}

// archiveFixture is a synced, offline trustd configuration for a loopback
// registry that trusts demo/hello:1.0, demo/unpushed:1.0, demo/multi:1 (an
// index) and demo/plat:1 (a platform manifest), and the images behind them.
func archiveFixture(t *testing.T) (string, *archiveImages) {
	t.Helper()
	host := harness.StartRegistry(t)
	imgs := &archiveImages{
		reg:          host + "/demo/",
		signed:       testImage(t, "hello", "amd64"),
		unpushed:     testImage(t, "unpushed", "amd64"),
		unsigned:     testImage(t, "unsigned", "amd64"),
		amd64:        testImage(t, "multi", "amd64"),
		arm64:        testImage(t, "multi", "arm64"),
		platformOnly: testImage(t, "plat", "amd64"),
	}
	imgs.index = indexOf(t, "signed", imgs.amd64, imgs.arm64)
	imgs.reindexed = indexOf(t, "someone else", imgs.amd64, imgs.arm64)

	repo := harness.NewTUFRepo(t)
	m, _ := harness.Push(t, imgs.reg+"hello:1.0", imgs.signed)
	_, raw := harness.ManifestOf(t, imgs.signed)
	if m != digest.FromBytes(raw) {
		t.Fatalf("pushed %s", m)
	}
	repo.SetTarget(imgs.reg+"hello:1.0", raw)
	_, raw = harness.ManifestOf(t, imgs.unpushed)
	repo.SetTarget(imgs.reg+"unpushed:1.0", raw)
	_, raw = rawIndex(t, imgs.index)
	repo.SetTarget(imgs.reg+"multi:1", raw)
	_, raw = harness.ManifestOf(t, imgs.platformOnly)
	repo.SetTarget(imgs.reg+"plat:1", raw)
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	cfg := writeTUFPolicy(t, t.TempDir(), repo.URL(), repo.RootPath(), host)
	if code, out, errs := trustd(t, "sync", "--config", cfg); code != 0 {
		t.Fatalf("sync: %d %s %s", code, out, errs)
	}
	if err := repo.Stop(); err != nil { // offline from here on
		t.Fatal(err)
	}
	return cfg, imgs
}

// cacheManifest puts a signed manifest or index into trustd's manifest
// cache, as the daemon does when it sees it in containerd's content store.
func cacheManifest(t *testing.T, cfg string, raw []byte) {
	t.Helper()
	mc := &cache.ManifestCache{Dir: filepath.Join(filepath.Dir(cfg), "cache", "manifests")}
	if err := mc.Put(digest.FromBytes(raw), raw); err != nil {
		t.Fatal(err)
	}
}

// layoutTar writes an OCI layout holding idx (named ref) to a tar; drop
// removes blobs from it, as a single-platform save does.
func layoutTar(t *testing.T, path, ref string, idx v1.ImageIndex, drop ...v1.Image) {
	t.Helper()
	var hashes []v1.Hash
	for _, img := range drop {
		h, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h)
	}
	var buf bytes.Buffer
	entries := []testimage.Layout{{Index: idx, Annotations: map[string]string{"io.containerd.image.name": ref}}}
	if err := testimage.OCILayout(&buf, entries, hashes...); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rewriteTar copies the tar at src to dst, passing each file through fn.
func rewriteTar(t *testing.T, src, dst string, fn func(name string, data []byte) []byte) {
	t.Helper()
	in, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	out, err := testimage.Rewrite(in, fn)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func decodeDecisions(t *testing.T, out string) []verify.Decision {
	t.Helper()
	var ds []verify.Decision
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var d verify.Decision
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%v in %q", err, out)
		}
		ds = append(ds, d)
	}
	return ds
}

func TestCLIVerifyArchive(t *testing.T) {
	cfg, imgs := archiveFixture(t)
	reg := imgs.reg
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	signedManifest, _ := harness.ManifestOf(t, imgs.signed)
	unpushedConfig := harness.ConfigDigest(t, imgs.unpushed)
	_, unpushedRaw := harness.ManifestOf(t, imgs.unpushed)
	indexDigest, indexRaw := rawIndex(t, imgs.index)

	harness.DockerSaveTar(t, path("saved.tar"), map[string]v1.Image{reg + "hello:1.0": imgs.signed})
	harness.DockerSaveTar(t, path("unpushed.tar"), map[string]v1.Image{reg + "unpushed:1.0": imgs.unpushed})
	harness.DockerSaveTar(t, path("both.tar"), map[string]v1.Image{reg + "hello:1.0": imgs.signed, reg + "unsigned:1.0": imgs.unsigned})
	harness.OCILayoutTar(t, path("layout.tar"), map[string]v1.Image{reg + "hello:1.0": imgs.signed})
	harness.OCILayoutTar(t, path("unsigned.tar"), map[string]v1.Image{reg + "unsigned:1.0": imgs.unsigned})
	harness.OCILayoutTar(t, path("retagged.tar"), map[string]v1.Image{reg + "hello:2.0": imgs.signed})
	harness.OCILayoutTar(t, path("catchall.tar"), map[string]v1.Image{"quay.io/x/y:1": imgs.signed})
	layoutTar(t, path("multi.tar"), reg+"multi:1", imgs.index, imgs.arm64)
	layoutTar(t, path("reindexed.tar"), reg+"multi:1", imgs.reindexed)
	layoutTar(t, path("plat.tar"), reg+"plat:1", indexOf(t, "local", imgs.platformOnly))
	layerDigest := func(img v1.Image) string {
		ls, _ := img.Layers()
		d, _ := ls[0].Digest()
		return d.Hex
	}(imgs.signed)
	rewriteTar(t, path("layout.tar"), path("tampered.tar"), func(name string, data []byte) []byte {
		if strings.HasSuffix(name, layerDigest) {
			data = bytes.Clone(data)
			data[len(data)/2] ^= 1
		}
		return data
	})
	rewriteTar(t, path("saved.tar"), path("untagged.tar"), func(name string, data []byte) []byte {
		if name == "manifest.json" {
			return bytes.Replace(data, []byte(`"RepoTags":["`+reg+`hello:1.0"]`), []byte(`"RepoTags":null`), 1)
		}
		return data
	})
	// What `crane pull --format=oci` writes: an index.json without
	// org.opencontainers.image.ref.name.
	rewriteTar(t, path("layout.tar"), path("nameless.tar"), func(name string, data []byte) []byte {
		if name == "index.json" {
			var ix map[string]any
			if err := json.Unmarshal(data, &ix); err != nil {
				t.Fatal(err)
			}
			for _, m := range ix["manifests"].([]any) {
				delete(m.(map[string]any), "annotations")
			}
			data, _ = json.Marshal(ix)
		}
		return data
	})
	os.WriteFile(path("junk.tar"), []byte(strings.Repeat("not an archive", 100)), 0o644)

	type verdict struct {
		allowed bool
		want    []string // fragments of the reason
	}
	cases := []struct {
		name     string
		archive  string
		args     []string
		setup    func()
		code     int
		verdicts []verdict
	}{
		{name: "docker save of a signed image (manifest fetched at sync)", archive: "saved.tar", code: 0,
			verdicts: []verdict{{true, []string{"image config " + string(harness.ConfigDigest(t, imgs.signed)) + " matches"}}}},
		{name: "docker save of a signed image, signed manifest not cached", archive: "unpushed.tar", code: 1,
			verdicts: []verdict{{false, []string{"image config " + string(unpushedConfig), "cannot be matched"}}}},
		{name: "docker save of a signed image, signed manifest cached later", archive: "unpushed.tar", code: 0,
			setup:    func() { cacheManifest(t, cfg, unpushedRaw) },
			verdicts: []verdict{{true, []string{"image config " + string(unpushedConfig) + " matches"}}}},
		{name: "docker save of a signed and an unsigned image", archive: "both.tar", code: 1,
			verdicts: []verdict{{true, nil}, {false, []string{"demo/unsigned", "is not signed"}}}},
		{name: "OCI layout of a signed image", archive: "layout.tar", code: 0,
			verdicts: []verdict{{true, []string{"image digest matches", string(signedManifest)}}}},
		{name: "OCI layout of an unsigned image", archive: "unsigned.tar", code: 1,
			verdicts: []verdict{{false, []string{"demo/unsigned", "is not signed"}}}},
		{name: "signed image under an unsigned tag", archive: "retagged.tar", code: 1,
			verdicts: []verdict{{false, []string{`tag "2.0"`, "is not signed"}}}},
		{name: "signed image under a name the policy denies", archive: "catchall.tar", code: 1,
			verdicts: []verdict{{false, []string{"the rule denies quay.io/x/y"}}}},
		{name: "tampered layer", archive: "tampered.tar", code: 1,
			verdicts: []verdict{{false, []string{"archive: ", layerDigest, "does not hash to its name"}}}},
		{name: "untagged image", archive: "untagged.tar", code: 1,
			verdicts: []verdict{{false, []string{local.ReasonNoName}}}},
		{name: "OCI layout without a ref name", archive: "nameless.tar", code: 1,
			verdicts: []verdict{{false, []string{local.ReasonNoName, "--name REF"}}}},
		{name: "OCI layout without a ref name, named as it is loaded", archive: "nameless.tar", args: []string{"--name", reg + "hello:1.0"}, code: 0,
			verdicts: []verdict{{true, []string{"image digest matches", string(signedManifest)}}}},
		{name: "OCI layout without a ref name, loaded under an unsigned name", archive: "nameless.tar", args: []string{"--name", reg + "unsigned:1.0"}, code: 1,
			verdicts: []verdict{{false, []string{"demo/unsigned", "is not signed"}}}},
		{name: "signed index, one platform saved", archive: "multi.tar", code: 0,
			verdicts: []verdict{{true, []string{"image digest matches", string(indexDigest)}}}},
		{name: "unsigned index of signed platforms, signed index not cached", archive: "reindexed.tar", code: 1,
			verdicts: []verdict{{false, []string{"platform linux/amd64", "cannot be matched"}}}},
		{name: "unsigned index of signed platforms, signed index cached", archive: "reindexed.tar", code: 0,
			setup:    func() { cacheManifest(t, cfg, indexRaw) },
			verdicts: []verdict{{true, []string{"each of the 2 platforms", "is signed"}}}},
		{name: "platform manifest signed by itself, matched from the archive", archive: "plat.tar", code: 0,
			verdicts: []verdict{{true, []string{"matches"}}}},
		{name: "namespace", archive: "layout.tar", args: []string{"--namespace", "prod"}, code: 0,
			verdicts: []verdict{{true, nil}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			args := append([]string{"verify", "--config", cfg, "--json", "--archive", path(tc.archive)}, tc.args...)
			code, out, errs := trustd(t, args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, out, errs)
			}
			ds := decodeDecisions(t, out)
			if len(ds) != len(tc.verdicts) {
				t.Fatalf("%d verdicts, want %d:\n%s", len(ds), len(tc.verdicts), out)
			}
			for i, v := range tc.verdicts {
				d := ds[i]
				t.Log(d.Message())
				if d.Allowed != v.allowed {
					t.Errorf("verdict %d: allowed=%v, want %v: %s", i, d.Allowed, v.allowed, d.Message())
				}
				for _, w := range v.want {
					if !strings.Contains(d.Reason, w) {
						t.Errorf("verdict %d: reason lacks %q: %s", i, w, d.Reason)
					}
				}
				if len(tc.args) > 0 && tc.args[0] == "--namespace" && d.Namespace != "prod" {
					t.Errorf("verdict %d: namespace %q", i, d.Namespace)
				}
			}
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", out, errs)
			}
		})
	}

	t.Run("text output", func(t *testing.T) {
		code, out, _ := trustd(t, "verify", "--config", cfg, "--archive", path("both.tar"))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 1 || len(lines) != 2 || !strings.HasPrefix(lines[0], "trustd: allowed "+reg+"hello:1.0") || !strings.HasPrefix(lines[1], "trustd: denied "+reg+"unsigned:1.0") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unreadable archive", []string{"--archive", path("junk.tar")}, "not a readable image archive"},
		{"missing archive", []string{"--archive", path("none.tar")}, "no such file"},
		{"archive and images", []string{"--archive", path("saved.tar"), "x:1"}, "takes no image arguments"},
		{"--name that is no reference", []string{"--archive", path("nameless.tar"), "--name", "Not A Ref"}, "--name: invalid image reference"},
		{"--name with no nameless image", []string{"--archive", path("layout.tar"), "--name", reg + "hello:1.0"}, "holds 0 images without a name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := trustd(t, append([]string{"verify", "--config", cfg}, tc.args...)...)
			if code != 2 || !strings.Contains(errs, tc.want) || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errs, tc.want)
			}
		})
	}
}
