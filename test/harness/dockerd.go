package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// DockerPluginsDir is where dockerd looks for a legacy plugin's socket
// (NAME.sock); moby offers no setting to look elsewhere outside rootless
// mode, so the tests put a uniquely named socket there and remove it.
const DockerPluginsDir = "/run/docker/plugins"

// DockerdOptions configure StartDockerd.
type DockerdOptions struct {
	// ContainerdAddress is the containerd dockerd uses (a Node's Address):
	// dockerd starts none of its own.
	ContainerdAddress string
	// AuthzPlugin is the name of the authorization plugin dockerd requires
	// (--authorization-plugin): its socket is DockerPluginsDir/NAME.sock.
	AuthzPlugin string
	// Dir holds dockerd's roots and socket (DockerdDir); empty: a new one.
	Dir string
}

// DockerdDir makes a directory for StartDockerd, so that its API socket,
// Dir/docker.sock, is known before dockerd runs (trustd, which dockerd
// needs first, is told it).
func DockerdDir(t TB) string { return shortTempDir(t, "dockerd-") }

// Dockerd is a running dockerd (moby), with its own data root, exec root,
// pid file and API socket under a temporary directory, containerd's image
// store, no iptables and no bridge (containers use the host's network).
type Dockerd struct {
	Dir     string
	Socket  string // the Engine API's Unix socket
	LogPath string
	proc    *process
	hc      *http.Client
}

// StartDockerd starts dockerd and waits until its API answers (through
// its authorization plugin, which must be serving); the process is stopped
// on cleanup.
func StartDockerd(t TB, opts DockerdOptions) *Dockerd {
	t.Helper()
	tools, err := FindTools()
	if err != nil {
		t.Fatalf("%v", err)
	}
	dir := opts.Dir
	if dir == "" {
		dir = DockerdDir(t)
	}
	d := &Dockerd{Dir: dir, Socket: filepath.Join(dir, "docker.sock"), LogPath: filepath.Join(dir, "dockerd.log")}
	// The shims the harness's containerd starts do not have runc on PATH:
	// a runtime names it by path ("runc" itself is reserved).
	cfg, _ := json.Marshal(map[string]any{
		"features":        map[string]bool{"containerd-snapshotter": true},
		"runtimes":        map[string]any{"e2e-runc": map[string]string{"path": tools.Runc}},
		"default-runtime": "e2e-runc",
	})
	cfgPath := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	logf, err := os.Create(d.LogPath)
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer logf.Close()
	args := []string{
		"--config-file", cfgPath,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--host", "unix://" + d.Socket,
		"--containerd", opts.ContainerdAddress,
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--userland-proxy=false",
	}
	if opts.AuthzPlugin != "" {
		args = append(args, "--authorization-plugin", opts.AuthzPlugin)
	}
	cmd := exec.Command(tools.Dockerd, args...)
	// runc is found on PATH (dockerd's default runtime).
	cmd.Env = envWithPath(filepath.Dir(tools.Runc))
	cmd.Stdout, cmd.Stderr = logf, logf
	d.proc, err = startProcess(cmd)
	if err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	d.hc = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", d.Socket)
	}}}
	t.Cleanup(func() {
		if err := d.proc.stop(20 * time.Second); err != nil {
			t.Logf("dockerd stop: %v", err)
		}
		unmountUnder(dir)
		if t.Failed() {
			t.Logf("dockerd log %s, last lines:\n%s", d.LogPath, tailFile(d.LogPath, 40))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if d.proc.exited() {
			t.Fatalf("dockerd exited: %v\n%s", d.proc.err, tailFile(d.LogPath, 40))
		}
		if st, _, err := d.API("GET", "/_ping", nil); err == nil && st == http.StatusOK {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within 60s\n%s", tailFile(d.LogPath, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// API calls the Engine API: body, if not nil, is sent as JSON (a []byte
// as it is). It returns the status and the answer's body.
func (d *Dockerd) API(method, path string, body any) (int, []byte, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(j)
	}
	ctype := ""
	if body != nil {
		ctype = "application/json"
	}
	return d.do(method, path, ctype, r)
}

func (d *Dockerd) do(method, path, ctype string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://docker"+path, body)
	if err != nil {
		return 0, nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, out, err
}

// Upload sends a tar (POST /images/load) and returns the status and answer.
func (d *Dockerd) Upload(path, tarPath string) (int, []byte, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	return d.do("POST", path, "application/x-tar", f)
}

// APIMessage is the message of an Engine API error answer (what the docker
// CLI prints after "Error response from daemon: ").
func APIMessage(body []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return e.Message
	}
	return strings.TrimSpace(string(body))
}

// Stop stops dockerd (SIGTERM, then SIGKILL after 20 s).
func (d *Dockerd) Stop() error { return d.proc.stop(20 * time.Second) }

// LogTail returns the last lines of dockerd's log.
func (d *Dockerd) LogTail(lines int) string { return tailFile(d.LogPath, lines) }

// String names the dockerd for messages.
func (d *Dockerd) String() string { return fmt.Sprintf("dockerd (%s)", d.Socket) }
