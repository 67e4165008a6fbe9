package harness

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// TB is the part of testing.TB the harness uses. *testing.T and *testing.B
// implement it; test/cmd/demo has its own implementation.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

// Prereqs checks that this machine can run the end-to-end environment: Linux,
// root, the go command, the pinned tools built by test/tools.sh, and a kernel
// that mounts overlay filesystems and has cgroups. When something is missing
// it says what and how to install it, then skips the test, or fails it when
// the environment variable CI is "true" (CI must never skip silently).
func Prereqs(t TB) {
	t.Helper()
	problems := missingPrereqs()
	if len(problems) == 0 {
		return
	}
	skipOrFail(t, "end-to-end prerequisites missing:\n  - "+strings.Join(problems, "\n  - "))
}

// skipOrFail skips the test with msg, or fails it when the environment
// variable CI is "true": CI must never skip silently.
func skipOrFail(t TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s", msg)
	}
	t.Skipf("%s", msg)
}

// ContainerdPrereqs checks that test/tools.sh built containerd at version
// (ctr and the shim too), and skips the test or fails it under CI=true as
// Prereqs does. Prereqs checks the rest of the machine.
func ContainerdPrereqs(t TB, version string) {
	t.Helper()
	tools, err := FindToolsFor(version)
	requireInstalled(t, "containerd "+version, err, tools.Containerd, tools.Ctr, tools.Shim)
}

// KubeletPrereqs checks that test/tools.sh built the pinned kubelet
// (KUBELET_VERSION) and that util-linux's unshare and mount, which
// StartKubelet needs, are on PATH; it skips the test or fails it under
// CI=true as Prereqs does. Tests that run a kubelet call it after Prereqs.
func KubeletPrereqs(t TB) {
	t.Helper()
	tools, err := FindTools()
	bins := []string{tools.Kubelet}
	for _, name := range []string{"unshare", "mount"} {
		path, lerr := exec.LookPath(name)
		if lerr != nil {
			err = errors.Join(err, fmt.Errorf("%s (util-linux) is not on PATH", name))
		}
		bins = append(bins, path)
	}
	requireInstalled(t, "kubelet "+tools.Versions.Kubelet, err, bins...)
}

// CrictlPrereqs checks that test/tools.sh built the pinned crictl
// (CRICTL_VERSION), and skips the test or fails it under CI=true as
// Prereqs does. Tests that run crictl call it after Prereqs.
func CrictlPrereqs(t TB) {
	t.Helper()
	tools, err := FindTools()
	requireInstalled(t, "crictl "+tools.Versions.Crictl, err, tools.Crictl)
}

// CosignPrereqs checks that test/tools.sh built the pinned cosign CLI
// (COSIGN_VERSION), and skips the test or fails it under CI=true as
// Prereqs does. Tests that sign with cosign call it after Prereqs.
func CosignPrereqs(t TB) {
	t.Helper()
	tools, err := FindTools()
	requireInstalled(t, "cosign "+tools.Versions.Cosign, err, tools.Cosign)
}

// DockerdPrereqs checks that test/tools.sh built the pinned dockerd
// (DOCKERD_VERSION), and skips the test or fails it under CI=true as
// Prereqs does. Tests that run dockerd call it after Prereqs.
func DockerdPrereqs(t TB) {
	t.Helper()
	tools, err := FindTools()
	requireInstalled(t, "dockerd "+tools.Versions.Dockerd, err, tools.Dockerd)
}

// requireInstalled skips the test, or fails it when CI is "true", if
// finding the tools failed (err) or one of bins is not an executable file.
func requireInstalled(t TB, what string, err error, bins ...string) {
	t.Helper()
	var problems []string
	if err != nil {
		problems = append(problems, err.Error())
	} else {
		for _, bin := range bins {
			if !isExecutable(bin) {
				problems = append(problems, fmt.Sprintf("%s is not installed: run `make tools` (test/tools.sh) as root", bin))
			}
		}
	}
	if len(problems) == 0 {
		return
	}
	skipOrFail(t, what+" missing:\n  - "+strings.Join(problems, "\n  - "))
}

func missingPrereqs() []string {
	if runtime.GOOS != "linux" {
		return []string{"the end-to-end tests run on Linux only (GOOS=" + runtime.GOOS + ")"}
	}
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, "must run as root (containerd, runc and mounts need it): sudo make e2e")
	}
	if _, err := exec.LookPath("go"); err != nil {
		problems = append(problems, "the go command is not on PATH (it builds trustd and the test images)")
	} else if _, err := ModuleRoot(); err != nil {
		problems = append(problems, err.Error())
	}
	tools, err := FindTools()
	switch {
	case err != nil:
		problems = append(problems, err.Error())
	default:
		for _, bin := range []string{tools.Containerd, tools.Ctr, tools.Shim, tools.Runc} {
			if !isExecutable(bin) {
				problems = append(problems, fmt.Sprintf("%s is not installed: run `make tools` (test/tools.sh) as root", bin))
			}
		}
	}
	if os.Geteuid() == 0 {
		if err := checkOverlay(); err != nil {
			problems = append(problems, fmt.Sprintf("the kernel cannot mount an overlay filesystem (containerd's overlayfs snapshotter needs it; try `modprobe overlay`): %v", err))
		}
	}
	if err := checkCgroups(); err != nil {
		problems = append(problems, fmt.Sprintf("no usable cgroup filesystem (runc needs one): %v", err))
	}
	return problems
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// checkOverlay mounts and unmounts a small overlay filesystem: a kernel may
// list overlay in /proc/filesystems and still refuse it here (nested overlay,
// missing privileges).
func checkOverlay() error {
	dir, err := os.MkdirTemp("", "trustd-overlay-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var paths [4]string
	for i, name := range []string{"lower", "upper", "work", "merged"} {
		paths[i] = filepath.Join(dir, name)
		if err := os.Mkdir(paths[i], 0o700); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", paths[0], paths[1], paths[2])
	if err := syscall.Mount("overlay", paths[3], "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount -t overlay: %w", err)
	}
	return syscall.Unmount(paths[3], 0)
}

// checkCgroups accepts cgroup v2 (unified) and v1/hybrid hierarchies.
func checkCgroups() error {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return nil
	}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 2 && (fields[2] == "cgroup" || fields[2] == "cgroup2") {
			return nil
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	return errors.New("no cgroup or cgroup2 mount in /proc/self/mounts")
}
