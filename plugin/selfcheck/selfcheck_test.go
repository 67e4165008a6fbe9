package selfcheck

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/trustd/trustd/plugin/gate"
)

// The verifier directory states a test root can be set up with.
const (
	binOK         = ""            // bin_dir holds an executable trustd-verifier
	binMissingDir = "missing-dir" // no bin_dir at all
	binEmpty      = "empty"       // bin_dir exists, empty
	binOther      = "other"       // bin_dir holds another verifier only
	binNoExec     = "noexec"      // trustd-verifier is not executable
	binCrowded    = "crowded"     // two verifiers sort before trustd-verifier
	binLink       = "link"        // trustd-verifier → /usr/libexec/trustd/trustd-verifier, as the package installs it
	binDangling   = "dangling"    // trustd-verifier → /usr/libexec/trustd/trustd-verifier, which is missing
)

type wantFinding struct {
	severity string
	contains string
}

func TestCheckContainerdConfig(t *testing.T) {
	bypass := func(setting string) []wantFinding {
		return []wantFinding{{SeverityWarning, "CRI pulls bypass the image verifier (containerd pulls locally instead of through the transfer service) because of " + setting}}
	}
	tests := []struct {
		name      string
		fixture   string // plugin/testdata/selfcheck/<fixture>.toml, "" for no config file
		noDropIn  bool   // do not install packaging/containerd/trustd.toml
		bin       string
		nriSocket string
		want      []wantFinding
	}{
		{name: "good: the packaged drop-in imported", fixture: "good"},
		{name: "good: version 2 main file", fixture: "good-v2"},
		{name: "good: relative import", fixture: "good-relative-import"},
		{name: "good: drop-in overrides the main file", fixture: "overridden-by-dropin"},
		{name: "good: /run and /var/run are the same", fixture: "good", nriSocket: "/run/nri/nri.sock"},
		{name: "good: explicit max_concurrent_downloads = 3", fixture: "max-concurrent-downloads-3"},
		{name: "good: version 2 setting containerd ignores", fixture: "v2-snapshot-annotations-no-runtimes"},

		{name: "drop-in not imported", fixture: "not-imported", want: []wantFinding{
			{SeverityWarning, "/etc/containerd/conf.d/50-trustd.toml is not imported by /etc/containerd/config.toml, so containerd ignores it"},
			{SeverityError, "NRI's default validator is not enabled"}}},
		{name: "no containerd config at all", fixture: "", noDropIn: true, want: []wantFinding{
			{SeverityWarning, "does not exist: containerd runs with its defaults"},
			{SeverityError, "NRI's default validator is not enabled"}}},
		{name: "no containerd config, only the drop-in", fixture: "", want: []wantFinding{
			{SeverityWarning, "does not exist: containerd runs with its defaults, which are checked here, and reads no drop-in file"},
			{SeverityWarning, "/etc/containerd/conf.d/50-trustd.toml is not imported"},
			{SeverityError, "NRI's default validator is not enabled"}}},
		{name: "NRI in disabled_plugins", fixture: "nri-disabled-plugins", want: []wantFinding{
			{SeverityError, `NRI is disabled (disabled_plugins lists "io.containerd.nri.v1.nri")`}}},
		{name: "NRI disabled by a later drop-in", fixture: "nri-disabled-later", want: []wantFinding{
			{SeverityError, "NRI is disabled (plugins.'io.containerd.nri.v1.nri'.disable = true)"}}},
		{name: "NRI closed to external plugins", fixture: "nri-closed", want: []wantFinding{
			{SeverityError, "disable_connections = true"}}},
		{name: "NRI socket differs from trustd's", fixture: "good", nriSocket: "/run/trustd-test/nri.sock", want: []wantFinding{
			{SeverityError, "NRI listens on /var/run/nri/nri.sock (plugins.'io.containerd.nri.v1.nri'.socket_path) but trustd connects to /run/trustd-test/nri.sock"}}},
		{name: "default validator disabled", fixture: "validator-off", want: []wantFinding{
			{SeverityError, "NRI's default validator is not enabled"}}},
		{name: "trustd not a required plugin", fixture: "not-required", want: []wantFinding{
			{SeverityError, `does not require trustd (plugins.'io.containerd.nri.v1.nri'.default_validator.required_plugins = ["other-plugin"])`}}},
		{name: "tolerate-missing-plugins annotation", fixture: "tolerate", want: []wantFinding{
			{SeverityWarning, `lets pods annotated "tolerate-missing-nri-plugins.noderesource.dev" = "true" start without required plugins`}}},

		{name: "image verifier plugin disabled", fixture: "verifier-disabled", want: []wantFinding{
			{SeverityWarning, "the image verifier is disabled"}}},
		{name: "bin_dir missing", fixture: "good", bin: binMissingDir, want: []wantFinding{
			{SeverityWarning, "/opt/containerd/image-verifier/bin (bin_dir) does not exist: containerd allows every pull unchecked"}}},
		{name: "bin_dir empty", fixture: "good", bin: binEmpty, want: []wantFinding{
			{SeverityWarning, "(bin_dir) is empty: containerd allows every pull unchecked"}}},
		{name: "no trustd-verifier in bin_dir", fixture: "good", bin: binOther, want: []wantFinding{
			{SeverityWarning, "(bin_dir) has no trustd-verifier"}}},
		{name: "good: trustd-verifier links to /usr/libexec/trustd/trustd-verifier", fixture: "good", bin: binLink},
		{name: "trustd-verifier links to a missing binary", fixture: "good", bin: binDangling, want: []wantFinding{
			{SeverityWarning, "/opt/containerd/image-verifier/bin/trustd-verifier cannot be run"}}},
		{name: "trustd-verifier not executable", fixture: "good", bin: binNoExec, want: []wantFinding{
			{SeverityWarning, "trustd-verifier is not an executable file"}}},
		{name: "trustd-verifier past max_verifiers", fixture: "few-verifiers", noDropIn: true, bin: binCrowded, want: []wantFinding{
			{SeverityWarning, "containerd runs only the first 2 entries of /opt/containerd/image-verifier/bin (max_verifiers) in name order, and trustd-verifier is entry 3"}}},

		{name: "use_local_image_pull", fixture: "use-local-image-pull", want: bypass("use_local_image_pull = true")},
		{name: "registry.mirrors", fixture: "registry-mirrors", want: bypass("the deprecated registry.mirrors")},
		{name: "registry.configs", fixture: "registry-configs", want: bypass("the deprecated registry.configs")},
		{name: "registry.auths", fixture: "registry-auths", want: bypass("the deprecated registry.auths")},
		{name: "discard_unpacked_layers", fixture: "discard-unpacked-layers", want: bypass("discard_unpacked_layers = true")},
		{name: "image_pull_with_sync_fs", fixture: "image-pull-with-sync-fs", want: bypass("image_pull_with_sync_fs = true")},
		{name: "disable_snapshot_annotations = false", fixture: "snapshot-annotations", want: bypass("disable_snapshot_annotations = false")},
		{name: "max_concurrent_downloads = 5", fixture: "max-concurrent-downloads", want: bypass("max_concurrent_downloads = 5")},
		{name: "version 2: registry.mirrors", fixture: "v2-registry-mirrors", want: bypass("the deprecated registry.mirrors")},
		{name: "version 2: disable_snapshot_annotations = false", fixture: "v2-snapshot-annotations", want: bypass("disable_snapshot_annotations = false")},
		{name: "version 2: discard_unpacked_layers", fixture: "v2-discard-unpacked-layers", want: bypass("discard_unpacked_layers = true")},
		{name: "version 2: max_concurrent_downloads = 10", fixture: "v2-max-concurrent-downloads", want: bypass("max_concurrent_downloads = 10")},
		{name: "version 1: plugins.cri registry.mirrors", fixture: "v1-registry-mirrors", want: bypass("the deprecated registry.mirrors")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := containerdRoot(t, tc.fixture, !tc.noDropIn, tc.bin)
			got, err := checkContainerdConfig(root, "/etc/containerd/config.toml", tc.nriSocket)
			if err != nil {
				t.Fatalf("checkContainerdConfig: %v", err)
			}
			for _, f := range got {
				t.Logf("finding: %s", f)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d findings, want %d: %v", len(got), len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if got[i].Severity != w.severity || !strings.Contains(got[i].Message, w.contains) {
					t.Errorf("finding %d = %s, want %s containing %q", i, got[i], w.severity, w.contains)
				}
			}
		})
	}
}

