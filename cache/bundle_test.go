package cache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/test/harness"
)

func storeFor(t *testing.T, url, root string) *Store {
	t.Helper()
	dir := t.TempDir()
	p, err := policy.Parse(filepath.Join(dir, "policy.toml"), []byte(fmt.Sprintf(`version = 1
[daemon]
cache_dir = %q
[[source]]
name = "corp"
kind = "tuf"
url = %q
root = %q
repositories = ["127.0.0.1:5000/**"]
[[rule]]
images = ["**"]
action = "verify"
source = "corp"
`, filepath.Join(dir, "cache"), url, root)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Registry = nil // no registry in these tests
	return s
}

func TestExportImport(t *testing.T) {
	repo := harness.NewTUFRepo(t)
	m := manifest("a")
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", m)
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	online := storeFor(t, repo.URL(), repo.RootPath())
	now := time.Now()
	if _, _, err := online.SyncSource(t.Context(), online.Sources()[0], now); err != nil {
		t.Fatal(err)
	}
	if err := online.Manifests.Put(digest.FromBytes(m), m); err != nil {
		t.Fatal(err)
	}
	var v1 bytes.Buffer
	lines, err := online.ExportTo(&v1, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "1 signed manifests") {
		t.Fatalf("export: %v", lines)
	}

	// The air-gapped node: the same pinned root, no route to the server.
	offline := storeFor(t, "http://127.0.0.1:1/", repo.RootPath())
	lines, err = offline.ImportFrom(bytes.NewReader(v1.Bytes()), now)
	if err != nil {
		t.Fatalf("import: %v (%v)", err, lines)
	}
	ix, errs := offline.LoadIndex()
	if len(errs) > 0 || ix.Source("corp").Repo("127.0.0.1:5000/demo/hello") == nil {
		t.Fatalf("after import: %v", errs)
	}
	if !offline.Manifests.Has(digest.FromBytes(m)) {
		t.Fatal("signed manifest not imported")
	}

	// A newer bundle is taken; the older one afterwards is refused.
	repo.SetTarget("127.0.0.1:5000/demo/hello:2.0", manifest("b"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := online.SyncSource(t.Context(), online.Sources()[0], now); err != nil {
		t.Fatal(err)
	}
	var v2 bytes.Buffer
	if _, err := online.ExportTo(&v2, nil, now); err != nil {
		t.Fatal(err)
	}
	if _, err := offline.ImportFrom(bytes.NewReader(v2.Bytes()), now); err != nil {
		t.Fatal(err)
	}
	if _, err := offline.ImportFrom(bytes.NewReader(v1.Bytes()), now); err == nil || !strings.Contains(err.Error(), "older than the node's") {
		t.Fatalf("older bundle: %v", err)
	}
	ix, _ = offline.LoadIndex()
	if ix.Source("corp").Repo("127.0.0.1:5000/demo/hello").Tags["2.0"] == nil {
		t.Fatal("the older bundle replaced the newer data")
	}

	// A node pinned to another root refuses the bundle.
	other := harness.NewTUFRepo(t)
	stranger := storeFor(t, other.URL(), other.RootPath())
	if _, err := stranger.ImportFrom(bytes.NewReader(v2.Bytes()), now); err == nil || !strings.Contains(err.Error(), "pinned root") {
		t.Fatalf("foreign root: %v", err)
	}
	// Expired data is refused at import.
	late := storeFor(t, "http://127.0.0.1:1/", repo.RootPath())
	if _, err := late.ImportFrom(bytes.NewReader(v2.Bytes()), now.Add(harness.TUFExpiry+time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired bundle: %v", err)
	}
}

func TestImportTamperedBundle(t *testing.T) {
	repo := harness.NewTUFRepo(t)
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("a"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	online := storeFor(t, repo.URL(), repo.RootPath())
	if _, _, err := online.SyncSource(t.Context(), online.Sources()[0], time.Now()); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := online.ExportTo(&buf, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	var ex Export
	if err := json.Unmarshal(buf.Bytes(), &ex); err != nil {
		t.Fatal(err)
	}
	tb := ex.Sources["corp"].TUF
	tb.Targets = bytes.Replace(tb.Targets, []byte(`"length": `), []byte(`"length": 1`), 1)
	ex.Manifests = map[digest.Digest][]byte{digest.FromString("x"): []byte("not x")}
	b, _ := json.Marshal(ex)
	offline := storeFor(t, "http://127.0.0.1:1/", repo.RootPath())
	_, err := offline.ImportFrom(bytes.NewReader(b), time.Now())
	if err == nil || !strings.Contains(err.Error(), "does not verify") || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("tampered bundle: %v", err)
	}
	if _, err := os.Stat(filepath.Join(offline.Dir, "sources", "corp", "tuf.json")); err == nil {
		t.Fatal("tampered data was written")
	}
	if _, err := offline.ImportFrom(strings.NewReader(`{"format":1,"bogus":true}`), time.Now()); err == nil {
		t.Fatal("unknown fields accepted")
	}
}
