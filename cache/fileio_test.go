package cache

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A sweep of a directory removes the temporary files interrupted writes
// left behind, and nothing else: not the data, not a write in flight.
func TestRemoveStaleTempsIn(t *testing.T) {
	dir := t.TempDir()
	files := map[string]bool{ // name: survives the sweep
		"docker.io%2Fa.json":                true,
		"docker.io%2Fa.json.index":          true,
		".docker.io%2Fa.json.tmp-123":       false, // a crash's leftover
		".docker.io%2Fb.json.index.tmp-456": false,
		".docker.io%2Fc.json.tmp-789":       true, // a write in flight
		".hidden":                           true,
	}
	old := time.Now().Add(-2 * staleTempAge)
	for name := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if name != ".docker.io%2Fc.json.tmp-789" {
			os.Chtimes(p, old, old)
		}
	}
	RemoveStaleTempsIn(dir)
	for name, survives := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if exists := err == nil; exists != survives {
			t.Errorf("%s: exists=%v, want %v", name, exists, survives)
		}
	}
	RemoveStaleTempsIn(filepath.Join(dir, "missing")) // no directory: nothing to do
}
