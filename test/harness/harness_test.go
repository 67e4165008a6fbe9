package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveBuildDir()
	os.Exit(code)
}

// TestToolsScriptAgrees checks that test/tools.sh installs the tools where
// the harness looks for them, at the versions of test/versions.env.
func TestToolsScriptAgrees(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("TRUSTD_E2E_CACHE", cache)
	t.Setenv("TRUSTD_E2E_CONTAINERD_VERSION", "")
	pinned, err := ReadVersions()
	if err != nil {
		t.Fatal(err)
	}
	for _, override := range append([]string{""}, pinned.Matrix...) {
		t.Run("containerd="+override, func(t *testing.T) {
			t.Setenv("TRUSTD_E2E_CONTAINERD_VERSION", override)
			root, err := ModuleRoot()
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("bash", filepath.Join(root, "test/tools.sh"), "--paths").CombinedOutput()
			if err != nil {
				t.Fatalf("tools.sh --paths: %v\n%s", err, out)
			}
			tools, err := FindTools()
			if err != nil {
				t.Fatal(err)
			}
			if override != "" && tools.Versions.Containerd != override {
				t.Errorf("containerd version %s, want the override %s", tools.Versions.Containerd, override)
			}
			tufjs, err := TUFJSDir()
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("CONTAINERD_BIN=%s\nRUNC_BIN=%s\nKUBELET_BIN=%s\nCRICTL_BIN=%s\nDOCKERD_BIN=%s\nTUFJS_DIR=%s\nCOSIGN_BIN=%s\n",
				filepath.Dir(tools.Containerd), filepath.Dir(tools.Runc), filepath.Dir(tools.Kubelet), filepath.Dir(tools.Crictl), filepath.Dir(tools.Dockerd), tufjs, filepath.Dir(tools.Cosign))
			if string(out) != want {
				t.Errorf("tools.sh --paths:\n%s\nharness:\n%s", out, want)
			}
		})
	}
}

