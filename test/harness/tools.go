package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// VersionsFile is the path, relative to the module root, of the file that pins
// the external tools' versions; test/tools.sh sources the same file.
const VersionsFile = "test/versions.env"

// Versions are the pinned versions of the external tools.
type Versions struct {
	Containerd string // the full suite's, e.g. v2.4.2
	// Matrix are the containerd releases TestContainerdMatrix runs, the
	// newest patch of each minor line a fleet runs, e.g. [v2.2.9 v2.3.7 v2.4.2].
	Matrix []string
	Runc   string // e.g. v1.5.2
	// Kubelet and Crictl are the clients the tests drive containerd
	// with, e.g. v1.36.3 and v1.37.0.
	Kubelet string
	Crictl  string
	// Dockerd is the Docker Engine (moby) the Docker authorization
	// plugin's tests run, e.g. v2.0.0-beta.24.
	Dockerd string
	// TUFJS is the npm version of tuf-js, e.g. 4.1.0 ("" when not pinned).
	TUFJS string
	// Cosign is the cosign CLI the sigstore tests sign with, e.g. v3.1.3
	// ("" when not pinned).
	Cosign string
}

// releaseVersion is what a pinned version must look like: it names a
// directory of the tool cache and a module version.
var releaseVersion = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// npmVersion is what a pinned npm package version must look like.
var npmVersion = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)

// ReadVersions reads VersionsFile from the module root: CONTAINERD_VERSION,
// CONTAINERD_MATRIX (comma-separated; CONTAINERD_VERSION alone if absent),
// RUNC_VERSION, KUBELET_VERSION and CRICTL_VERSION. The environment variable TRUSTD_E2E_CONTAINERD_VERSION
// replaces the containerd version and the matrix with itself, as it does for
// test/tools.sh (a CI job per release sets it).
func ReadVersions() (Versions, error) {
	root, err := ModuleRoot()
	if err != nil {
		return Versions{}, err
	}
	path := filepath.Join(root, VersionsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return Versions{}, err
	}
	return parseVersions(path, b, os.Getenv("TRUSTD_E2E_CONTAINERD_VERSION"))
}

// parseVersions reads the versions file's content b; override is
// TRUSTD_E2E_CONTAINERD_VERSION's value.
func parseVersions(path string, b []byte, override string) (Versions, error) {
	vars, err := parseEnvFile(path, b)
	if err != nil {
		return Versions{}, err
	}
	v := Versions{
		Containerd: vars["CONTAINERD_VERSION"],
		Runc:       vars["RUNC_VERSION"],
		Kubelet:    vars["KUBELET_VERSION"],
		Crictl:     vars["CRICTL_VERSION"],
		Dockerd:    vars["DOCKERD_VERSION"],
		TUFJS:      vars["TUFJS_VERSION"],
		Cosign:     vars["COSIGN_VERSION"],
	}
	if v.TUFJS != "" && !npmVersion.MatchString(v.TUFJS) {
		return Versions{}, fmt.Errorf("%s: TUFJS_VERSION %q: want an npm release such as 4.1.0", path, v.TUFJS)
	}
	if v.Cosign != "" && !releaseVersion.MatchString(v.Cosign) {
		return Versions{}, fmt.Errorf("%s: COSIGN_VERSION %q: want a release such as v3.1.3", path, v.Cosign)
	}
	if v.Containerd == "" || v.Runc == "" || v.Kubelet == "" || v.Crictl == "" || v.Dockerd == "" {
		return Versions{}, fmt.Errorf("%s: CONTAINERD_VERSION, RUNC_VERSION, KUBELET_VERSION, CRICTL_VERSION and DOCKERD_VERSION must all be set", path)
	}
	if m := vars["CONTAINERD_MATRIX"]; m != "" {
		for r := range strings.SplitSeq(m, ",") {
			if slices.Contains(v.Matrix, r) {
				return Versions{}, fmt.Errorf("%s: CONTAINERD_MATRIX lists %s twice", path, r)
			}
			v.Matrix = append(v.Matrix, r)
		}
	} else {
		v.Matrix = []string{v.Containerd}
	}
	if override != "" {
		if !releaseVersion.MatchString(override) {
			return Versions{}, fmt.Errorf("TRUSTD_E2E_CONTAINERD_VERSION=%q: want a release such as v2.3.7", override)
		}
		v.Containerd, v.Matrix = override, []string{override}
	}
	for _, r := range append([]string{v.Containerd, v.Runc, v.Kubelet, v.Crictl, v.Dockerd}, v.Matrix...) {
		if !releaseVersion.MatchString(r) {
			return Versions{}, fmt.Errorf("%s: version %q: want a release such as v2.3.7", path, r)
		}
	}
	return v, nil
}

