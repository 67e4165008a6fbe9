package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// buildDir holds what this process builds once (trustd, the image programs).
// It outlives any one test, so it is not a TB.TempDir; RemoveBuildDir
// deletes it.
var buildDir = sync.OnceValues(func() (string, error) {
	return os.MkdirTemp("", "trustd-e2e-build-")
})

// builds lets RemoveBuildDir stop the builds in flight (a command
// interrupted while building) before it deletes their output directory:
// each build holds a read lock and runs under ctx.
var builds struct {
	sync.RWMutex
	ctx    context.Context
	cancel context.CancelFunc
}

func init() { builds.ctx, builds.cancel = context.WithCancel(context.Background()) }

// RemoveBuildDir stops any build in flight and deletes the binaries this
// process built; later builds fail. Call it once all tests are done: from
// TestMain after m.Run, or at the end of a command.
func RemoveBuildDir() {
	builds.cancel()
	builds.Lock()
	defer builds.Unlock()
	if dir, err := buildDir(); err == nil {
		os.RemoveAll(dir)
	}
}

// goBuild runs `go build args...` in the module root with extra environment,
// and returns the command's output in its error.
func goBuild(env []string, args ...string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	// -buildvcs=false: a checkout without commits (or a copy without .git)
	// must still build.
	args = append([]string{"build", "-buildvcs=false"}, args...)
	builds.RLock()
	defer builds.RUnlock()
	cmd := exec.CommandContext(builds.ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// buildOnce returns a function that builds the main package pkg into the
// build directory as name, once per process.
func buildOnce(name, pkg string) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		dir, err := buildDir()
		if err != nil {
			return "", err
		}
		bin := filepath.Join(dir, name)
		return bin, goBuild(nil, "-o", bin, pkg)
	})
}

var trustdBinary = buildOnce("trustd", "./cmd/trustd")

// BuildTrustd builds ./cmd/trustd once per process and returns the binary's
// path. A failed build fails every caller with the compiler's output.
func BuildTrustd(t TB) string {
	t.Helper()
	bin, err := trustdBinary()
	if err != nil {
		t.Fatalf("build trustd: %v", err)
	}
	return bin
}

var verifierBinary = buildOnce("trustd-verifier", "./cmd/trustd-verifier")

// BuildVerifier builds ./cmd/trustd-verifier once per process, next to
// BuildTrustd's trustd (the verifier execs the trustd beside it when the
// daemon does not answer), and returns the binary's path.
func BuildVerifier(t TB) string {
	t.Helper()
	bin, err := verifierBinary()
	if err != nil {
		t.Fatalf("build trustd-verifier: %v", err)
	}
	return bin
}

// noopValidatorBinary builds ./test/cmd/noop-validator once per process.
var noopValidatorBinary = buildOnce("noop-validator", "./test/cmd/noop-validator")

// imagePrograms are the static programs put into test images, by name.
var imagePrograms = sync.OnceValues(func() (map[string]string, error) {
	dir, err := buildDir()
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dir, "images")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	// Static, stripped and without paths: the same source gives the same
	// bytes, so the same image (and digests) in every run.
	env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + runtime.GOARCH}
	if err := goBuild(env, "-trimpath", "-ldflags=-s -w", "-o", out+"/", "./test/images/pause", "./test/images/hello"); err != nil {
		return nil, err
	}
	return map[string]string{
		"pause": filepath.Join(out, "pause"),
		"hello": filepath.Join(out, "hello"),
	}, nil
})