func TestParseEnvFile(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
		wantErr  bool
	}{
		{name: "pins", in: "# c\n\nA=v1\nB=v2\n", want: map[string]string{"A": "v1", "B": "v2"}},
		{name: "quotes", in: "A=\"v1\"\n", wantErr: true},
		{name: "expansion", in: "A=$B\n", wantErr: true},
		{name: "no equals", in: "A\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseEnvFile("versions.env", []byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseVersions(t *testing.T) {
	const clients = "KUBELET_VERSION=v1.36.3\nCRICTL_VERSION=v1.37.0\nDOCKERD_VERSION=v2.0.0-beta.24\n"
	const pins = "CONTAINERD_VERSION=v2.4.2\nRUNC_VERSION=v1.5.2\n" + clients
	for _, tc := range []struct {
		name, in, override string
		want               Versions
		wantErr            bool
	}{
		{name: "matrix", in: pins + "CONTAINERD_MATRIX=v2.2.9,v2.3.7,v2.4.2\n",
			want: Versions{Containerd: "v2.4.2", Matrix: []string{"v2.2.9", "v2.3.7", "v2.4.2"}, Runc: "v1.5.2", Kubelet: "v1.36.3", Crictl: "v1.37.0", Dockerd: "v2.0.0-beta.24"}},
		{name: "no matrix: the full suite's alone", in: pins,
			want: Versions{Containerd: "v2.4.2", Matrix: []string{"v2.4.2"}, Runc: "v1.5.2", Kubelet: "v1.36.3", Crictl: "v1.37.0", Dockerd: "v2.0.0-beta.24"}},
		{name: "override replaces both", in: pins + "CONTAINERD_MATRIX=v2.2.9,v2.4.2\n", override: "v2.3.7",
			want: Versions{Containerd: "v2.3.7", Matrix: []string{"v2.3.7"}, Runc: "v1.5.2", Kubelet: "v1.36.3", Crictl: "v1.37.0", Dockerd: "v2.0.0-beta.24"}},
		{name: "bad override", in: pins, override: "../v2.3.7", wantErr: true},
		{name: "twice", in: pins + "CONTAINERD_MATRIX=v2.2.9,v2.2.9\n", wantErr: true},
		{name: "empty entry", in: pins + "CONTAINERD_MATRIX=v2.2.9,,v2.4.2\n", wantErr: true},
		{name: "not a release", in: pins + "CONTAINERD_MATRIX=v2.2,main\n", wantErr: true},
		{name: "no runc", in: "CONTAINERD_VERSION=v2.4.2\n" + clients, wantErr: true},
		{name: "no kubelet", in: "CONTAINERD_VERSION=v2.4.2\nRUNC_VERSION=v1.5.2\nCRICTL_VERSION=v1.37.0\n", wantErr: true},
		{name: "crictl not a release", in: pins + "CRICTL_VERSION=latest\n", wantErr: true},
		{name: "no dockerd", in: "CONTAINERD_VERSION=v2.4.2\nRUNC_VERSION=v1.5.2\nKUBELET_VERSION=v1.36.3\nCRICTL_VERSION=v1.37.0\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseVersions("versions.env", []byte(tc.in), tc.override)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReleaseOf(t *testing.T) {
	for _, tc := range []struct {
		version           string
		validation, image bool
		configVersion     int
		wantErr           bool
	}{
		{version: "v2.1.5", configVersion: 3},
		{version: "v2.2.9", validation: true, configVersion: 3},
		{version: "2.2.9+unknown", validation: true, configVersion: 3},
		{version: "v2.3.7", validation: true, configVersion: 4},
		{version: "v2.4.2", validation: true, image: true, configVersion: 4},
		{version: "v3.0.0", validation: true, image: true, configVersion: 4},
		{version: "v1.7.27", wantErr: true},
		{version: "main", wantErr: true},
	} {
		r, err := ReleaseOf(tc.version)
		if (err != nil) != tc.wantErr {
			t.Errorf("ReleaseOf(%q): err = %v, want error %v", tc.version, err, tc.wantErr)
			continue
		}
		if tc.wantErr {
			continue
		}
		if r.NRIValidation != tc.validation || r.NRIImage != tc.image || r.ConfigVersion != tc.configVersion {
			t.Errorf("ReleaseOf(%q) = %+v, want validation %v, image %v, config version %d", tc.version, r, tc.validation, tc.image, tc.configVersion)
		}
	}
	for _, tc := range []struct {
		pinned, reported string
		same             bool
	}{
		{"v2.2.9", "v2.2.9", true},
		{"v2.2.9", "2.2.9+unknown", true},
		{"v2.2.9", "v2.2.90", false},
		{"v2.2.9", "v2.3.7", false},
	} {
		if got := sameRelease(tc.pinned, tc.reported); got != tc.same {
			t.Errorf("sameRelease(%q, %q) = %v, want %v", tc.pinned, tc.reported, got, tc.same)
		}
	}
}

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"nginx":                         "docker.io/library/nginx:latest",
		"nginx:1.25":                    "docker.io/library/nginx:1.25",
		"corp/app:2":                    "docker.io/corp/app:2",
		"127.0.0.1:5000/demo/hello:1.0": "127.0.0.1:5000/demo/hello:1.0",
		"localhost/trustd-e2e/pause:1":  "localhost/trustd-e2e/pause:1",
	} {
		if got, err := NormalizeRef(in); err != nil || got != want {
			t.Errorf("NormalizeRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestBuildImage checks that test images are reproducible and that each
// name or message gets its own config digest.
func TestBuildImage(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	a := BuildImage(t, "a", "hello a")
	d1, _ := ManifestOf(t, a)
	d2, _ := ManifestOf(t, BuildImage(t, "a", "hello a"))
	if d1 != d2 {
		t.Errorf("same name and message, different manifests %s and %s", d1, d2)
	}
	seen := map[digest.Digest]string{}
	for name, img := range map[string]v1.Image{
		"a":               a,
		"other name":      BuildImage(t, "b", "hello a"),
		"other message":   BuildImage(t, "a", "hello c"),
		"the pause image": PauseImage(t),
	} {
		d := ConfigDigest(t, img)
		if other, dup := seen[d]; dup {
			t.Errorf("images %q and %q share config digest %s", name, other, d)
		}
		seen[d] = name
	}
}

// TestTUFRepo loads the served metadata back with go-tuf's trustedmetadata,
// the verification a TUF client does, through a publish, a delegation, a
// removal and a server restart.
func TestTUFRepo(t *testing.T) {
	repo := NewTUFRepo(t)
	if !strings.HasPrefix(repo.URL(), "http://127.0.0.1:") || !strings.HasSuffix(repo.URL(), "/") {
		t.Fatalf("URL() = %q, want http://127.0.0.1:PORT/.../", repo.URL())
	}
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
	team := []byte(`{"schemaVersion":2,"team":true}`)
	const (
		top      = "127.0.0.1:5000/demo/hello:1.0"
		teamName = "127.0.0.1:5000/team/app:2"
	)
	repo.SetTarget(top, manifest)
	repo.AddDelegation("team", []string{"127.0.0.1:5000/team/*"})
	repo.SetDelegatedTarget("team", teamName, team)
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}

	trusted := loadTUF(t, repo, 2)
	assertTarget(t, trusted.Targets["targets"].Signed.Targets[top], manifest)
	if _, err := trusted.UpdateDelegatedTargets(fetch(t, repo.URL()+"team.json"), "team", "targets"); err != nil {
		t.Fatalf("delegated targets: %v", err)
	}
	assertTarget(t, trusted.Targets["team"].Signed.Targets[teamName], team)

	repo.RemoveTarget(top)
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	trusted = loadTUF(t, repo, 3)
	if tf, ok := trusted.Targets["targets"].Signed.Targets[top]; ok {
		t.Errorf("removed target still signed: %+v", tf)
	}

	// A client looks for the next root as <version+1>.root.json.
	if code := httpStatus(t, repo.URL()+"2.root.json"); code != http.StatusNotFound {
		t.Errorf("2.root.json: status %d, want 404", code)
	}
	if code := httpStatus(t, repo.URL()); code != http.StatusNotFound {
		t.Errorf("directory listing: status %d, want 404", code)
	}

	url := repo.URL()
	if err := repo.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(url + "timestamp.json"); err == nil {
		t.Errorf("TUF server still serving after Stop")
	}
	if err := repo.Start(); err != nil {
		t.Fatal(err)
	}
	if repo.URL() != url {
		t.Errorf("URL after restart %s, want %s", repo.URL(), url)
	}
	loadTUF(t, repo, 3)
}

// loadTUF verifies the repository's top-level metadata as a client would,
// from the pinned root, and checks the targets version.
func loadTUF(t *testing.T, repo *TUFRepo, targetsVersion int64) *trustedmetadata.TrustedMetadata {
	t.Helper()
	root, err := os.ReadFile(repo.RootPath())
	if err != nil {
		t.Fatal(err)
	}
	if served := fetch(t, repo.URL()+"1.root.json"); string(served) != string(root) {
		t.Errorf("served 1.root.json differs from RootPath()")
	}
	trusted, err := trustedmetadata.New(root)
	if err != nil {
		t.Fatalf("root: %v", err)
	}
	if _, err := trusted.UpdateTimestamp(fetch(t, repo.URL()+"timestamp.json")); err != nil {
		t.Fatalf("timestamp: %v", err)
	}
	if _, err := trusted.UpdateSnapshot(fetch(t, repo.URL()+"snapshot.json"), false); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	targets, err := trusted.UpdateTargets(fetch(t, repo.URL()+"targets.json"))
	if err != nil {
		t.Fatalf("targets: %v", err)
	}
	if targets.Signed.Version != targetsVersion {
		t.Errorf("targets version %d, want %d", targets.Signed.Version, targetsVersion)
	}
	return trusted
}

func assertTarget(t *testing.T, tf interface {
	VerifyLengthHashes([]byte) error
}, manifest []byte) {
	t.Helper()
	if tf == nil {
		t.Fatal("target missing")
	}
	if err := tf.VerifyLengthHashes(manifest); err != nil {
		t.Errorf("target does not match the manifest: %v", err)
	}
}

func fetch(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestStartTrustdNotify runs a stand-in for `trustd run` that speaks
// sd_notify, through StartTrustd, WaitLog and Stop.
func TestStartTrustdNotify(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	bin := filepath.Join(t.TempDir(), "fakenotify")
	if err := goBuild(nil, "-o", bin, "./test/harness/testdata/fakenotify"); err != nil {
		t.Fatal(err)
	}
	td := StartTrustd(t, bin, "/nonexistent/policy.toml", "TRUSTD_TEST=1")
	line, err := td.WaitLog(10*time.Second, `"msg":"decision"`, `"decision":"audit"`, "example.test/demo/hello:1.0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(td.Logs(), `"args":["run","--config","/nonexistent/policy.toml"]`) {
		t.Errorf("trustd not run as `run --config P`; log:\n%s", td.Logs())
	}
	if err := td.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := td.WaitLog(time.Second, `"msg":"stopped"`); err != nil {
		t.Errorf("no clean shutdown: %v", err)
	}
	if err := td.WaitNotification("STOPPING=1", time.Second); err != nil {
		t.Error(err)
	}
	if n := td.Notifications(); len(n) < 2 || n[0] != "STATUS=ready" || n[1] != "READY=1" {
		t.Errorf("notifications %q, want STATUS=ready, READY=1 first", n)
	}
	saved, err := os.ReadFile(td.LogPath)
	if err != nil || !strings.Contains(string(saved), line) {
		t.Errorf("log file %s lacks %q (err %v)", td.LogPath, line, err)
	}
}

// TestNode proves the containerd side of the harness without trustd: NRI
// on, an image pushed to the loopback registry pulled through CRI and run
// in a pod; images side-loaded from a docker save tar and an OCI layout run
// too; containers survive a containerd restart; and nothing is left once
// the node is cleaned up.
func TestNode(t *testing.T) {
	Prereqs(t)
	token := randomHex(6) // marks this test's containers among the machine's processes
	var nodeDir, cgroupParent string

	t.Run("run", func(t *testing.T) {
		reg := StartRegistry(t)
		start := time.Now()
		node := StartContainerd(t, Options{Registries: []string{reg}})
		nodeDir, cgroupParent = node.Dir, node.cgroupParent
		t.Logf("node up with the pause image in %v", time.Since(start).Round(time.Millisecond))
		if fi, err := os.Stat(node.NRISocket); err != nil || fi.Mode().Type() != os.ModeSocket {
			t.Fatalf("NRI socket %s: %v", node.NRISocket, err)
		}

		pushedRef := reg + "/demo/hello:1.0"
		pushed := BuildImage(t, "pushed", "pushed "+token)
		pushedDigest, _ := Push(t, pushedRef, pushed)
		start = time.Now()
		imageRef, err := node.PullImage(pushedRef)
		if err != nil {
			t.Fatalf("CRI pull %s: %v", pushedRef, err)
		}
		t.Logf("CRI pull in %v", time.Since(start).Round(time.Millisecond))
		if want := ConfigDigest(t, pushed); imageRef != string(want) {
			t.Errorf("pulled image ref %s, want the config digest %s", imageRef, want)
		}
		assertStoreDigest(t, node, pushedRef, pushedDigest, true)

		pod := node.RunPod(t, "hello", "default")
		start = time.Now()
		runContainer(t, node, pod, "pushed", pushedRef, "pushed "+token)
		t.Logf("create+start+log in %v", time.Since(start).Round(time.Millisecond))
		if len(cgroupsOf(cgroupParent)) == 0 {
			t.Errorf("no cgroup %s: pods do not use the node's cgroup parent", cgroupParent)
		}

		// Side-loaded: not in the registry at all.
		dir := t.TempDir()
		saved := BuildImage(t, "saved", "saved "+token)
		savedRef := reg + "/demo/saved:1.0"
		DockerSaveTar(t, filepath.Join(dir, "saved.tar"), map[string]v1.Image{savedRef: saved})
		node.ImportArchive(t, filepath.Join(dir, "saved.tar"), savedRef)
		savedDigest, _ := ManifestOf(t, saved)
		assertStoreDigest(t, node, savedRef, savedDigest, false) // docker save re-encodes the manifest
		if id, _ := node.ImageID(savedRef); id != string(ConfigDigest(t, saved)) {
			t.Errorf("imported image ID %s, want the config digest %s", id, ConfigDigest(t, saved))
		}
		runContainer(t, node, pod, "saved", savedRef, "saved "+token)

		layout := BuildImage(t, "layout", "layout "+token)
		layoutRef := reg + "/demo/layout:1.0"
		OCILayoutTar(t, filepath.Join(dir, "layout.tar"), map[string]v1.Image{layoutRef: layout})
		node.ImportArchive(t, filepath.Join(dir, "layout.tar"), layoutRef)
		layoutDigest, _ := ManifestOf(t, layout)
		assertStoreDigest(t, node, layoutRef, layoutDigest, true) // an OCI layout keeps it
		runContainer(t, node, pod, "layout", layoutRef, "layout "+token)

		if out, err := node.Ctr("images", "ls", "-q"); err != nil || !strings.Contains(out, layoutRef) {
			t.Errorf("ctr images ls: %v\n%s", err, out)
		}

		start = time.Now()
		if err := node.Restart(); err != nil {
			t.Fatal(err)
		}
		t.Logf("containerd restart in %v", time.Since(start).Round(time.Millisecond))
		runContainer(t, node, pod, "after-restart", pushedRef, "pushed "+token)
	})

	if nodeDir == "" {
		return
	}
	if _, err := os.Stat(nodeDir); !os.IsNotExist(err) {
		t.Errorf("node directory %s left behind: %v", nodeDir, err)
	}
	if pids := processesReferencing(nodeDir + "/"); len(pids) > 0 {
		t.Errorf("processes left behind: %v", pids)
	}
	if pids := processesReferencing(token); len(pids) > 0 {
		t.Errorf("containers left behind: %v", pids)
	}
	if m, _ := mountsUnder(nodeDir); len(m) > 0 {
		t.Errorf("mounts left behind: %v", m)
	}
	if cg := cgroupsOf(cgroupParent); len(cg) > 0 {
		t.Errorf("cgroups left behind: %v", cg)
	}
}

// cgroupsOf lists the hierarchies' directories for a cgroup path.
func cgroupsOf(path string) []string {
	var dirs []string
	for _, mp := range cgroupMounts() {
		if _, err := os.Stat(filepath.Join(mp, path)); err == nil {
			dirs = append(dirs, filepath.Join(mp, path))
		}
	}
	return dirs
}

// runContainer creates and starts a container from ref and waits for its
// message in the log.
func runContainer(t *testing.T, node *Node, pod *Pod, name, ref, message string) {
	t.Helper()
	id, err := node.CreateContainer(pod.ID, pod.Config, name, ref)
	if err != nil {
		t.Fatalf("create %s from %s: %v", name, ref, err)
	}
	if err := node.StartContainer(id); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	if err := node.WaitContainerLog(id, message, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// assertStoreDigest checks the manifest digest containerd stores for ref.
func assertStoreDigest(t *testing.T, node *Node, ref string, d digest.Digest, same bool) {
	t.Helper()
	img, err := node.Client.GetImage(context.Background(), ref)
	if err != nil {
		t.Fatalf("containerd image %s: %v", ref, err)
	}
	if got := img.Target().Digest; (got == d) != same {
		t.Errorf("%s: containerd has manifest %s, pushed/saved %s (want same: %v)", ref, got, d, same)
	}
}

// TestRequiredPluginRejects proves the fail-closed configuration without
// trustd: with RequireTrustd and no plugin connected, creation is rejected.
func TestRequiredPluginRejects(t *testing.T) {
	Prereqs(t)
	node := StartContainerd(t, Options{RequireTrustd: true})
	ref := "127.0.0.1:5000/demo/required:1.0"
	tar := filepath.Join(t.TempDir(), "required.tar")
	DockerSaveTar(t, tar, map[string]v1.Image{ref: BuildImage(t, "required", "must not run")})
	node.ImportArchive(t, tar, ref)

	pod := node.RunPod(t, "required", "default")
	id, err := node.CreateContainer(pod.ID, pod.Config, "required", ref)
	if err == nil {
		t.Fatalf("container %s created with no required plugin connected", id)
	}
	if want := `required plugin "trustd" not present`; !strings.Contains(err.Error(), want) {
		t.Errorf("creation error %q, want it to contain %q", err, want)
	}
}

// TestNodeCleanupAfterCrash kills containerd under running containers: the
// cleanup must still kill the shims and containers and release the mounts.
func TestNodeCleanupAfterCrash(t *testing.T) {
	Prereqs(t)
	token := randomHex(6)
	var node *Node
	t.Run("crash", func(t *testing.T) {
		node = StartContainerd(t, Options{})
		ref := "127.0.0.1:5000/demo/crash:1.0"
		tar := filepath.Join(t.TempDir(), "crash.tar")
		DockerSaveTar(t, tar, map[string]v1.Image{ref: BuildImage(t, "crash", "crash "+token)})
		node.ImportArchive(t, tar, ref)
		pod := node.RunPod(t, "crash", "default")
		runContainer(t, node, pod, "crash", ref, "crash "+token)
		node.proc.kill()
		if pids := processesReferencing(node.Dir + "/"); len(pids) == 0 {
			t.Fatalf("no shim outlived containerd: the test proves nothing")
		}
	})
	if pids := processesReferencing(node.Dir + "/"); len(pids) > 0 {
		t.Errorf("shims left behind: %v", pids)
	}
	if pids := processesReferencing(token); len(pids) > 0 {
		t.Errorf("containers left behind: %v", pids)
	}
	if m, _ := mountsUnder(node.Dir); len(m) > 0 {
		t.Errorf("mounts left behind: %v", m)
	}
	if cg := cgroupsOf(node.cgroupParent); len(cg) > 0 {
		t.Errorf("cgroups left behind: %v", cg)
	}
	if _, err := os.Stat(node.Dir); !os.IsNotExist(err) {
		t.Errorf("node directory left behind: %v", err)
	}
}

// fakeVerifier is an image verifier that blocks references containing
// "unsigned" and shows what containerd passed it.
const fakeVerifier = `#!/bin/sh
cat >/dev/null
case "$*" in
*unsigned*) echo "fake-verifier: denied: $* TRUSTD_CONFIG=$TRUSTD_CONFIG"; exit 1 ;;
esac
exit 0
`

// TestImageVerifierGate proves the pull gate's wiring that trustd-verifier
// relies on: containerd runs the executables of VerifierBinDir on a CRI
// pull, with containerd's environment (Options.Env) and the protocol's
// arguments, and a non-zero exit blocks the pull with the verifier's output.
func TestImageVerifierGate(t *testing.T) {
	Prereqs(t)
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "fake-verifier"), []byte(fakeVerifier), 0o755); err != nil {
		t.Fatal(err)
	}
	reg := StartRegistry(t)
	node := StartContainerd(t, Options{VerifierBinDir: bin, Env: []string{"TRUSTD_CONFIG=/etc/trustd/test.toml"}, Registries: []string{reg}})

	okRef := reg + "/demo/hello:1.0"
	Push(t, okRef, BuildImage(t, "ok", "ok"))
	if _, err := node.PullImage(okRef); err != nil {
		t.Fatalf("pull %s: %v", okRef, err)
	}

	badRef := reg + "/demo/unsigned:1.0"
	badDigest, _ := Push(t, badRef, BuildImage(t, "unsigned", "unsigned"))
	_, err := node.PullImage(badRef)
	if err == nil {
		t.Fatalf("pull %s not blocked by the verifier", badRef)
	}
	for _, want := range []string{
		"fake-verifier: denied",
		"-name " + badRef,
		"-digest " + string(badDigest),
		"-stdin-media-type application/vnd.oci.descriptor.v1+json",
		"TRUSTD_CONFIG=/etc/trustd/test.toml",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("pull error lacks %q:\n%v", want, err)
		}
	}
	if id, _ := node.ImageID(badRef); id != "" {
		t.Errorf("blocked image is on the node as %s", id)
	}
}
