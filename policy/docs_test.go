package policy

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

var tomlBlock = regexp.MustCompile("(?s)```toml\n(.*?)```")

// TestDocsExamples: every TOML example in the README and docs/POLICY.md is
// valid TOML, and every one that is a whole policy (it has a version)
// parses as a policy; a fragment with rules parses once sources of the
// names it uses are added.
func TestDocsExamples(t *testing.T) {
	for _, file := range []string{"../README.md", "../docs/POLICY.md"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		blocks := tomlBlock.FindAllStringSubmatch(string(data), -1)
		if len(blocks) == 0 {
			t.Fatalf("%s: no TOML examples", file)
		}
		for i, b := range blocks {
			text := b[1]
			var v map[string]any
			if err := toml.Unmarshal([]byte(text), &v); err != nil {
				t.Errorf("%s: example %d is not TOML: %v\n%s", file, i+1, err, text)
				continue
			}
			if _, ok := v["rule"]; !ok {
				continue
			}
			if _, ok := v["version"]; !ok {
				text = "version = 1\n" + text
			}
			if _, err := Parse("example.toml", []byte(text+sourcesFor(v))); err != nil {
				t.Errorf("%s: example %d: %v\n%s", file, i+1, err, text)
			}
		}
	}
}

// sourcesFor returns stub [[source]] tables for the sources an example's
// rules (and their also tables) name but it does not define: sigstore
// (with a trusted root) for those whose rules have keys or identities,
// tuf otherwise.
func sourcesFor(v map[string]any) string {
	defined := map[string]bool{}
	if ss, ok := v["source"].([]any); ok {
		for _, s := range ss {
			if m, ok := s.(map[string]any); ok {
				defined[fmt.Sprint(m["name"])] = true
			}
		}
	}
	var out strings.Builder
	need := func(m map[string]any) {
		name, ok := m["source"].(string)
		if !ok || defined[name] {
			return
		}
		defined[name] = true
		_, keys := m["keys"]
		_, ids := m["identities"]
		if keys || ids {
			fmt.Fprintf(&out, "\n[[source]]\nname = %q\nkind = \"sigstore\"\nrepositories = [\"**\"]\ntrusted_root = \"trusted_root.json\"\n", name)
			return
		}
		fmt.Fprintf(&out, "\n[[source]]\nname = %q\nkind = \"tuf\"\nurl = \"https://tuf.corp.example/\"\nroot = \"root.json\"\nrepositories = [\"**\"]\n", name)
	}
	rules, _ := v["rule"].([]any)
	for _, r := range rules {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		need(m)
		also, _ := m["also"].([]any)
		for _, a := range also {
			if am, ok := a.(map[string]any); ok {
				need(am)
			}
		}
	}
	return out.String()
}
