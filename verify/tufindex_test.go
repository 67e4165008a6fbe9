package verify

import (
	"strings"
	"testing"
	"time"

	"github.com/trustd/trustd/policy"
)

// TestMatchTUFPath: the specification's path patterns (fnmatch per part).
func TestMatchTUFPath(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"r.example/team/*", "r.example/team/app:1", true},
		{"r.example/*", "r.example/team/app:1", false}, // '*' does not cross '/'
		{"r.example/team/app:v?", "r.example/team/app:v1", true},
		{"r.example/team/app:v?", "r.example/team/app:v10", false},
		{"r.example/team/app:v?", "r.example/team/app:V1", false}, // case-sensitive
		{"r.example/team/app:v[0-4]", "r.example/team/app:v3", true},
		{"r.example/team/app:v[!0-4]", "r.example/team/app:v3", false},
		{"r.example/team/app:v[!0-4]", "r.example/team/app:v7", true},
		{"r.example/team/app:v[", "r.example/team/app:v[", true},   // unclosed '[' is literal
		{`r.example/team/app:v\1`, "r.example/team/app:v1", false}, // no escape character
		{"*/*/*", "r.example/team/app:1", true},
		{"r.example/team/*:*1*", "r.example/team/app:v10", true},
		{"", "", true},
	} {
		if got := MatchTUFPath(tc.pattern, tc.name); got != tc.want {
			t.Errorf("MatchTUFPath(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

// TestDecideRefusedTag: a refused tag (Repo.Denied) is denied with its
// reason, survives the binary form, and never allows a digest-only
// reference.
func TestDecideRefusedTag(t *testing.T) {
	p, err := policy.Parse("policy.toml", []byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	why := `target "registry.example.com/apps/web:3.0" is in the paths of delegated role a (delegated by targets), which could not be used: expired`
	repos := map[string]*Repo{"registry.example.com/apps/web": {
		Source: "corp", Name: "registry.example.com/apps/web", Expires: time.Now().Add(time.Hour),
		Tags:   map[string]RoleTargets{"1.0": {"targets": {Digest: dg("web-1.0")}}},
		Denied: map[string]string{"3.0": why},
	}}
	b, err := NewTrust(repos).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := DecodeTrust(b)
	if err != nil {
		t.Fatal(err)
	}
	ix := NewIndex(NewSourceIndexOf("corp", "tuf", tr))
	d := Decide(p, ix, Facts{Image: "registry.example.com/apps/web:3.0", Digest: dg("web-3.0")}, time.Now())
	if d.Allowed || !strings.Contains(d.Reason, "is refused: "+why) {
		t.Fatalf("decision: %+v", d)
	}
	if d := Decide(p, ix, Facts{Image: "registry.example.com/apps/web:1.0", Digest: dg("web-1.0")}, time.Now()); !d.Allowed {
		t.Fatalf("a signed tag beside a refused one: %s", d.Reason)
	}
	if got := ix.Source("corp").Repo("registry.example.com/apps/web").Denied["3.0"]; got != why {
		t.Errorf("materialised: %q", got)
	}
}
