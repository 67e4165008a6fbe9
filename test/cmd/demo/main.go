// Command demo shows trustd at work on a throw-away node: it starts, in a
// temporary directory, a containerd (requiring trustd over NRI, with trustd
// as its image verifier), a loopback registry, a TUF repository it makes
// and signs with `trustd repo` (served by a file server on loopback), and
// trustd; pushes a signed and an unsigned image; then pulls and runs
// each through CRI as a kubelet would, printing every verdict with its
// reason. It cleans up after itself, also on Ctrl-C.
//
// Run it as root from the repository: `make demo` (go run ./test/cmd/demo).
package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trustd/trustd/test/harness"
)

func main() {
	os.Exit(run())
}

// run runs the demo in a goroutine so that a signal can interrupt it, then
// cleans up whatever it started.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	tb := &demoTB{}
	done := make(chan int, 1)
	which := demo
	if os.Getenv("DOCKER") != "" && os.Getenv("DOCKER") != "0" {
		which = dockerDemo // make demo DOCKER=1: a Docker Engine node
	}
	go func() { done <- tb.do(which) }()
	code := 0
	select {
	case code = <-done:
	case <-ctx.Done():
		fmt.Println("\ninterrupted")
		code = 130
	}
	fmt.Println("\nCleaning up: pods, containerd, trustd, servers, temporary files")
	tb.cleanup()
	harness.RemoveBuildDir()
	return code
}

func demo(t harness.TB) {
	step(1, "Checking prerequisites (root, containerd and runc from `make tools`, overlayfs, cgroups)")
	harness.Prereqs(t)

	step(2, "Building trustd; starting containerd, a registry and a file server for the TUF repository on 127.0.0.1")
	s := harness.StartStack(t, harness.StackOptions{})
	repoDir := filepath.Join(t.TempDir(), "tuf")
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(repoDir, "metadata"))))
	t.Cleanup(srv.Close)
	detail("registry         %s", s.Registry)
	detail("TUF repository   %s, served at %s/", repoDir, srv.URL)
	detail("containerd       %s (NRI %s)", s.Node.Address, s.Node.NRISocket)
	detail("policy           %s", s.PolicyPath)

	signed := s.Ref("demo/hello:1.0")
	unsigned := s.Ref("demo/unsigned:1.0")
	step(3, "Pushing two images; signing one of them with trustd repo")
	images := map[string]v1.Image{
		signed:   harness.BuildImage(t, "demo signed", "Hello from a signed image!"),
		unsigned: harness.BuildImage(t, "demo unsigned", "Hello from an unsigned image!"),
	}
	for _, ref := range []string{signed, unsigned} {
		d, _ := harness.Push(t, ref, images[ref])
		state := "not signed"
		if ref == signed {
			state = "signed below"
		}
		detail("%-40s %s  (%s)", ref, d, state)
	}
	repo(t, s, "init", repoDir)
	repo(t, s, "sign", repoDir, signed, "--insecure-registry")
	s.Policy.TUFURL, s.Policy.TUFRoot = srv.URL+"/", filepath.Join(repoDir, "metadata", "1.root.json")
	harness.WritePolicy(t, s.PolicyPath, s.Policy)
	detail("the policy's source \"corp\": url %s, root %s", s.Policy.TUFURL, s.Policy.TUFRoot)

	step(4, "trustd sync (fetch and verify the trust data), then trustd run (the NRI plugin)")
	s.Sync(t)
	s.StartTrustd(t)

	step(5, "For each image: ask trustd verify, pull it through CRI, run it in a pod")
	pod := s.Node.RunPod(t, "demo", "default")
	ran := map[string]bool{}
	for i, ref := range []string{signed, unsigned} {
		fmt.Printf("\n  %s\n", ref)
		ran[ref] = show(t, s, pod, ref, images[ref], i)
	}

	if !ran[signed] || ran[unsigned] {
		t.Fatalf("signed image ran: %v, unsigned image ran: %v; want true, false", ran[signed], ran[unsigned])
	}
	step(6, "Done: the signed image ran; the unsigned one was stopped at the pull and at creation")
}

// repo runs `trustd repo ARGS...`, printing the command and what it says.
func repo(t harness.TB, s *harness.Stack, args ...string) {
	args = append([]string{"repo"}, args...)
	fmt.Printf("      $ trustd %s\n", strings.Join(args, " "))
	res := s.CLI(t, args...)
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		fmt.Printf("        %s\n", line)
	}
	if res.ExitCode != 0 {
		t.Fatalf("trustd %s: exit %d\n%s", strings.Join(args, " "), res.ExitCode, res.Stderr)
	}
}

