package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

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

// TestIndexTUFHostSpellings: target names that spell one registry host
// differently are one repository; a role that signs different digests
// under two spellings of one tag signs neither, whatever the order.
func TestIndexTUFHostSpellings(t *testing.T) {
	expires := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	targets := metadata.Targets(expires)
	sum := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	add := func(name, content string) {
		targets.Signed.Targets[name] = &metadata.TargetFiles{Length: 1, Hashes: metadata.Hashes{"sha256": sum(content)}}
	}
	add("REGISTRY.corp.example/app:1", "a")
	add("registry.corp.example:443/app:2", "b")
	add("registry.corp.example/app:2", "b") // the same digest: agrees
	add("registry.corp.example/app:3", "c")
	add("Registry.Corp.Example/app:3", "evil") // another digest: neither counts
	tm := &trustedmetadata.TrustedMetadata{
		Root:    metadata.Root(expires),
		Targets: map[string]*metadata.Metadata[metadata.TargetsType]{metadata.TARGETS: targets},
	}
	repos, problems := IndexTUF("corp", tm, TUFDelegations{})
	r := repos["registry.corp.example/app"]
	if len(repos) != 1 || r == nil {
		t.Fatalf("repositories %v, want registry.corp.example/app alone", repos)
	}
	want := map[string]string{"1": "a", "2": "b"}
	if len(r.Tags) != len(want) {
		t.Errorf("tags %v, want 1 and 2", r.Tags)
	}
	for tag, content := range want {
		got := r.Tags[tag][metadata.TARGETS].Digest
		if got != digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(sum(content))) {
			t.Errorf("tag %s: digest %s", tag, got)
		}
		if o := r.Order[tag]; len(o) != 1 || o[0] != metadata.TARGETS {
			t.Errorf("tag %s: order %v", tag, o)
		}
	}
	if len(problems) != 1 || !strings.Contains(problems[0], `targets "Registry.Corp.Example/app:3" and "registry.corp.example/app:3" of role targets name the same image registry.corp.example/app:3 with different digests: neither counts`) {
		t.Errorf("problems = %q", problems)
	}
}
