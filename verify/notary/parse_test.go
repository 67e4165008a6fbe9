package notary

import (
	"strings"
	"testing"
)

func TestIsDelegation(t *testing.T) {
	for name, ok := range map[string]bool{
		"targets/releases": true, "targets/a/b-c_d": true, "targets/é9": true,
		"targets": false, "targets/": false, "targets//a": false, "targets/a/": false, "targets/../x": false,
		"targets/a.b": false, "targets/a b": false, "snapshot/a": false, "Targets/a": false,
		"targets/" + strings.Repeat("a", 248): false, "targets/" + strings.Repeat("a", 247): true,
	} {
		if isDelegation(name) != ok {
			t.Errorf("isDelegation(%q) = %v", name, !ok)
		}
	}
}

// TestTargetsStructure: delegation declarations Notary refuses are
// malformed (fatal), as in Notary's isValidTargetsStructure.
func TestTargetsStructure(t *testing.T) {
	k := newECDSAKey(t)
	keys := map[string]any{k.id: k.json()}
	role := func(name string, extra map[string]any) map[string]any {
		r := map[string]any{"name": name, "keyids": []any{k.id}, "threshold": 1, "paths": []any{""}}
		for kk, v := range extra {
			if v == nil {
				delete(r, kk)
			} else {
				r[kk] = v
			}
		}
		return r
	}
	cases := []struct {
		name   string
		parent string
		roles  []any
		err    string
	}{
		{"valid", roleTargets, []any{role(roleReleases, nil)}, ""},
		{"valid nested", roleReleases, []any{role("targets/releases/x", nil)}, ""},
		{"grandchild", roleTargets, []any{role("targets/a/b", nil)}, "is not a valid delegation of targets"},
		{"sibling", roleReleases, []any{role("targets/other", nil)}, "is not a valid delegation of targets/releases"},
		{"bad name", roleTargets, []any{role("targets/a.b", nil)}, "is not a valid delegation"},
		{"twice", roleTargets, []any{role(roleReleases, nil), role(roleReleases, nil)}, "delegated twice"},
		{"unknown key", roleTargets, []any{role(roleReleases, map[string]any{"keyids": []any{"00"}})}, "key ID 00 has no corresponding key"},
		{"threshold 0", roleTargets, []any{role(roleReleases, map[string]any{"threshold": 0})}, "threshold: 0"},
		{"paths and hashes", roleTargets, []any{role(roleReleases, map[string]any{"path_hash_prefixes": []any{"ab"}})}, "both paths and path_hash_prefixes"},
		{"hash prefix not hex", roleTargets, []any{role(roleReleases, map[string]any{"paths": nil, "path_hash_prefixes": []any{"xy"}})}, "not lowercase hex"},
		{"unknown field", roleTargets, []any{role(roleReleases, map[string]any{"terminating": true})}, `unknown field "terminating"`},
		{"paths not strings", roleTargets, []any{role(roleReleases, map[string]any{"paths": []any{1}})}, "expected a string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			signed := map[string]any{"_type": typeTargets, "version": 1, "expires": "2030-01-01T00:00:00Z", "targets": map[string]any{},
				"delegations": map[string]any{"keys": keys, "roles": c.roles}}
			_, _, err := parseTargets(signFile(t, signed, by(k)...), c.parent)
			if c.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("err = %v, want %q", err, c.err)
			}
		})
	}
	if _, _, err := parseTargets([]byte(`{}`), "releases"); err == nil {
		t.Error("role name releases accepted")
	}
}

func TestDecodeJSONLimits(t *testing.T) {
	deep := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	if _, err := decodeJSON([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Error(err)
	}
	ok := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	if _, err := decodeJSON([]byte(ok)); err != nil {
		t.Error(err)
	}
	if _, err := decodeJSON(make([]byte, MaxFileSize+1)); err == nil {
		t.Error("oversized file accepted")
	}
	sigs := `{"signed":{},"signatures":[` + strings.TrimSuffix(strings.Repeat(`{"keyid":"a","method":"ecdsa","sig":""},`, maxSignatures+1), ",") + `]}`
	if _, err := parseEnvelope([]byte(sigs)); err == nil || !strings.Contains(err.Error(), "exceed the limit") {
		t.Error(err)
	}
}