// show walks one image through the checks a node makes, printing verdicts,
// and reports whether its container ran.
func show(t harness.TB, s *harness.Stack, pod *harness.Pod, ref string, img v1.Image, i int) bool {
	verdicts, _ := s.Verify(t, ref)
	for _, v := range verdicts {
		if v.Allowed {
			verdict("trustd verify", "ALLOWED", fmt.Sprintf("%s, signed by %s (%s)", v.Digest, strings.Join(v.Signers, ", "), v.Rule))
		} else {
			verdict("trustd verify", "DENIED", v.Reason)
		}
	}

	if _, err := s.Node.PullImage(ref); err != nil {
		verdict("CRI pull", "BLOCKED", harness.Reason(err))
		// A node can get images without pulling them: side-load it.
		tar := filepath.Join(t.TempDir(), "image.tar")
		harness.DockerSaveTar(t, tar, map[string]v1.Image{ref: img})
		s.Node.ImportArchive(t, tar, ref)
		verdict("side-load", "LOADED", "ctr images import of a docker save tar (no pull, so no image verifier)")
	} else {
		verdict("CRI pull", "OK", "the image verifier (trustd-verifier) allowed it")
	}

	id, err := s.Node.CreateContainer(pod.ID, pod.Config, fmt.Sprintf("demo-%d", i), ref)
	if err != nil {
		verdict("create container", "REJECTED", harness.Reason(err))
		return false
	}
	if err := s.Node.StartContainer(id); err != nil {
		t.Fatalf("start: %v", err)
	}
	if err := s.Node.WaitContainerLog(id, "Hello", 20*time.Second); err != nil {
		t.Fatalf("%v", err)
	}
	log, _ := s.Node.ContainerLog(id)
	verdict("create container", "ALLOWED", "NRI validation by trustd passed")
	verdict("container output", "", lastField(log))
	return true
}

// lastField is the message of the last line of a CRI log ("<time> <stream> <tag> <message>").
func lastField(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	parts := strings.SplitN(lines[len(lines)-1], " ", 4)
	return parts[len(parts)-1]
}

func step(n int, msg string) { fmt.Printf("\n[%d/6] %s\n", n, msg) }

func detail(format string, args ...any) { fmt.Printf("      "+format+"\n", args...) }

func verdict(what, outcome, reason string) {
	fmt.Printf("    %-17s %-9s %s\n", what+":", outcome, reason)
}

// demoTB implements harness.TB for a command: it prints what the harness
// logs, stops the demo at the first failure, and runs the cleanups once, in
// reverse order, when asked. A cleanup registered after that (by the demo
// still running when interrupted) runs at once.
type demoTB struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
	closed   bool // cleanup has started: the demo was interrupted or is over
}

// stopDemo is the panic value with which Fatalf and Skipf end the demo.
type stopDemo struct{}

// do runs f, turning Fatalf and Skipf into an exit code.
func (d *demoTB) do(f func(harness.TB)) (code int) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stopDemo); !ok {
				panic(r)
			}
			code = 1
		}
	}()
	f(d)
	return 0
}

func (d *demoTB) Helper() {}

func (d *demoTB) Logf(format string, args ...any) {
	fmt.Printf("      · "+format+"\n", args...)
}

func (d *demoTB) Fatalf(format string, args ...any) {
	d.mu.Lock()
	d.failed = true
	closed := d.closed
	d.mu.Unlock()
	if !closed { // after an interrupt, failures are the cleanup's doing
		fmt.Fprintf(os.Stderr, "\ndemo failed: "+format+"\n", args...)
	}
	panic(stopDemo{})
}

func (d *demoTB) Skipf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "\ndemo cannot run here: "+format+"\n", args...)
	panic(stopDemo{})
}

func (d *demoTB) Cleanup(f func()) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		f()
		return
	}
	d.cleanups = append(d.cleanups, f)
	d.mu.Unlock()
}

func (d *demoTB) TempDir() string {
	dir, err := os.MkdirTemp("", "trustd-demo-")
	if err != nil {
		d.Fatalf("%v", err)
	}
	d.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (d *demoTB) Failed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

// cleanup runs the registered cleanups, last first.
func (d *demoTB) cleanup() {
	d.mu.Lock()
	d.closed = true
	cleanups := d.cleanups
	d.cleanups = nil
	d.mu.Unlock()
	for _, f := range slices.Backward(cleanups) {
		f()
	}
}