func TestCheckContainerdConfigErrors(t *testing.T) {
	tests := []struct {
		name, fixture, contains string
	}{
		{"not TOML", "broken", "/etc/containerd/config.toml:6:36: toml: expected"},
		{"missing import", "missing-import", "/etc/containerd/missing.toml: no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := containerdRoot(t, tc.fixture, true, binOK)
			got, err := checkContainerdConfig(root, "/etc/containerd/config.toml", "")
			if err == nil || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("checkContainerdConfig = %v, %v; want an error containing %q", got, err, tc.contains)
			}
		})
	}
}

// TestCheckContainerdConfigHost runs the exported function on a real path
// (no root prefix): the packaged drop-in as the whole configuration.
func TestCheckContainerdConfigHost(t *testing.T) {
	got, err := CheckContainerdConfig(filepath.Join("..", "..", "packaging", "containerd", "trustd.toml"), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range got {
		if f.Severity == SeverityError {
			t.Errorf("the packaged drop-in alone: %s", f)
		}
	}
}

// TestCheckContainerdConfigMatchesContainerd checks the loader against
// containerd's own: for every fixture, the findings on the fixture files
// equal the findings on `containerd config dump` of the same files (which
// merges imports and runs every plugin's configuration migration). It
// needs a containerd 2.4 binary: the one `make tools` installs, or
// $TRUSTD_TEST_CONTAINERD.
func TestCheckContainerdConfigMatchesContainerd(t *testing.T) {
	bin := os.Getenv("TRUSTD_TEST_CONTAINERD")
	if bin == "" {
		cache := os.Getenv("TRUSTD_E2E_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "trustd-e2e")
		}
		found, _ := filepath.Glob(filepath.Join(cache, "containerd-v2.4.*", "bin", "containerd"))
		if len(found) == 0 {
			t.Skip("no containerd 2.4 binary (make tools installs one; or set TRUSTD_TEST_CONTAINERD)")
		}
		bin = found[len(found)-1]
	}
	fixtures, _ := filepath.Glob(filepath.Join("testdata", "selfcheck", "*.toml"))
	for _, f := range fixtures {
		name := strings.TrimSuffix(filepath.Base(f), ".toml")
		if name == "broken" || name == "missing-import" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			dropIn, state := true, binOK
			if name == "few-verifiers" {
				dropIn, state = false, binCrowded
			}
			root := containerdRoot(t, name, dropIn, state)
			want, err := checkContainerdConfig(root, "/etc/containerd/config.toml", "")
			if err != nil {
				t.Fatal(err)
			}
			// containerd reads absolute import paths as they are: point them
			// into the scratch root.
			etc := filepath.Join(root, "etc", "containerd")
			err = filepath.WalkDir(etc, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				s := strings.NewReplacer(`"/etc/containerd/`, `"`+etc+`/`, `'/etc/containerd/`, `'`+etc+`/`).Replace(string(b))
				return os.WriteFile(p, []byte(s), 0o644)
			})
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "--config", filepath.Join(etc, "config.toml"), "config", "dump")
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("containerd config dump: %v", err)
			}
			// The dump shows containerd's default imports line, which the
			// running containerd does not follow from its defaults.
			var lines []string
			for _, l := range strings.Split(string(out), "\n") {
				if !strings.HasPrefix(l, "imports = ") {
					lines = append(lines, l)
				}
			}
			if err := os.WriteFile(filepath.Join(root, "dump.toml"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			all, err := checkContainerdConfig(root, "/dump.toml", "")
			if err != nil {
				t.Fatal(err)
			}
			// The dump, merged already, imports nothing: compare what the
			// merged settings say.
			merged := func(fs []Finding) []Finding {
				var out []Finding
				for _, f := range fs {
					if !strings.Contains(f.Message, " is not imported by ") {
						out = append(out, f)
					}
				}
				return out
			}
			got, want := merged(all), merged(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("findings on containerd's merged configuration:\n%v\nfindings on the files:\n%v", got, want)
			}
		})
	}
}

