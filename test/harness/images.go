package harness

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/internal/testimage"
)

// ImageLabel is the image config label holding a test image's name; it
// gives every test image its own config digest.
const ImageLabel = "org.trustd.e2e.image"

// epoch is the creation time of every file and image the harness builds, so
// that builds are reproducible.
var epoch = time.Unix(0, 0).UTC()

// BuildImage builds a single-layer OCI image holding test/images/hello as
// its entrypoint, printing message when it starts and then sleeping until
// SIGTERM. The same name and message give the same image, digests included;
// a different name or message gives a different config digest.
func BuildImage(t TB, name, message string) v1.Image {
	t.Helper()
	img, err := buildImage("hello", name, []string{message})
	if err != nil {
		t.Fatalf("build image %s: %v", name, err)
	}
	return img
}

var pauseImage = sync.OnceValues(func() (v1.Image, error) { return buildImage("pause", "pause", nil) })

// PauseImage is the sandbox image: test/images/pause, which sleeps until
// SIGTERM. StartContainerd imports it as SandboxImage.
func PauseImage(t TB) v1.Image {
	t.Helper()
	img, err := pauseImage()
	if err != nil {
		t.Fatalf("build pause image: %v", err)
	}
	return img
}

// buildImage builds the image of one of the programs in test/images.
func buildImage(program, label string, cmd []string) (v1.Image, error) {
	bins, err := imagePrograms()
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(bins[program])
	if err != nil {
		return nil, err
	}
	layerTar, err := rootfsTar("/"+program, bin)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "trustd test harness: " + program},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: epoch}
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Config = v1.Config{
		Entrypoint: []string{"/" + program},
		Cmd:        cmd,
		Env:        []string{"PATH=/"},
		Labels:     map[string]string{ImageLabel: label},
	}
	return mutate.ConfigFile(img, cf)
}

// rootfsTar is an uncompressed layer with the directories a container
// runtime mounts over and one executable at path.
func rootfsTar(path string, exe []byte) ([]byte, error) {
	return testimage.Tar(
		testimage.Entry{Name: "dev/", Dir: true},
		testimage.Entry{Name: "etc/", Dir: true},
		testimage.Entry{Name: "proc/", Dir: true, Mode: 0o555},
		testimage.Entry{Name: "sys/", Dir: true, Mode: 0o555},
		testimage.Entry{Name: "tmp/", Dir: true, Mode: 0o1777},
		testimage.Entry{Name: path[1:], Data: exe, Mode: 0o755},
	)
}

// Push pushes img to ref on a loopback registry (plain HTTP, no auth) and
// returns the manifest's digest and bytes: what a TUF target for ref signs.
//
// It speaks the OCI distribution API itself (monolithic blob uploads, then
// the manifest) rather than through go-containerregistry's remote package,
// whose credential helpers would add docker/cli to the module's dependencies.
func Push(t TB, ref string, img v1.Image) (digest.Digest, []byte) {
	t.Helper()
	if err := push(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ManifestOf(t, img)
}

func push(ref string, img v1.Image) error {
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		return err
	}
	base := fmt.Sprintf("http://%s/v2/%s", tag.RegistryStr(), tag.RepositoryStr())
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		if err := pushBlob(base, d.String(), l.Compressed); err != nil {
			return err
		}
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if err := pushBlob(base, cfgName.String(), func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(cfg)), nil }); err != nil {
		return err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	return httpDo(http.MethodPut, base+"/manifests/"+tag.TagStr(), string(mt), bytes.NewReader(raw), http.StatusCreated)
}

// pushBlob uploads a blob in one POST unless the repository has it.
func pushBlob(base, dgst string, open func() (io.ReadCloser, error)) error {
	if httpDo(http.MethodHead, base+"/blobs/"+dgst, "", nil, http.StatusOK) == nil {
		return nil
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return httpDo(http.MethodPost, base+"/blobs/uploads/?digest="+url.QueryEscape(dgst), "application/octet-stream", rc, http.StatusCreated)
}

// httpDo makes one request and wants status want.
func httpDo(method, u, contentType string, body io.Reader, want int) error {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// ManifestOf returns an image's manifest digest and bytes.
func ManifestOf(t TB, img v1.Image) (digest.Digest, []byte) {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return digest.FromBytes(raw), raw
}

// ConfigDigest returns an image's config digest: its CRI image ID.
func ConfigDigest(t TB, img v1.Image) digest.Digest {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatalf("config digest: %v", err)
	}
	return digest.Digest(h.String())
}

// DockerSaveTar writes images, by tag reference, to path in `docker save`'s
// legacy format (manifest.json with RepoTags). Importing it gives a new
// manifest (and manifest digest) but keeps each image's config digest.
func DockerSaveTar(t TB, path string, images map[string]v1.Image) {
	t.Helper()
	if err := writeFile(path, func(w io.Writer) error { return testimage.DockerSave(w, images) }); err != nil {
		t.Fatalf("docker save tar %s: %v", path, err)
	}
}

// OCILayoutTar writes images, by tag reference, to path as an OCI image
// layout tar, naming each with the annotations containerd's import reads
// (testimage.Named). The manifests keep their bytes, so their digests.
func OCILayoutTar(t TB, path string, images map[string]v1.Image) {
	t.Helper()
	var entries []testimage.Layout
	for ref, img := range images {
		e, err := testimage.Named(ref, img)
		if err != nil {
			t.Fatalf("OCI layout: %v", err)
		}
		entries = append(entries, e)
	}
	if err := writeFile(path, func(w io.Writer) error { return testimage.OCILayout(w, entries) }); err != nil {
		t.Fatalf("OCI layout tar %s: %v", path, err)
	}
}

// writeFile creates path and writes it with write.
func writeFile(path string, write func(io.Writer) error) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return write(f)
}

// TarDir writes the tree under dir (an OCI layout directory, as `cosign
// save --dir` writes it) to a tar file at path, as `tar -C dir -cf path .`.
func TarDir(t TB, dir, path string) {
	t.Helper()
	if err := writeFile(path, func(w io.Writer) error { return testimage.TarDir(w, dir) }); err != nil {
		t.Fatalf("tar %s: %v", dir, err)
	}
}
