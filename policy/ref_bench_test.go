package policy_test

import (
	"testing"

	"github.com/trustd/trustd/policy"
)

// BenchmarkParseRef parses image references as the decision path does:
// already normalised (by tag, by digest, with a port) and familiar names
// that need Docker's defaults.
func BenchmarkParseRef(b *testing.B) {
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, c := range []struct{ name, ref string }{
		{"normalised-tag", "docker.io/library/nginx:1.25"},
		{"normalised-digest", "registry.example/team/app@" + dgst},
		{"port-tag-digest", "registry.example:5000/team/app:v1.2.3@" + dgst},
		{"familiar", "nginx"},
		{"familiar-tag", "team/app:1"},
		{"invalid", "Nginx:1"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = policy.ParseRef(c.ref)
			}
		})
	}
}

// BenchmarkNormalizeRepo normalises repository names, as the index does
// for every TUF target when it is built.
func BenchmarkNormalizeRepo(b *testing.B) {
	for _, c := range []struct{ name, repo string }{
		{"normalised", "registry.example/team/app"},
		{"familiar", "nginx"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = policy.NormalizeRepo(c.repo)
			}
		})
	}
}