// parseEnvFile parses KEY=value lines; blank lines and # comments are skipped.
// It accepts only what both the shell and this parser read the same way.
func parseEnvFile(path string, b []byte) (map[string]string, error) {
	vars := map[string]string{}
	s := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(line, " \t'\"$`\\") {
			return nil, fmt.Errorf("%s:%d: want KEY=value without quotes, spaces or expansions, got %q", path, n, line)
		}
		vars[k] = v
	}
	return vars, s.Err()
}

// CacheDir is where test/tools.sh installs the tools:
// $TRUSTD_E2E_CACHE, or ~/.cache/trustd-e2e.
func CacheDir() (string, error) {
	if d := os.Getenv("TRUSTD_E2E_CACHE"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no TRUSTD_E2E_CACHE and no home directory: %w", err)
	}
	return filepath.Join(home, ".cache", "trustd-e2e"), nil
}

// ToolBinDir is the directory test/tools.sh installs tool name at version
// into: <CacheDir>/<name>-<version>/bin.
func ToolBinDir(name, version string) (string, error) {
	c, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(c, name+"-"+version, "bin"), nil
}

// Tools are the paths of the pinned external binaries. FindTools only
// computes them; Prereqs checks that they exist.
type Tools struct {
	Versions
	Containerd string // containerd daemon
	Ctr        string // ctr client
	Shim       string // containerd-shim-runc-v2
	Runc       string // runc
	Kubelet    string // kubelet (KubeletPrereqs checks it)
	Crictl     string // crictl (CrictlPrereqs checks it)
	Dockerd    string // dockerd (DockerdPrereqs checks it)
	Cosign     string // cosign (CosignPrereqs checks it)
}

// FindTools returns where test/tools.sh puts the pinned tools, with the
// full suite's containerd.
func FindTools() (Tools, error) { return FindToolsFor("") }

// FindToolsFor returns where test/tools.sh puts the pinned tools, with
// containerd at version (one of Versions.Matrix, say); "" is the full
// suite's version.
func FindToolsFor(containerd string) (Tools, error) {
	v, err := ReadVersions()
	if err != nil {
		return Tools{}, err
	}
	if containerd != "" {
		if !releaseVersion.MatchString(containerd) {
			return Tools{}, fmt.Errorf("containerd version %q: want a release such as v2.3.7", containerd)
		}
		v.Containerd = containerd
	}
	cdir, err := ToolBinDir("containerd", v.Containerd)
	if err != nil {
		return Tools{}, err
	}
	tools := Tools{
		Versions:   v,
		Containerd: filepath.Join(cdir, "containerd"),
		Ctr:        filepath.Join(cdir, "ctr"),
		Shim:       filepath.Join(cdir, "containerd-shim-runc-v2"),
	}
	for _, b := range []struct {
		path          *string
		name, version string
	}{{&tools.Runc, "runc", v.Runc}, {&tools.Kubelet, "kubelet", v.Kubelet}, {&tools.Crictl, "crictl", v.Crictl}, {&tools.Dockerd, "dockerd", v.Dockerd}, {&tools.Cosign, "cosign", v.Cosign}} {
		dir, err := ToolBinDir(b.name, b.version)
		if err != nil {
			return Tools{}, err
		}
		*b.path = filepath.Join(dir, b.name)
	}
	return tools, nil
}

var moduleRoot = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go env GOMOD: %w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the trustd module: run from the repository (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
})

// ModuleRoot is the directory of the trustd module's go.mod, found with
// `go env GOMOD` from the working directory (go test runs in the package's
// directory, `go run ./test/cmd/demo` in the repository).
func ModuleRoot() (string, error) { return moduleRoot() }
