package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/cache/publish"
	"github.com/trustd/trustd/internal/pullgate"
	"github.com/trustd/trustd/plugin/control"
	"github.com/trustd/trustd/plugin/status"
)

// world is a node without containerd: a TUF repository made with trustd's
// own publishing side, served on loopback, and a policy for it. The NRI
// socket does not exist, so the daemon keeps retrying NRI while its control
// socket, sync loop and reload work: what this test drives.
type world struct {
	dir, policyPath, sock string
	repo                  string // the repository directory
	signed                digest.Digest
	server                *httptest.Server
}

const image = "registry.example.com/app"

func newWorld(t *testing.T) *world {
	t.Helper()
	dir, err := os.MkdirTemp("", "dmn") // short: Unix socket paths are bounded
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	w := &world{dir: dir, policyPath: filepath.Join(dir, "policy.toml"), sock: filepath.Join(dir, "run", "t.sock"), repo: filepath.Join(dir, "repo"), signed: digest.FromString("app-1")}
	in, err := publish.Init(w.repo, publish.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.sign(t, "1", w.signed)
	w.server = httptest.NewServer(http.FileServer(http.Dir(filepath.Join(w.repo, "metadata"))))
	t.Cleanup(w.server.Close)
	root, err := os.ReadFile(in.RootPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "root.json"), root, 0o600); err != nil {
		t.Fatal(err)
	}
	w.writePolicy(t, "verify")
	return w
}

func (w *world) sign(t *testing.T, tag string, d digest.Digest) {
	t.Helper()
	r, err := publish.Open(w.repo, publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Sign("targets", []publish.Binding{{Name: image + ":" + tag, Digest: d, Length: 10}}, nil); err != nil {
		t.Fatal(err)
	}
}

func (w *world) writePolicy(t *testing.T, action string) {
	t.Helper()
	url := "http://127.0.0.1:1/" // replaced once the server runs
	if w.server != nil {
		url = w.server.URL + "/"
	}
	p := fmt.Sprintf(`version = 1
[daemon]
cache_dir = %q
refresh = "1h"
nri_socket = %q
containerd_address = %q
control_socket = %q

[[source]]
name = "corp"
kind = "tuf"
url = %q
root = %q
repositories = ["registry.example.com/**"]

[[rule]]
images = ["registry.example.com/**"]
action = %q
source = "corp"
`, filepath.Join(w.dir, "cache"), filepath.Join(w.dir, "no-nri.sock"), filepath.Join(w.dir, "no-containerd.sock"), w.sock, url, filepath.Join(w.dir, "root.json"), action)
	if action != "verify" {
		p = strings.Replace(p, "source = \"corp\"\n", "", 1)
	}
	if err := os.WriteFile(w.policyPath, []byte(p), 0o600); err != nil {
		t.Fatal(err)
	}
}

// pull runs the pull gate against the daemon, as trustd-verifier does.
func (w *world) pull(t *testing.T, tag string, d digest.Digest) (int, string) {
	t.Helper()
	r, err := pullgate.Relay([]string{"-name", image + ":" + tag, "-digest", string(d)}, nil, w.policyPath, time.Now().Add(pullgate.Deadline))
	if err != nil {
		t.Fatal(err)
	}
	return r.Code, string(r.Output)
}

func (w *world) status(t *testing.T) *status.DaemonStatus {
	t.Helper()
	var st status.DaemonStatus
	if err := (&control.ControlClient{Socket: w.sock}).Get(context.Background(), http.MethodGet, "/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// TestDaemonSyncAndReload: the daemon serves its control socket before NRI
// connects; its first sync installs verified trust data (a signed pull is
// allowed, a moved tag denied); a policy that does not load is rejected on
// reload and the last good one keeps deciding; a good one takes effect at
// once; a sync requested over the socket installs newly signed data.
func TestDaemonSyncAndReload(t *testing.T) {
	w := newWorld(t)
	d := &Daemon{ConfigPath: w.policyPath, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})

	// The control socket comes first, then the first sync round.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(w.sock); err == nil {
			if st := w.status(t); len(st.Sources) == 1 && !st.Sources[0].LastSuccess.IsZero() {
				if st.NRIConnected {
					t.Error("NRI connected to a socket that does not exist")
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no synced source in the status after 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, out := w.pull(t, "1", w.signed); code != 0 {
		t.Fatalf("signed pull: %d %s", code, out)
	}
	if code, out := w.pull(t, "1", digest.FromString("moved")); code != 1 || !strings.Contains(out, "not the signed digest") {
		t.Fatalf("moved tag: %d %s", code, out)
	}

	// A broken policy is rejected; the last good one decides.
	if err := os.WriteFile(w.policyPath, []byte("version = 1\nmode = \"enforced\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.Reload()
	if st := w.status(t); !strings.Contains(st.ReloadError, "policy.toml:2") {
		t.Errorf("reload error %q, want the broken line", st.ReloadError)
	}
	// (The relayed pull checks the policy file it was given, which is
	// broken now: decisions from the daemon's memory are shown by status.)
	w.writePolicy(t, "verify")
	d.Reload()
	if st := w.status(t); st.ReloadError != "" {
		t.Errorf("reload of a good policy: %q", st.ReloadError)
	}
	if code, out := w.pull(t, "1", w.signed); code != 0 {
		t.Fatalf("signed pull after reloads: %d %s", code, out)
	}

	// A deny-all policy takes effect at once.
	w.writePolicy(t, "deny")
	d.Reload()
	if code, out := w.pull(t, "1", w.signed); code != 1 || !strings.Contains(out, "the rule denies") {
		t.Fatalf("after a deny-all reload: %d %s", code, out)
	}
	w.writePolicy(t, "verify")
	d.Reload()

	// Newly signed data arrives with a sync asked for over the socket.
	two := digest.FromString("app-2")
	if code, _ := w.pull(t, "2", two); code != 1 {
		t.Fatal("tag 2 allowed before it was signed")
	}
	w.sign(t, "2", two)
	var res []cache.SyncResult
	if err := (&control.ControlClient{Socket: w.sock, Timeout: 30 * time.Second}).Get(context.Background(), http.MethodPost, "/v1/sync", &res); err != nil {
		t.Fatal(err)
	}
	if code, out := w.pull(t, "2", two); code != 0 {
		t.Fatalf("tag 2 after the sync: %d %s (sync: %+v)", code, out, res)
	}
}
