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
)

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
	repos, problems := IndexTUF("corp", tm)
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
