package policy_test

import (
	"testing"

	"github.com/trustd/trustd/internal/gen"
	"github.com/trustd/trustd/policy"
)

// BenchmarkParseGenerated parses and validates the 52-rule policy of the
// benchmark data set, as every trustd-verifier process does before it
// asks the daemon.
func BenchmarkParseGenerated(b *testing.B) {
	dir := b.TempDir()
	src := gen.Policy(gen.PolicyOptions{
		CacheDir: dir, ControlSocket: dir + "/trustd.sock",
		TUF:    &gen.PolicyTUF{URL: gen.UnreachableURL + "/metadata/", Root: dir + "/root.json"},
		Notary: &gen.PolicyNotary{URL: gen.UnreachableURL},
	})
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		p, err := policy.Parse("policy.toml", src)
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Rules) != gen.PolicyRules {
			b.Fatal(len(p.Rules))
		}
	}
}
