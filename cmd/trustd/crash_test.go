package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/test/harness"
)

// TestMain lets the crash test run this test binary as trustd itself.
func TestMain(m *testing.M) {
	if os.Getenv("TRUSTD_TEST_AS_TRUSTD") == "1" {
		os.Exit(run(append([]string{"trustd"}, os.Args[1:]...), os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestSyncKilledAtRandomPoints kills `trustd sync` with SIGKILL at random
// moments, many times, while the repository keeps publishing new versions:
// the cache must always load, with the last good or the new good data,
// never a mix and never nothing.
func TestSyncKilledAtRandomPoints(t *testing.T) {
	const rounds = 100
	repo := harness.NewTUFRepo(t)
	// Enough targets that writing the cache takes a while.
	for i := range 600 {
		repo.SetTargetDigest(fmt.Sprintf("127.0.0.1:5000/demo/app%d:1", i), digest.FromString(fmt.Sprint(i)), 1000)
	}
	repo.SetTargetDigest("127.0.0.1:5000/demo/hello:v0", digest.FromString("v0"), 10)
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := writePolicy(t, dir, repo.URL(), repo.RootPath())
	if code, out, errs := trustd(t, "sync", "--config", cfg); code != 0 {
		t.Fatalf("first sync: %s %s", out, errs)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// How long a whole sync of a new version takes: kills land anywhere
	// from the start of the process to a little after its end.
	repo.SetTargetDigest("127.0.0.1:5000/demo/hello:probe", digest.FromString("probe"), 10)
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	probe := exec.Command(exe, "sync", "--config", cfg)
	probe.Env = append(os.Environ(), "TRUSTD_TEST_AS_TRUSTD=1")
	if out, err := probe.CombinedOutput(); err != nil {
		t.Fatalf("sync: %v\n%s", err, out)
	}
	span := time.Since(start) * 5 / 4
	t.Logf("a sync takes %v; killing at random within %v", time.Since(start).Round(time.Millisecond), span.Round(time.Millisecond))
	published, good := 0, -1 // good: the newest version a sync completed
	killed, completed := 0, 0
	for round := range rounds {
		if round%4 == 0 {
			published++
			repo.SetTargetDigest(fmt.Sprintf("127.0.0.1:5000/demo/hello:v%d", published), digest.FromString(fmt.Sprint("v", published)), 10)
			if err := repo.Publish(); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(exe, "sync", "--config", cfg)
		cmd.Env = append(os.Environ(), "TRUSTD_TEST_AS_TRUSTD=1")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.Int64N(int64(span))))
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		// The span adapts to the machine's load: shorter after a sync
		// that completed first, longer after a kill, so that kills keep
		// landing before, during and after the writes.
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
			span = span * 21 / 20
		} else if err == nil {
			completed++
			good = published
			span = max(span*4/5, time.Millisecond)
		}
		// The cache loads, and holds a complete version: the first target
		// and the last one of that version are there together.
		check := []string{"verify", "--config", cfg, "--json", "127.0.0.1:5000/demo/hello:v0", "127.0.0.1:5000/demo/app599:1"}
		if good >= 0 { // never older than what a completed sync wrote
			check = append(check, fmt.Sprintf("127.0.0.1:5000/demo/hello:v%d", good))
		}
		code, out, errs := trustd(t, check...)
		if code != 0 {
			t.Fatalf("round %d: the cache does not load after a kill: exit %d\n%s\n%s", round, code, out, errs)
		}
		if strings.Contains(errs, "moved aside") {
			t.Fatalf("round %d: a cache file was corrupt: %s", round, errs)
		}
	}
	t.Logf("%d rounds: %d syncs killed, %d completed", rounds, killed, completed)
	if killed < rounds/4 || completed == 0 {
		t.Errorf("only %d of %d syncs were killed mid-way: the test did not exercise crashes", killed, rounds)
	}
	// After all that, a clean sync brings the newest data.
	published++
	repo.SetTargetDigest(fmt.Sprintf("127.0.0.1:5000/demo/hello:v%d", published), digest.FromString(fmt.Sprint("v", published)), 10)
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := trustd(t, "sync", "--config", cfg); code != 0 {
		t.Fatalf("final sync: %s %s", out, errs)
	}
	if code, out, _ := trustd(t, "verify", "--config", cfg, fmt.Sprintf("127.0.0.1:5000/demo/hello:v%d", published)); code != 0 {
		t.Fatalf("newest tag after the final sync: %s", out)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "cache", "sources", "corp", ".*tmp*")); len(leftovers) > 0 {
		t.Errorf("temporary files of killed syncs outlive a clean sync: %v", leftovers)
	}
}
