package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trustd/trustd/cache/publish"
	"github.com/trustd/trustd/test/harness"
)

// tufjsScript resolves target names with tuf-js's Updater (refresh, then
// getTargetInfo for each name) and prints one JSON object per name.
const tufjsScript = `'use strict';
const { Updater } = require('tuf-js');
const [metadataBaseUrl, metadataDir, targetDir, ...names] = process.argv.slice(2);
(async () => {
  const updater = new Updater({ metadataBaseUrl, metadataDir, targetDir });
  await updater.refresh();
  for (const name of names) {
    const info = await updater.getTargetInfo(name);
    console.log(JSON.stringify(info ? { name, length: info.length, sha256: info.hashes.sha256 } : { name, missing: true }));
  }
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
`

type tufjsInfo struct {
	Name    string `json:"name"`
	Length  int64  `json:"length"`
	SHA256  string `json:"sha256"`
	Missing bool   `json:"missing"`
}

// TestPublishTUFJS: a repository made by trustd repo's package, with a
// delegated role, consistent snapshots and several versions of each role,
// is read by tuf-js (a TUF client independent of go-tuf) as trustd reads
// it: a tag signed into targets, a tag signed into the delegated role, a
// tag re-signed to another digest, and a name nobody signs.
func TestPublishTUFJS(t *testing.T) {
	modules := filepath.Join(harness.TUFJS(t), "node_modules")
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "repo")
	if _, err := publish.Init(dir, publish.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	team := filepath.Join(tmp, "team")
	if _, err := publish.GenerateKeyPair(team, publish.KeyEd25519, nil); err != nil {
		t.Fatal(err)
	}
	pub, err := publish.ReadPublicKey(team + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	bind := func(image, content string) publish.Binding {
		b, err := publish.NewBinding(image, digest.FromString(content), int64(len(content)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	app, teamApp := "registry.corp.example/app:1.0", "registry.corp.example/team/api:2.0"
	want := map[string]publish.Binding{
		app:     bind(app, "app v1, re-signed"),
		teamApp: bind(teamApp, "team api"),
	}
	r, err := publish.Open(dir, publish.Options{Keys: []string{team}})
	if err != nil {
		t.Fatal(err)
	}
	steps := []func() error{
		func() error {
			_, err := r.Sign(publish.RoleTargets, []publish.Binding{bind(app, "app v1")}, nil)
			return err
		},
		func() error {
			_, err := r.Delegate("team", publish.DelegateOptions{Keys: []*metadata.Key{pub}, Repositories: []string{"registry.corp.example/team/**"}, Terminating: true})
			return err
		},
		func() error { _, err := r.Sign("team", []publish.Binding{want[teamApp]}, nil); return err },
		func() error { _, err := r.Sign(publish.RoleTargets, []publish.Binding{want[app]}, nil); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	r.Close()
	if _, err := os.Stat(filepath.Join(dir, "metadata", "3.targets.json")); err != nil {
		t.Fatalf("want several consistent versions of targets: %v", err)
	}

	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(dir, "metadata"))))
	defer srv.Close()
	mdir := filepath.Join(tmp, "tufjs-metadata")
	if err := os.MkdirAll(mdir, 0o700); err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mdir, "root.json"), root, 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(tmp, "resolve.js")
	if err := os.WriteFile(script, []byte(tufjsScript), 0o600); err != nil {
		t.Fatal(err)
	}
	unsigned := "registry.corp.example/team/other:1"
	cmd := exec.Command("node", script, srv.URL+"/", mdir, filepath.Join(tmp, "targets"), app, teamApp, unsigned)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("tuf-js: %v\n%s%s", err, out, stderr)
	}
	got := map[string]tufjsInfo{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var info tufjsInfo
		if err := json.Unmarshal([]byte(line), &info); err != nil {
			t.Fatalf("tuf-js printed %q: %v", line, err)
		}
		got[info.Name] = info
		t.Logf("tuf-js: %s", line)
	}
	for name, b := range want {
		info := got[name]
		if info.Missing || info.Length != b.Length || "sha256:"+info.SHA256 != string(b.Digest) {
			t.Errorf("tuf-js resolves %s to %+v, want %s (%d bytes)", name, info, b.Digest, b.Length)
		}
	}
	if info, ok := got[unsigned]; !ok || !info.Missing {
		t.Errorf("tuf-js resolves the unsigned %s to %+v", unsigned, info)
	}
	if len(got) != 3 {
		t.Errorf("tuf-js printed %d names: %s", len(got), fmt.Sprint(got))
	}
}
