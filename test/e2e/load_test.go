package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trustd/trustd/test/harness"
)

// TestSustainedLoad: creations and pulls, allowed and denied, for a
// bounded time; every verdict must be right, and trustd's goroutines and
// memory must stay flat (a leak detector, not a speed test: the figures
// are logged).
func TestSustainedLoad(t *testing.T) {
	harness.Prereqs(t)
	s := harness.StartStack(t, harness.StackOptions{})
	signed := newImage(t, s, "demo/hello:1.0", "signed image running")
	unsigned := newImage(t, s, "demo/unsigned:1.0", "unsigned image running")
	_, manifest := harness.Push(t, signed.ref, signed.img)
	harness.Push(t, unsigned.ref, unsigned.img)
	s.TUF.SetTarget(signed.ref, manifest)
	if err := s.TUF.Publish(); err != nil {
		t.Fatal(err)
	}
	writePolicy(t, s, fmt.Sprintf(`
[[rule]]
images = [%q]
action = "verify"
source = "corp"
[[rule]]
images = ["**"]
action = "deny"
`, s.Registry+"/demo/**"))
	s.Sync(t)
	td := s.StartTrustd(t)
	tar := filepath.Join(t.TempDir(), "unsigned.tar")
	harness.DockerSaveTar(t, tar, map[string]v1.Image{unsigned.ref: unsigned.img})
	s.Node.ImportArchive(t, tar, unsigned.ref)
	if _, err := s.Node.PullImage(signed.ref); err != nil {
		t.Fatal(err)
	}
	pod := s.Node.RunPod(t, "load", "default")

	var ops, wrong atomic.Int64
	var firstWrong atomic.Value
	run := func(d time.Duration) {
		var wg sync.WaitGroup
		stop := time.Now().Add(d)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; time.Now().Before(stop); i++ {
					name := fmt.Sprintf("w%d-%d", w, i)
					var ok bool
					switch i % 4 {
					case 0:
						id, err := s.Node.CreateContainer(pod.ID, pod.Config, name, signed.ref)
						ok = err == nil
						if ok {
							_ = s.Node.RemoveContainer(id)
						}
					case 1:
						_, err := s.Node.CreateContainer(pod.ID, pod.Config, name, unsigned.ref)
						ok = err != nil && strings.Contains(harness.Reason(err), "trustd: denied")
					case 2:
						_, err := s.Node.PullImage(signed.ref)
						ok = err == nil
					case 3:
						_, err := s.Node.PullImage(unsigned.ref)
						ok = err != nil && strings.Contains(harness.Reason(err), "trustd: denied")
					}
					ops.Add(1)
					if !ok {
						wrong.Add(1)
						firstWrong.CompareAndSwap(nil, fmt.Sprintf("op %d of worker %d", i%4, w))
					}
				}
			}(w)
		}
		wg.Wait()
	}
	run(5 * time.Second) // warm up: caches, connections
	g0, rss0 := sample(t, td.Pid())
	start := time.Now()
	run(15 * time.Second)
	took := time.Since(start)
	g1, rss1 := sample(t, td.Pid())
	t.Logf("%d operations in %v (%.0f/s; creations and pulls, half allowed, half denied): %d wrong; trustd goroutines %d -> %d, RSS %.1f -> %.1f MiB",
		ops.Load(), took.Round(time.Millisecond), float64(ops.Load())/took.Seconds(), wrong.Load(), g0, g1, float64(rss0)/(1<<20), float64(rss1)/(1<<20))
	if wrong.Load() != 0 {
		t.Fatalf("%d wrong verdicts (first: %v)", wrong.Load(), firstWrong.Load())
	}
	if g1 > g0+20 {
		t.Errorf("goroutines grew from %d to %d under steady load", g0, g1)
	}
	if rss1 > rss0*3/2+16<<20 {
		t.Errorf("RSS grew from %d to %d bytes under steady load", rss0, rss1)
	}
}

// sample reads trustd's goroutine count from its metrics and its resident
// memory from /proc.
func sample(t *testing.T, pid int) (goroutines int, rss int64) {
	t.Helper()
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
			goroutines, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb << 10
		}
	}
	if goroutines == 0 || rss == 0 {
		t.Fatalf("could not sample trustd: goroutines %d, rss %d", goroutines, rss)
	}
	return goroutines, rss
}
