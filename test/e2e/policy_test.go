package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trustd/trustd/test/harness"
)

// metricsAddr is where TestPolicy's trustd serves its metrics.
var metricsAddr = freeLoopbackAddr()

func freeLoopbackAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:19109"
	}
	defer l.Close()
	return l.Addr().String()
}

// writePolicy replaces the stack's policy with the harness's source and
// daemon settings (and metrics on metricsAddr) followed by the given rules
// and mirrors.
func writePolicy(t *testing.T, s *harness.Stack, body string) {
	t.Helper()
	p := s.Policy
	p.Mode, p.Refresh, p.DaemonExtra = "enforce", "1s", ""
	p.MetricsAddress = metricsAddr
	p.Rules, p.OnlyRules = body, true
	harness.WritePolicy(t, s.PolicyPath, p)
}

// TestPolicy runs the policy file's features end to end on one node:
// namespace rules (two pods, one allowed, one denied), a mirror judged by
// its origin's trust data, and a reload where a broken policy is rejected
// and the previous one keeps enforcing.
func TestPolicy(t *testing.T) {
	harness.Prereqs(t)
	s := harness.StartStack(t, harness.StackOptions{})
	mirror := harness.StartRegistry(t)
	if err := s.Node.AddRegistry(mirror); err != nil {
		t.Fatal(err)
	}
	e := &env{Stack: s}
	top := t

	signed := newImage(t, s, "demo/hello:1.0", "signed image running")
	tool := newImage(t, s, "dev/tool:1", "dev tool running")
	unsigned := newImage(t, s, "demo/unsigned:1.0", "unsigned image running")
	_, manifest := harness.Push(t, signed.ref, signed.img)
	s.TUF.SetTarget(signed.ref, manifest)
	if err := s.TUF.Publish(); err != nil {
		t.Fatal(err)
	}
	// The mirror serves the same signed image and an unsigned one.
	harness.Push(t, mirror+"/demo/hello:1.0", signed.img)
	harness.Push(t, mirror+"/demo/unsigned:1.0", unsigned.img)
	harness.Push(t, tool.ref, tool.img)

	base := fmt.Sprintf(`
[[rule]]
images = [%q]
action = "verify"
source = "corp"

[[rule]]
images = [%q]
namespaces = ["team-a"]
action = "allow"

[[rule]]
images = ["**"]
action = "deny"

[[mirror]]
from = %q
to = %q
`, s.Registry+"/demo/**", s.Registry+"/dev/**", mirror, s.Registry)
	writePolicy(t, s, base)
	if res := s.CLI(t, "policy", "check", s.PolicyPath); res.ExitCode != 0 {
		t.Fatalf("policy check: %s%s", res.Stdout, res.Stderr)
	}
	s.Sync(t)
	// As under systemd with WatchdogSec: trustd must ping while healthy.
	td := harness.StartTrustd(t, s.Bin, s.PolicyPath, append(s.Env, "WATCHDOG_USEC=600000")...)
	s.Trustd = td

	t.Run("namespaces: one pod allowed, one denied", func(t *testing.T) {
		// A pull does not know its namespace: allowed because team-a may run it.
		if _, err := s.Node.PullImage(tool.ref); err != nil {
			t.Fatalf("pull of %s: %v", tool.ref, err)
		}
		a := s.Node.RunPod(t, "team-a-pod", "team-a")
		b := s.Node.RunPod(t, "team-b-pod", "team-b")
		id, err := s.Node.CreateContainer(a.ID, a.Config, "tool", tool.ref)
		if err != nil {
			t.Fatalf("team-a: creation rejected: %v", err)
		}
		if err := s.Node.StartContainer(id); err != nil {
			t.Fatal(err)
		}
		_, err = s.Node.CreateContainer(b.ID, b.Config, "tool", tool.ref)
		assertDenied(t, "team-b creation", err, tool.repo(t), "in namespace team-b", "the rule denies", "rule #3")
		e.verify(t, []string{"--namespace", "team-b", tool.ref}, false, "", tool.repo(t), "the rule denies")
		if v, res := s.Verify(t, "--namespace", "team-a", tool.ref); len(v) != 1 || !v[0].Allowed || res.ExitCode != 0 {
			t.Errorf("trustd verify --namespace team-a %s: %+v (exit %d)", tool.ref, v, res.ExitCode)
		}
	})

	t.Run("mirror: judged by the origin's trust data", func(t *testing.T) {
		ref := mirror + "/demo/hello:1.0"
		if _, err := s.Node.PullImage(ref); err != nil {
			t.Fatalf("pull through the mirror: %v", err)
		}
		e.pod = s.Node.RunPod(top, "mirror-pod", "default")
		id, err := s.Node.CreateContainer(e.pod.ID, e.pod.Config, "hello", ref)
		if err != nil {
			t.Fatalf("creation through the mirror rejected: %v", err)
		}
		if err := s.Node.StartContainer(id); err != nil {
			t.Fatal(err)
		}
		if err := s.Node.WaitContainerLog(id, signed.message, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		_, err = s.Node.PullImage(mirror + "/demo/unsigned:1.0")
		assertDenied(t, "pull of an unsigned image through the mirror", err, s.Registry+"/demo/unsigned", fragNotSigned)
	})

	t.Run("image events: side-loaded images are judged and labelled", func(t *testing.T) {
		tar := filepath.Join(t.TempDir(), "both.tar")
		other := newImage(t, s, "demo/labelled:2", "unsigned, to be labelled")
		harness.DockerSaveTar(t, tar, map[string]v1.Image{signed.ref: signed.img, other.ref: other.img})
		s.Node.ImportArchive(t, tar, signed.ref, other.ref)
		for ref, want := range map[string]string{signed.ref: "allowed", other.ref: "denied"} {
			deadline := time.Now().Add(decisionTimeout)
			for {
				img, err := s.Node.Client.GetImage(t.Context(), ref)
				if err != nil {
					t.Fatal(err)
				}
				l := img.Labels()
				if l["trustd.dev/verdict"] == want && l["trustd.dev/digest"] == string(img.Target().Digest) && l["trustd.dev/reason"] != "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: labels %v, want verdict %q", ref, l, want)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if _, err := td.WaitLog(decisionTimeout, `"msg":"verdict"`, `"via":"image-event"`, `"verdict":"deny"`, other.repo(t)); err != nil {
			t.Fatal(err)
		}
		// Nothing was refused: a search for refusals finds none.
		for _, l := range strings.Split(td.Logs(), "\n") {
			if strings.Contains(l, `"via":"image-event"`) && strings.Contains(l, `"decision":`) {
				t.Errorf("an image event is logged as a decision: %s", l)
			}
		}
	})

	t.Run("reload: a broken policy is rejected, the last good one enforces", func(t *testing.T) {
		// Side-load the unsigned image so that only creation judges it.
		tar := filepath.Join(t.TempDir(), "unsigned.tar")
		harness.DockerSaveTar(t, tar, map[string]v1.Image{unsigned.ref: unsigned.img})
		s.Node.ImportArchive(t, tar, unsigned.ref)
		if e.pod == nil {
			e.pod = s.Node.RunPod(top, "reload-pod", "default")
		}
		if _, err := s.Node.PullImage(signed.ref); err != nil {
			t.Fatal(err)
		}
		_, err := e.create(t, unsigned)
		assertDenied(t, "creation before reload", err, unsigned.repo(t), fragNotSigned)

		// A policy with a typo: rejected, and the daemon says so.
		writePolicy(t, s, strings.Replace(base, `action = "deny"`, `action = "dney"`, 1))
		if err := syscall.Kill(td.Pid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if _, err := td.WaitLog(decisionTimeout, "policy reload rejected", `unknown action \"dney\"`); err != nil {
			t.Fatalf("%v\n%s", err, td.Logs())
		}
		st := s.CLI(t, "status", "--config", s.PolicyPath)
		if !strings.Contains(st.Stdout, "last reload FAILED") || !strings.Contains(st.Stdout, "dney") {
			t.Errorf("status does not show the failed reload:\n%s", st.Stdout)
		}
		_, err = e.create(t, unsigned)
		assertDenied(t, "creation after a rejected reload", err, unsigned.repo(t), fragNotSigned)
		e.run(t, signed)

		// A valid policy that allows the image: takes effect at once.
		writePolicy(t, s, fmt.Sprintf(`
[[rule]]
images = [%q]
action = "allow"
`, unsigned.repo(t))+base)
		if err := syscall.Kill(td.Pid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if _, err := td.WaitLog(decisionTimeout, "policy reloaded"); err != nil {
			t.Fatalf("%v\n%s", err, td.Logs())
		}
		e.run(t, unsigned)
		st = s.CLI(t, "status", "--config", s.PolicyPath)
		if strings.Contains(st.Stdout, "FAILED") {
			t.Errorf("status still shows a failed reload:\n%s", st.Stdout)
		}
	})

	t.Run("observability: watchdog pings and metrics after known decisions", func(t *testing.T) {
		if err := td.WaitNotification("WATCHDOG=1", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := string(body)
		for _, want := range []string{
			`trustd_decisions_total{decision="deny",namespace="team-b",rule="rule #3`,
			`trustd_decisions_total{decision="allow",namespace="team-a",rule="rule #2`,
			`trustd_nri_connected 1`,
			`trustd_decision_duration_seconds_count`,
			`trustd_cache_expiry_timestamp_seconds{source="corp"}`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %q", want)
			}
		}
		if t.Failed() {
			t.Logf("metrics:\n%s", m)
		}
		// The node's containerd is configured to fail closed: the self-check
		// (at start and in status) finds nothing to report.
		// The file checked is the one this node's containerd was started
		// with (--config), found from its command line.
		wantFile := "containerd config file: " + s.Node.ConfigPath + " (from the command line of containerd (pid " + strconv.Itoa(s.Node.Pid()) + "))"
		if st := s.CLI(t, "status", "--config", s.PolicyPath); strings.Contains(st.Stdout, "containerd config error") || strings.Contains(st.Stdout, "containerd config warning") || !strings.Contains(st.Stdout, "decides in validate") || !strings.Contains(st.Stdout, wantFile) {
			t.Errorf("status on a fail-closed node:\n%s\nwant %q", st.Stdout, wantFile)
		}
		// Local attack surface: the control socket and the cache are root's alone.
		if fi, err := os.Stat(s.Policy.ControlSocket); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("control socket %s: %v, mode %v, want 0600", s.Policy.ControlSocket, err, fi.Mode().Perm())
		}
		filepath.Walk(s.Policy.CacheDir, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if perm := fi.Mode().Perm(); perm&0o077 != 0 {
				t.Errorf("cache %s is mode %v: readable or writable by others", p, perm)
			}
			return nil
		})
		hz, err := http.Get("http://" + metricsAddr + "/healthz")
		if err != nil || hz.StatusCode != http.StatusOK {
			t.Errorf("/healthz: %v %v", hz, err)
		}
	})
}
