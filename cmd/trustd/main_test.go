package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/test/harness"
)

func trustd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"trustd"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// writePolicy writes dir/policy.toml: enforce, a cache and control socket
// in dir, the TUF source at tufURL pinned to root for 127.0.0.1:5000/**,
// verify 127.0.0.1:5000/demo/**, deny the rest.
func writePolicy(t *testing.T, dir, tufURL, root string) string {
	t.Helper()
	return writeTUFPolicy(t, dir, tufURL, root, "127.0.0.1:5000")
}

// tufPolicy is testdata/tuf-policy.toml.tmpl: q quotes its arguments
// joined; .Dir is the test's directory, .Registry the registry host, .TUFURL
// and .TUFRoot the TUF source's URL and pinned root.
var tufPolicy = template.Must(template.New("tuf-policy.toml.tmpl").Funcs(template.FuncMap{
	"q": func(s ...string) string { return strconv.Quote(strings.Join(s, "")) },
}).ParseFiles("testdata/tuf-policy.toml.tmpl"))

// writeTUFPolicy writes dir/policy.toml from testdata/tuf-policy.toml.tmpl
// for the registry host registry.
func writeTUFPolicy(t *testing.T, dir, tufURL, root, registry string) string {
	t.Helper()
	var buf bytes.Buffer
	err := tufPolicy.Execute(&buf, struct{ Dir, TUFURL, TUFRoot, Registry string }{dir, tufURL, root, registry})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLISyncVerifyInspect(t *testing.T) {
	repo := harness.NewTUFRepo(t)
	m := []byte(`{"schemaVersion":2,"config":{"digest":"` + string(digest.FromString("cfg")) + `"}}`)
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", m)
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := writePolicy(t, dir, repo.URL(), repo.RootPath())
	signed := digest.FromBytes(m)

	// Before a sync: denied, with the reason.
	code, out, _ := trustd(t, "verify", "--config", cfg, "127.0.0.1:5000/demo/hello:1.0")
	if code != 1 || !strings.Contains(out, "no trust data cached yet") {
		t.Fatalf("before sync: %d %q", code, out)
	}
	code, out, errs := trustd(t, "sync", "--config", cfg)
	if code != 0 || !strings.Contains(out, "corp: updated") {
		t.Fatalf("sync: %d %q %q", code, out, errs)
	}
	// Offline from here on.
	if err := repo.Stop(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"signed tag", []string{"127.0.0.1:5000/demo/hello:1.0"}, 0, []string{"trustd: allowed", string(signed)}},
		{"signed digest", []string{"127.0.0.1:5000/demo/hello@" + string(signed)}, 0, []string{"trustd: allowed"}},
		{"unsigned tag", []string{"127.0.0.1:5000/demo/hello:2.0"}, 1, []string{"trustd: denied", `tag "2.0"`, "is not signed"}},
		{"moved digest", []string{"127.0.0.1:5000/demo/hello:1.0@" + string(digest.FromString("evil"))}, 1, []string{"not the signed digest"}},
		{"catch-all", []string{"quay.io/x/y:1"}, 1, []string{"the rule denies"}},
		{"flags after images", []string{"127.0.0.1:5000/demo/hello:1.0", "--namespace", "prod"}, 0, []string{"in namespace prod"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := trustd(t, append([]string{"verify", "--config", cfg}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s %s", code, tc.code, out, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q: %s", w, out)
				}
			}
		})
	}

	code, out, _ = trustd(t, "verify", "--config", cfg, "--json", "127.0.0.1:5000/demo/hello:1.0", "127.0.0.1:5000/demo/hello:9")
	if code != 1 {
		t.Fatalf("json: exit %d", code)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var objs []map[string]any
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"image", "digest", "allowed", "rule", "source", "signers", "reason"} {
			if _, ok := m[k]; !ok {
				t.Errorf("JSON lacks %q: %v", k, m)
			}
		}
		objs = append(objs, m)
	}
	if len(objs) != 2 || objs[0]["allowed"] != true || objs[1]["allowed"] != false {
		t.Fatalf("json verdicts: %v", objs)
	}

	code, out, _ = trustd(t, "inspect", "--config", cfg, "127.0.0.1:5000/demo/hello")
	if code != 0 || !strings.Contains(out, "1.0") || !strings.Contains(out, string(signed)) || !strings.Contains(out, "targets") {
		t.Fatalf("inspect: %d %s", code, out)
	}
	code, out, _ = trustd(t, "status", "--config", cfg)
	if code != 0 || !strings.Contains(out, "source corp") || !strings.Contains(out, "1 repositories, 1 tags") {
		t.Fatalf("status: %d %s", code, out)
	}
	// The server is down: sync fails, a line says so, the cache is kept.
	code, out, _ = trustd(t, "sync", "--config", cfg)
	if code != 1 || !strings.Contains(out, "corp: FAILED") {
		t.Fatalf("sync while down: %d %s", code, out)
	}
	if code, _, _ := trustd(t, "verify", "--config", cfg, "127.0.0.1:5000/demo/hello:1.0"); code != 0 {
		t.Fatal("a failed sync lost the cache")
	}
}

func TestCLIUsageAndConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("version = 1\nmode = \"enforced\"\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "usage"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"verify without images", []string{"verify", "--config", bad}, 2, "usage"},
		{"verify with a bad policy", []string{"verify", "--config", bad, "x"}, 2, "bad.toml:2"},
		{"missing policy", []string{"verify", "--config", filepath.Join(dir, "none.toml"), "x"}, 2, "none.toml"},
		{"policy check finds errors", []string{"policy", "check", bad}, 1, "bad.toml:2"},
		{"unknown flag", []string{"verify", "--frob", "x"}, 2, "frob"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := trustd(t, tc.args...)
			if code != tc.code || !strings.Contains(out+errs, tc.want) {
				t.Fatalf("exit %d (want %d), output %q %q", code, tc.code, out, errs)
			}
		})
	}
}
