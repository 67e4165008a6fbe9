package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TRUSTD_CPUPROFILE and TRUSTD_TRACE each get their file, written when
// profiling stops; an unwritable path is an error that names the variable.
func TestStartProfiling(t *testing.T) {
	dir := t.TempDir()
	cpu, tr := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "trace.out")
	t.Setenv(envCPUProfile, cpu)
	t.Setenv(envTrace, tr)
	stop, err := startProfiling()
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cpu, tr} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
	t.Setenv(envCPUProfile, "")
	t.Setenv(envTrace, filepath.Join(dir, "missing", "trace.out"))
	stop, err = startProfiling()
	if err == nil || !strings.Contains(err.Error(), envTrace) {
		t.Errorf("unwritable trace path: %v", err)
	}
	stop()
}
