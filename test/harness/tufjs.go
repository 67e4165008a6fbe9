package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// TUFJSDir is where test/tools.sh installs tuf-js at TUFJS_VERSION:
// <CacheDir>/tuf-js-<version>, holding node_modules/tuf-js.
func TUFJSDir() (string, error) {
	v, err := ReadVersions()
	if err != nil {
		return "", err
	}
	if v.TUFJS == "" {
		return "", fmt.Errorf("%s pins no TUFJS_VERSION", VersionsFile)
	}
	c, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(c, "tuf-js-"+v.TUFJS), nil
}

// TUFJS returns the directory whose node_modules holds tuf-js at
// TUFJS_VERSION, installing it from the npm registry with npm when it is
// not cached yet (as test/tools.sh does). Without node or npm, or when the
// install fails, it skips the test, or fails it under CI=true.
func TUFJS(t TB) string {
	t.Helper()
	dir, err := TUFJSDir()
	if err != nil {
		skipOrFail(t, "tuf-js: "+err.Error())
	}
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			skipOrFail(t, fmt.Sprintf("tuf-js: %s is not on PATH (Debian: apt-get install nodejs npm; tuf-js 4 needs Node 20.17 or later)", bin))
		}
	}
	v, _ := ReadVersions()
	if installedTUFJS(dir) == v.TUFJS {
		return dir
	}
	// Installed under a temporary name: an interrupted install is not a
	// cached one.
	tmp := fmt.Sprintf("%s.partial-%d", dir, os.Getpid())
	os.RemoveAll(tmp)
	defer os.RemoveAll(tmp)
	cmd := exec.Command("npm", "install", "--prefix", tmp, "--no-audit", "--no-fund", "--no-save", "tuf-js@"+v.TUFJS)
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	out, err := cmd.CombinedOutput()
	if err != nil || installedTUFJS(tmp) != v.TUFJS {
		skipOrFail(t, fmt.Sprintf("tuf-js: npm install tuf-js@%s: %v\n%s", v.TUFJS, err, tailLines(out, 20)))
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatalf("tuf-js: %v", err)
	}
	return dir
}

// installedTUFJS returns the version of tuf-js installed under dir, "" if none.
func installedTUFJS(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "tuf-js", "package.json"))
	if err != nil {
		return ""
	}
	var pkg struct {
		Version string `json:"version"`
	}
	if json.Unmarshal(b, &pkg) != nil {
		return ""
	}
	return pkg.Version
}
