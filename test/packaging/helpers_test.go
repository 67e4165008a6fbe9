package packaging

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// scratch is a directory for artefacts shared by the tests (the package).
var scratch string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trustd-packaging-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	scratch = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the repository's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found: %v", err)
	}
	return root
}

// needTool returns the path of a command, or skips the test when it is
// missing (fails it when CI=true: CI must have every tool).
func needTool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (Debian package %s)", name, debianPackage)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI must provide it")
	}
	t.Skip(msg)
	return ""
}

// run runs a command and returns its combined output; it fails the test
// when the command fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

var (
	pkgOnce sync.Once
	pkgPath string
	pkgDist string
	pkgErr  error
	pkgLog  string
)

// buildPackage runs `make package` once per test binary, into a scratch
// directory, and returns the .deb and the directory (which also holds the
// static trustd binary that went into it).
func buildPackage(t *testing.T) (deb, dist string) {
	t.Helper()
	needTool(t, "make", "make")
	needTool(t, "git", "git")
	root := repoRoot(t)
	pkgOnce.Do(func() {
		pkgDist = filepath.Join(scratch, "dist")
		start := time.Now()
		pkgLog, pkgErr = runErr(root, nil, "make", "--no-print-directory", "package", "DIST="+pkgDist)
		pkgLog += fmt.Sprintf("(make package took %s)\n", time.Since(start).Round(time.Millisecond))
		if pkgErr != nil {
			return
		}
		debs, _ := filepath.Glob(filepath.Join(pkgDist, "trustd_*.deb"))
		if len(debs) != 1 {
			pkgErr = fmt.Errorf("make package made %d .deb files in %s, want 1", len(debs), pkgDist)
			return
		}
		pkgPath = debs[0]
	})
	if pkgErr != nil {
		t.Fatalf("make package: %v\n%s", pkgErr, pkgLog)
	}
	return pkgPath, pkgDist
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
