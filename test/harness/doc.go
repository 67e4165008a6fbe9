// Package harness runs trustd's end-to-end environment for real, on one Linux
// machine, as root: a containerd (with its CRI and NRI) as a child process with
// everything under a temporary directory, the runc it drives, an in-process
// OCI registry on loopback, a TUF repository signed and served on loopback,
// tiny test images built from Go programs in test/images, and the trustd
// binary as a real process; and the clients operators drive containerd
// with: a standalone kubelet (StartKubelet) and crictl (NewCrictl).
//
// Every server listens on 127.0.0.1 only. Every resource is released through
// TB.Cleanup, including processes that outlive their parent (containerd's
// shims and the containers they run) and the mounts they leave: after a
// test's cleanups have run, no process or mount of the harness remains.
//
// The harness takes a TB, the part of testing.TB it needs, so that a command
// (test/cmd/demo) can run it too. Helpers that take a TB report failures with
// TB.Fatalf and must be called from the goroutine running the test; methods
// without a TB return errors and may be called from any goroutine.
//
// External tools are pinned in test/versions.env and installed by
// test/tools.sh (`make tools`); Prereqs skips a test (or, with CI=true, fails
// it) when one of them or a kernel feature is missing.
package harness
