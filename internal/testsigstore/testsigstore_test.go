package testsigstore

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestOnlyTestsImport: no package of trustd but the test harness imports
// this one outside its tests (go list's Imports leave test files out).
func TestOnlyTestsImport(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/trustd/trustd/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const self = "github.com/trustd/trustd/internal/testsigstore"
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] != "github.com/trustd/trustd/test/harness" && slices.Contains(f[1:], self) {
			t.Errorf("%s imports %s outside its tests", f[0], self)
		}
	}
}
