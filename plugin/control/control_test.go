package control

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/internal/pullgate"
	"github.com/trustd/trustd/plugin/engine"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// node is a control server on a real Unix socket, with an engine over a
// policy that verifies registry.example.com/** against source "corp", and a
// policy file naming the socket, as the pull gate reads it.
type node struct {
	srv     *ControlServer
	sock    string
	policy  string
	signed  digest.Digest
	refresh atomic.Int32
}

func policyText(sock string) string {
	return fmt.Sprintf(`version = 1
[daemon]
control_socket = %q

[[source]]
name = "corp"
kind = "tuf"
url = "https://tuf.example.com/"
root = "root.json"
repositories = ["registry.example.com/**"]

[[rule]]
images = ["registry.example.com/**"]
action = "verify"
source = "corp"
`, sock)
}

func newNode(t *testing.T) *node {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl") // short: Unix socket paths are bounded
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &node{sock: filepath.Join(dir, "run", "trustd.sock"), policy: filepath.Join(dir, "policy.toml"), signed: digest.FromString("web-1")}
	if err := os.WriteFile(n.policy, []byte(policyText(n.sock)), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(n.policy)
	if err != nil {
		t.Fatal(err)
	}
	index := func(tags map[string]verify.RoleTargets) *verify.Index {
		return verify.NewIndex(verify.NewSourceIndex("corp", "tuf", map[string]*verify.Repo{
			"registry.example.com/web": {Source: "corp", Name: "registry.example.com/web", Expires: time.Now().Add(time.Hour), Tags: tags},
		}))
	}
	e := &engine.Engine{}
	e.Swap(&engine.Snapshot{Policy: p, Index: index(map[string]verify.RoleTargets{"1": {"targets": {Digest: n.signed}}})})
	n.srv = &ControlServer{
		Engine: e,
		Status: func(context.Context) any { return map[string]string{"state": "ok"} },
		// A denied pull fetches the repository's trust data once: here,
		// tag 2 appears.
		Refresh: func(ctx context.Context, d verify.Decision) (bool, error) {
			n.refresh.Add(1)
			e.SwapIndex(func(*verify.Index) *verify.Index {
				return index(map[string]verify.RoleTargets{"1": {"targets": {Digest: n.signed}}, "2": {"targets": {Digest: digest.FromString("web-2")}}})
			})
			return true, nil
		},
	}
	if err := n.srv.Listen(n.sock); err != nil {
		t.Fatal(err)
	}
	go n.srv.Serve()
	t.Cleanup(func() { n.srv.Close() })
	return n
}

func pullArgs(ref string, d digest.Digest) []string {
	return []string{"-name", ref, "-digest", string(d), "-stdin-media-type", "application/vnd.oci.descriptor.v1+json"}
}

func descriptor(d digest.Digest) *bytes.Reader {
	return bytes.NewReader([]byte(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + string(d) + `","size":1}`))
}

// TestRelayedPull: the pull gate's relay (internal/pullgate, as
// trustd-verifier sends it) is answered from the daemon's memory: the
// verdict line and exit code; a denied pull fetches trust data once and is
// decided again.
func TestRelayedPull(t *testing.T) {
	n := newNode(t)
	deadline := time.Now().Add(pullgate.Deadline)
	for _, tc := range []struct {
		name, ref string
		dgst      digest.Digest
		code      int
		want      string
		refreshes int32
	}{
		{"signed", "registry.example.com/web:1", n.signed, 0, "trustd: allowed registry.example.com/web:1", 0},
		{"moved tag", "registry.example.com/web:1", digest.FromString("evil"), 1, "not the signed digest", 1},
		{"found by the fetch at the pull", "registry.example.com/web:2", digest.FromString("web-2"), 0, "trustd: allowed registry.example.com/web:2", 1},
		{"outside every rule", "other.example.com/x:1", digest.FromString("x"), 1, "trustd: denied other.example.com/x:1", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n.refresh.Store(0)
			r, err := pullgate.Relay(pullArgs(tc.ref, tc.dgst), descriptor(tc.dgst), n.policy, deadline)
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != tc.code || !strings.Contains(string(r.Output), tc.want) || strings.Count(string(r.Output), "\n") != 1 {
				t.Errorf("exit %d, %q; want %d and %q on one line", r.Code, r.Output, tc.code, tc.want)
			}
			if got := n.refresh.Load(); got > tc.refreshes {
				t.Errorf("%d trust data fetches, want at most %d", got, tc.refreshes)
			}
		})
	}
}

// TestRelayedPullChecksThePolicyFile: the relayed policy file must parse
// and name the socket it was sent to; otherwise the pull is blocked with
// why, though the daemon runs its last good policy.
func TestRelayedPullChecksThePolicyFile(t *testing.T) {
	n := newNode(t)
	good, _ := os.ReadFile(n.policy)
	for _, tc := range []struct {
		name   string
		policy []byte
		socket string
		want   string
	}{
		{"broken policy file", []byte("version = 1\nmode = \"enforced\"\n"), n.sock, "could not decide: configuration error"},
		{"policy file naming another socket", good, "/elsewhere.sock", "names the control socket " + n.sock + ", but the verifier asked /elsewhere.sock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call := pullgate.Call{Args: [][]byte{[]byte("-name"), []byte("registry.example.com/web:1"), []byte("-digest"), []byte(n.signed)}, Config: n.policy, Policy: tc.policy, Socket: tc.socket}
			body := call.AppendJSON(nil)
			c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", n.sock)
			}}}
			resp, err := c.Post("http://trustd"+pullgate.Path, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out bytes.Buffer
			out.ReadFrom(resp.Body)
			if resp.Header.Get(pullgate.ExitHeader) != "1" || !strings.Contains(out.String(), tc.want) {
				t.Errorf("exit %q, %q; want 1 and %q", resp.Header.Get(pullgate.ExitHeader), out.String(), tc.want)
			}
		})
	}
}

// TestControlSocket: mode 0600, one daemon per socket, the status served
// as JSON to the client, and a stale socket file replaced.
func TestControlSocket(t *testing.T) {
	n := newNode(t)
	fi, err := os.Stat(n.sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, mode %v", err, fi.Mode().Perm())
	}
	if di, err := os.Stat(filepath.Dir(n.sock)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v, want 0700", di.Mode().Perm())
	}
	if err := (&ControlServer{}).Listen(n.sock); err == nil || !strings.Contains(err.Error(), "another trustd is already listening") {
		t.Errorf("a second daemon on the socket: %v", err)
	}
	var st map[string]string
	if err := (&ControlClient{Socket: n.sock}).Get(context.Background(), http.MethodGet, "/v1/status", &st); err != nil || st["state"] != "ok" {
		t.Errorf("status %v, %v", st, err)
	}
	if err := (&ControlClient{Socket: n.sock}).Get(context.Background(), http.MethodPost, "/v1/decide", &st); err == nil {
		t.Error("POST /v1/decide is served: a pull has one protocol")
	}
	// A socket file left by a crashed daemon is replaced.
	n.srv.Close()
	stale := filepath.Join(filepath.Dir(n.sock), "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	s2 := &ControlServer{Status: n.srv.Status}
	if err := s2.Listen(stale); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	s2.Close()
}
