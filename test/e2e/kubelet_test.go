package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/trustd/trustd/test/harness"
)

// kubeletTimeout bounds waiting for kubelet: it retries a refused creation
// every 10-15 s, and a refused pull after 10 s, then backs off.
const kubeletTimeout = 45 * time.Second

// TestKubelet runs trustd's scenarios under a standalone kubelet (static
// pods, no API server) on one node, as on a Kubernetes node:
//
//  1. a pod of a signed image runs;
//  2. a pod of an unsigned image ends in ImagePullBackOff with trustd's reason;
//  3. a pod of a side-loaded unsigned image (imagePullPolicy Never) ends in
//     CreateContainerError with trustd's reason, and no container exists;
//  4. a signed container with an unsigned OCI image volume is refused with
//     trustd's reason naming the image volume;
//  5. with trustd stopped, a new pod is refused (required plugin "trustd"
//     not present) and is created once trustd is back, with no operator
//     action: kubelet retries by itself;
//  6. kubelet keeps retrying the refused pods (a creation every 10-15 s,
//     pulls with a growing back-off), each retry refused.
//
// With no API server the pod status is published nowhere: the test reads
// kubelet's own words in its log ("Error syncing pod") and the containers
// through CRI, and logs them. It also logs how many decisions trustd logged
// for one refused pod over kubelet's retries.
func TestKubelet(t *testing.T) {
	harness.Prereqs(t)
	harness.KubeletPrereqs(t)
	start, top := time.Now(), t
	s, signed, unsigned, sideloaded := startClientStack(t)
	first := s.Trustd
	k := harness.StartKubelet(t, s.Node)
	t.Cleanup(func() { t.Logf("kubelet scenarios in %v", time.Since(start).Round(time.Millisecond)) })

	// The pods of 1-4 at once: kubelet works on them in parallel.
	podsAdded := time.Now()
	k.AddPod(t, harness.StaticPod{Name: "signed", Image: signed.ref})
	k.AddPod(t, harness.StaticPod{Name: "unsigned", Image: unsigned.ref})
	k.AddPod(t, harness.StaticPod{Name: "sideloaded", Image: sideloaded.ref, PullPolicy: "Never"})
	k.AddPod(t, harness.StaticPod{Name: "volume", Image: signed.ref, VolumeImage: sideloaded.ref})

	t.Run("1 signed pod runs", func(t *testing.T) {
		id, err := k.WaitRunning("signed", kubeletTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Node.WaitContainerLog(id, signed.message, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("2 unsigned pod: ErrImagePull, then ImagePullBackOff, with trustd's reason", func(t *testing.T) {
		for _, state := range []string{"ErrImagePull", "ImagePullBackOff"} {
			kubeletRefused(t, k, "unsigned", state, unsigned.repo(t), fragNotSigned)
		}
		if id, _ := s.Node.ImageID(unsigned.ref); id != "" {
			t.Errorf("refused image %s is on the node as %s", unsigned.ref, id)
		}
		noContainers(t, k, "unsigned")
	})

	t.Run("3 side-loaded unsigned pod: CreateContainerError with trustd's reason", func(t *testing.T) {
		kubeletRefused(t, k, "sideloaded", "CreateContainerError", sideloaded.repo(t), fragNotSigned)
		noContainers(t, k, "sideloaded")
	})

	t.Run("4 unsigned image volume: CreateContainerError naming the volume", func(t *testing.T) {
		kubeletRefused(t, k, "volume", "CreateContainerError", "image volume /vol", sideloaded.repo(t), fragNotSigned)
		noContainers(t, k, "volume")
	})

	t.Run("5 trustd stopped: a new pod is refused, then created once trustd is back", func(t *testing.T) {
		if err := s.Trustd.Stop(); err != nil {
			t.Errorf("trustd on SIGTERM: %v", err)
		}
		k.AddPod(t, harness.StaticPod{Name: "late", Image: signed.ref})
		line, err := k.WaitLog(kubeletTimeout, "Error syncing pod", `pod="default/`+harness.KubeletPodName("late")+`"`, "CreateContainerError", "not present")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(unescaped(line), fragNoPlugin) {
			t.Errorf("kubelet's refusal lacks %q:\n%s", fragNoPlugin, line)
		}
		t.Logf("kubelet: %s", line)
		noContainers(t, k, "late")
		back := time.Now()
		s.StartTrustd(top) // runs on after this step
		id, err := k.WaitRunning("late", kubeletTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pod %s running %v after trustd came back", harness.KubeletPodName("late"), time.Since(back).Round(time.Millisecond))
		if err := s.Node.WaitContainerLog(id, signed.message, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("6 kubelet retries the refused pods by itself, refused each time", func(t *testing.T) {
		// Refusals with trustd's reason, after trustd came back: kubelet
		// retries a refused creation every 10-15 s.
		pod := `pod="default/` + harness.KubeletPodName("sideloaded") + `"`
		deadline := time.Now().Add(2 * kubeletTimeout)
		for {
			refusals := k.LogLines("Error syncing pod", pod, "CreateContainerError", "trustd: denied")
			if len(refusals) >= 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kubelet retried pod %s %d times with trustd's refusal in %v, want 3", harness.KubeletPodName("sideloaded"), len(refusals), time.Since(podsAdded).Round(time.Second))
			}
			time.Sleep(500 * time.Millisecond)
		}
		noContainers(t, k, "sideloaded")
		noContainers(t, k, "unsigned")
		// What trustd logged for one pod that kubelet retries.
		var lines []string
		for _, td := range []*harness.Trustd{first, s.Trustd} {
			lines = append(lines, decisionLines(td.Logs(), "sideloaded")...)
		}
		t.Logf("trustd logged %d WARN decision lines for pod %s over %v of kubelet's retries (kubelet: %d CreateContainerError lines, %d of them with trustd's reason; trustd stopped for part of it)",
			len(lines), harness.KubeletPodName("sideloaded"), time.Since(podsAdded).Round(time.Second),
			len(k.LogLines("Error syncing pod", pod, "CreateContainerError")), len(k.LogLines("Error syncing pod", pod, "CreateContainerError", "trustd: denied")))
		if len(lines) > 0 {
			t.Logf("the first: %s", lines[0])
		}
		// Each trustd process logs a repeated refusal in full once; the
		// repeats within a minute are counted, not logged.
		if refused := len(k.LogLines("Error syncing pod", pod, "CreateContainerError", "trustd: denied")); len(lines) > 2 || len(lines) >= refused {
			t.Errorf("trustd logged %d full decision lines for %d refusals of one pod by two trustd processes: want one per process", len(lines), refused)
		}
		unsignedPod := `pod="default/` + harness.KubeletPodName("unsigned") + `"`
		t.Logf("pod %s: kubelet logged %d ErrImagePull and %d ImagePullBackOff lines; trustd %d WARN decision lines for %s",
			harness.KubeletPodName("unsigned"), len(k.LogLines(unsignedPod, "with ErrImagePull")), len(k.LogLines(unsignedPod, "ImagePullBackOff")),
			len(decisionLinesFor(first.Logs(), unsigned.ref))+len(decisionLinesFor(s.Trustd.Logs(), unsigned.ref)), unsigned.ref)
	})
}

// kubeletRefused waits for kubelet to report the static pod named pod in
// state (ErrImagePull, ImagePullBackOff, CreateContainerError) and checks
// that kubelet's words carry trustd's reason with fragments.
func kubeletRefused(t *testing.T, k *harness.Kubelet, pod, state string, fragments ...string) {
	t.Helper()
	line, err := k.WaitLog(kubeletTimeout, "Error syncing pod", `pod="default/`+harness.KubeletPodName(pod)+`"`, state)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append([]string{fragTrustd, fragDenied}, fragments...) {
		if !strings.Contains(unescaped(line), f) {
			t.Errorf("kubelet's %s lacks trustd's %q:\n%s", state, f, line)
		}
	}
	t.Logf("kubelet: %s", line)
}

// noContainers checks that the static pod named pod has no container.
func noContainers(t *testing.T, k *harness.Kubelet, pod string) {
	t.Helper()
	cs, err := k.Containers(pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 0 {
		t.Errorf("pod %s has containers: %v", harness.KubeletPodName(pod), cs)
	}
}

// decisionLines returns trustd's WARN decision lines for the static pod
// named pod.
func decisionLines(logs, pod string) []string {
	return decisionLinesFor(logs, `"pod":"`+harness.KubeletPodName(pod)+`"`)
}

// decisionLinesFor returns trustd's WARN decision lines that contain s.
func decisionLinesFor(logs, s string) []string {
	var lines []string
	for line := range strings.Lines(logs) {
		if containsAll(line, `"level":"WARN"`, `"msg":"decision"`, s) {
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	return lines
}

func containsAll(s string, substrs ...string) bool {
	for _, sub := range substrs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
