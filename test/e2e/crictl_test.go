package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trustd/trustd/test/harness"
)

// TestCrictl runs trustd's scenarios through crictl, the CRI client
// operators use on a node, on one node, in order: pulls by tag and by
// digest; a pod run with `runp` and containers created (`create`) and
// started by tag, by digest, by full image ID and by the short ID `crictl
// images` prints; a side-loaded unsigned image refused at creation under
// each of those names; a signed container with an unsigned image volume
// refused; `crictl run` of a signed and of an unsigned image; and with
// trustd stopped, creation refused until it is back. Every refusal must
// exit non-zero with trustd's reason on crictl's stderr.
func TestCrictl(t *testing.T) {
	harness.Prereqs(t)
	harness.CrictlPrereqs(t)
	start, top := time.Now(), t
	s, signed, unsigned, sideloaded := startClientStack(t)
	c := harness.NewCrictl(t, s.Node)
	podConfig := c.PodConfig(t, "crictl", "default")
	var podID string
	t.Cleanup(func() { t.Logf("crictl scenarios in %v", time.Since(start).Round(time.Millisecond)) })

	// names are the ways crictl can name an image: by tag, by digest, by
	// image ID and by the short ID `crictl images` prints.
	names := func(t *testing.T, i image, byDigest bool) []string {
		t.Helper()
		out := []string{i.ref}
		if byDigest {
			out = append(out, i.repo(t)+"@"+string(i.manifest))
		}
		out = append(out, string(i.config(t)), shortID(t, c, i))
		return out
	}

	t.Run("pull by tag and by digest", func(t *testing.T) {
		for _, ref := range []string{signed.ref, signed.repo(t) + "@" + string(signed.manifest)} {
			if res := c.Run(t, "pull", ref); res.ExitCode != 0 {
				t.Errorf("signed image refused:\n%s", res)
			}
		}
		for _, ref := range []string{unsigned.ref, unsigned.repo(t) + "@" + string(unsigned.manifest)} {
			crictlRefused(t, c.Run(t, "pull", ref), unsigned.repo(t), fragNotSigned)
		}
	})

	t.Run("runp, create and start by tag, digest and image ID", func(t *testing.T) {
		res := c.Run(t, "runp", podConfig)
		if res.ExitCode != 0 {
			t.Fatalf("%s", res)
		}
		podID = strings.TrimSpace(res.Stdout)
		for i, name := range names(t, signed, true) {
			res := c.Run(t, "create", podID, c.ContainerConfig(t, "signed-"+string(rune('a'+i)), name), podConfig)
			if res.ExitCode != 0 {
				t.Errorf("signed image as %s refused:\n%s", name, res)
				continue
			}
			id := strings.TrimSpace(res.Stdout)
			if res := c.Run(t, "start", id); res.ExitCode != 0 {
				t.Errorf("%s", res)
				continue
			}
			if err := s.Node.WaitContainerLog(id, signed.message, 20*time.Second); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("side-loaded unsigned image refused at create", func(t *testing.T) {
		if podID == "" {
			t.Skip("no pod: runp failed")
		}
		for i, name := range names(t, sideloaded, false) {
			res := c.Run(t, "create", podID, c.ContainerConfig(t, "sideloaded-"+string(rune('a'+i)), name), podConfig)
			crictlRefused(t, res, sideloaded.repo(t), fragNotSigned)
		}
	})

	t.Run("unsigned image volume refused", func(t *testing.T) {
		if podID == "" {
			t.Skip("no pod: runp failed")
		}
		cfg := c.ContainerConfig(t, "volume", signed.ref, harness.ImageVolume("/vol", sideloaded.ref))
		crictlRefused(t, c.Run(t, "create", podID, cfg, podConfig), "image volume /vol", sideloaded.repo(t), fragNotSigned)
	})

	t.Run("run pulls and runs the signed image, not the unsigned one", func(t *testing.T) {
		res := c.Run(t, "run", c.ContainerConfig(t, "run-signed", signed.ref), c.PodConfig(t, "crictl-run", "default"))
		if res.ExitCode != 0 {
			t.Fatalf("%s", res)
		}
		if err := s.Node.WaitContainerLog(strings.TrimSpace(res.Stdout), signed.message, 20*time.Second); err != nil {
			t.Error(err)
		}
		if err := s.Node.RemoveImage(unsigned.ref); err != nil {
			t.Fatal(err)
		}
		res = c.Run(t, "run", c.ContainerConfig(t, "run-unsigned", unsigned.ref), c.PodConfig(t, "crictl-run-unsigned", "default"))
		crictlRefused(t, res, unsigned.repo(t), fragNotSigned)
	})

	t.Run("trustd stopped: create refused until it is back", func(t *testing.T) {
		if podID == "" {
			t.Skip("no pod: runp failed")
		}
		if err := s.Trustd.Stop(); err != nil {
			t.Errorf("trustd on SIGTERM: %v", err)
		}
		cfg := c.ContainerConfig(t, "no-trustd", signed.ref)
		// containerd may still hand a creation to the closing plugin
		// ("validator plugin 50-trustd failed: ttrpc: closed"), a refusal
		// too: poll until NRI says trustd is missing, as it then does.
		deadline := time.Now().Add(decisionTimeout)
		for {
			res := c.Run(t, "create", podID, cfg, podConfig)
			if res.ExitCode == 0 {
				t.Fatalf("signed container created with trustd stopped:\n%s", res)
			}
			if strings.Contains(unescaped(res.Stderr), fragNoPlugin) {
				t.Logf("crictl create: exit %d: %s", res.ExitCode, strings.TrimSpace(res.Stderr))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("want a refusal naming %q:\n%s", fragNoPlugin, res)
			}
			time.Sleep(100 * time.Millisecond)
		}
		s.StartTrustd(top) // runs on after this step
		deadline = time.Now().Add(decisionTimeout)
		for {
			res := c.Run(t, "create", podID, cfg, podConfig)
			if res.ExitCode == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("signed image still refused with trustd back:\n%s", res)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// startClientStack starts the node the client tests drive, with trustd
// running and three images: signed (pushed and signed), unsigned (pushed)
// and sideloaded (unsigned, imported from a docker save tar).
func startClientStack(t *testing.T) (s *harness.Stack, signed, unsigned, sideloaded image) {
	t.Helper()
	s = harness.StartStack(t, harness.StackOptions{})
	signed = newImage(t, s, "demo/hello:1.0", "signed image running")
	unsigned = newImage(t, s, "demo/unsigned:1.0", "unsigned image running")
	sideloaded = newImage(t, s, "demo/sideloaded:1.0", "side-loaded unsigned image running")
	_, manifest := harness.Push(t, signed.ref, signed.img)
	s.TUF.SetTarget(signed.ref, manifest)
	harness.Push(t, unsigned.ref, unsigned.img)
	if err := s.TUF.Publish(); err != nil {
		t.Fatal(err)
	}
	s.Sync(t)
	s.StartTrustd(t)
	tar := filepath.Join(t.TempDir(), "sideloaded.tar")
	harness.DockerSaveTar(t, tar, map[string]v1.Image{sideloaded.ref: sideloaded.img})
	s.Node.ImportArchive(t, tar, sideloaded.ref)
	return s, signed, unsigned, sideloaded
}

// shortID is the image ID `crictl images` prints for i.
func shortID(t *testing.T, c *harness.Crictl, i image) string {
	t.Helper()
	repo, tag, _ := strings.Cut(strings.TrimPrefix(i.ref, i.repo(t)), ":")
	if repo != "" {
		t.Fatalf("reference %s is not <repository>:<tag>", i.ref)
	}
	for _, row := range c.Images(t) {
		if row.Image == i.repo(t) && row.Tag == tag {
			if !strings.HasPrefix(i.config(t).Encoded(), row.ID) || len(row.ID) < 12 {
				t.Fatalf("crictl images: %s:%s has ID %s, not a prefix of %s", row.Image, row.Tag, row.ID, i.config(t))
			}
			return row.ID
		}
	}
	t.Fatalf("crictl images does not list %s", i.ref)
	return ""
}

// crictlRefused checks that a crictl command failed with trustd's reason,
// holding fragments, on its stderr.
func crictlRefused(t *testing.T, res harness.CrictlResult, fragments ...string) {
	t.Helper()
	if res.ExitCode == 0 {
		t.Errorf("allowed, want trustd's refusal:\n%s", res)
		return
	}
	for _, f := range append([]string{fragTrustd, fragDenied}, fragments...) {
		if !strings.Contains(unescaped(res.Stderr), f) {
			t.Errorf("crictl's stderr lacks %q:\n%s", f, res)
		}
	}
	t.Logf("crictl %s: exit %d: %s", strings.Join(res.Args[:1], " "), res.ExitCode, strings.TrimSpace(res.Stderr))
}

// unescaped is a client's log text without its backslashes: klog and
// logrus quote an error's text, and kubelet quotes it again inside its
// own, so trustd's `required plugin "trustd"` reads `\\\"trustd\\\"`.
func unescaped(s string) string { return strings.ReplaceAll(s, `\`, "") }