// containerdRoot builds a scratch root: the fixture as
// /etc/containerd/config.toml, the packaged drop-in as
// /etc/containerd/conf.d/50-trustd.toml, the fixture's .d files next to
// it, and the image verifier directory in the given state.
func containerdRoot(t *testing.T, fixture string, dropIn bool, bin string) string {
	t.Helper()
	root := t.TempDir()
	etc := filepath.Join(root, "etc", "containerd")
	confd := filepath.Join(etc, "conf.d")
	if err := os.MkdirAll(confd, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile := func(src, dst string, mode os.FileMode) {
		t.Helper()
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, mode); err != nil {
			t.Fatal(err)
		}
	}
	if fixture != "" {
		base := filepath.Join("testdata", "selfcheck", fixture)
		copyFile(base+".toml", filepath.Join(etc, "config.toml"), 0o644)
		extra, _ := filepath.Glob(filepath.Join(base+".d", "*.toml"))
		for _, f := range extra {
			copyFile(f, filepath.Join(confd, filepath.Base(f)), 0o644)
		}
	}
	if dropIn {
		copyFile(filepath.Join("..", "..", "packaging", "containerd", "trustd.toml"), filepath.Join(confd, "50-trustd.toml"), 0o644)
	}
	dir := filepath.Join(root, "opt", "containerd", "image-verifier", "bin")
	if bin == binMissingDir {
		return root
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := func(name string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\nexit 0\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	switch bin {
	case binEmpty:
	case binOther:
		exe("other-verifier", 0o755)
	case binNoExec:
		exe(gate.VerifierName, 0o644)
	case binLink, binDangling:
		if bin == binLink {
			libexec := filepath.Join(root, "usr", "libexec", "trustd")
			if err := os.MkdirAll(libexec, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(libexec, gate.VerifierName), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("/usr/libexec/trustd/"+gate.VerifierName, filepath.Join(dir, gate.VerifierName)); err != nil {
			t.Fatal(err)
		}
	case binCrowded:
		exe("a-verifier", 0o755)
		exe("b-verifier", 0o755)
		exe(gate.VerifierName, 0o755)
	default:
		exe(gate.VerifierName, 0o755)
	}
	return root
}
