package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trustd/trustd/test/harness"
)

// dockerDeadline is trustd's bound on each authorization answer
// (plugin/docker.DefaultDeadline).
const dockerDeadline = 10 * time.Second

// dockerNode is a Docker Engine node enforced by trustd's authorization
// plugin: dockerd (containerd's image store) on the stack's containerd.
type dockerNode struct {
	*harness.Stack
	d      *harness.Dockerd
	plugin string // the plugin's name, in dockerd's refusals
}

// api calls the Engine API and logs the call and its answer.
func (n *dockerNode) api(t *testing.T, method, path string, body any) (int, string) {
	t.Helper()
	st, out, err := n.d.API(method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	msg := harness.APIMessage(out)
	if len(msg) > 400 {
		msg = msg[:400] + "..."
	}
	t.Logf("%s %s -> %d %s", method, path, st, msg)
	return st, string(out)
}

// refused checks a refusal by trustd as the docker CLI prints it.
func (n *dockerNode) refused(t *testing.T, what string, st int, out string, frags ...string) {
	t.Helper()
	msg := harness.APIMessage([]byte(out))
	prefix := "authorization denied by plugin " + n.plugin + ": trustd: "
	if st != http.StatusForbidden || !strings.HasPrefix(msg, prefix) {
		t.Errorf("%s: %d %q; want 403 %q...", what, st, msg, prefix)
	}
	for _, f := range frags {
		if !strings.Contains(msg, f) {
			t.Errorf("%s: reason %q lacks %q", what, msg, f)
		}
	}
}

func (n *dockerNode) pull(t *testing.T, ref string) {
	t.Helper()
	repo, tag, _ := strings.Cut(strings.TrimPrefix(ref, n.Registry+"/"), ":")
	st, out := n.api(t, "POST", "/images/create?fromImage="+url.QueryEscape(n.Registry+"/"+repo)+"&tag="+tag, nil)
	if st != http.StatusOK || strings.Contains(out, `"error"`) {
		t.Fatalf("pull %s: %d %s", ref, st, out)
	}
}

func (n *dockerNode) imageID(t *testing.T, ref string) string {
	t.Helper()
	st, out := n.api(t, "GET", "/images/"+ref+"/json", nil)
	var img struct{ Id string }
	if st != http.StatusOK || json.Unmarshal([]byte(out), &img) != nil || img.Id == "" {
		t.Fatalf("inspect %s: %d %s", ref, st, out)
	}
	return img.Id
}

// create creates a container of image on the host's network; it returns
// the status, the container ID (on 201) and the answer.
func (n *dockerNode) create(t *testing.T, image string) (int, string, string) {
	t.Helper()
	st, out := n.api(t, "POST", "/containers/create", map[string]any{"Image": image, "HostConfig": map[string]any{"NetworkMode": "host"}})
	var c struct{ Id string }
	if st == http.StatusCreated {
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatal(err)
		}
	}
	return st, c.Id, out
}

// run creates and starts a container of image and waits for message in
// its output.
func (n *dockerNode) run(t *testing.T, image, message string) {
	t.Helper()
	st, id, out := n.create(t, image)
	if st != http.StatusCreated {
		t.Fatalf("create %s: %d %s", image, st, out)
	}
	n.started(t, id, message)
}

func (n *dockerNode) started(t *testing.T, id, message string) {
	t.Helper()
	if st, out := n.api(t, "POST", "/containers/"+id+"/start", nil); st != http.StatusNoContent {
		t.Fatalf("start %s: %d %s", id, st, out)
	}
	// The test image prints its message, then sleeps until SIGTERM.
	deadline := time.Now().Add(decisionTimeout)
	for {
		_, out, err := n.d.API("GET", "/containers/"+id+"/logs?stdout=1&stderr=1", nil)
		if err == nil && strings.Contains(string(out), message) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("container %s printed %q, want %q", id, out, message)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.api(t, "POST", "/containers/"+id+"/kill", nil)
}

func (n *dockerNode) running(t *testing.T, id string) bool {
	t.Helper()
	_, out := n.api(t, "GET", "/containers/"+id+"/json", nil)
	var c struct{ State struct{ Running bool } }
	_ = json.Unmarshal([]byte(out), &c)
	return c.State.Running
}

// reload rewrites the policy's mode and waits for trustd to load it.
func (n *dockerNode) reload(t *testing.T, mode string) {
	t.Helper()
	n.SetMode(t, mode)
	if err := syscall.Kill(n.Trustd.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Trustd.WaitLog(decisionTimeout, `"policy reloaded"`, `"mode":"`+mode+`"`); err != nil {
		t.Fatalf("trustd did not reload in %s mode: %v", mode, err)
	}
}

// TestDocker runs the Docker Engine node's scenarios (issue 19) on one
// dockerd that requires trustd as its authorization plugin: a node with no
// NRI (nri_socket = ""), images judged by digest where containers start.
func TestDocker(t *testing.T) {
	top := t
	harness.Prereqs(t)
	harness.DockerdPrereqs(t)
	s := harness.StartStack(t, harness.StackOptions{NoRequireTrustd: true})
	n := &dockerNode{Stack: s, plugin: fmt.Sprintf("trustd-e2e-%d", os.Getpid())}
	sock := filepath.Join(harness.DockerPluginsDir, n.plugin+".sock")
	t.Cleanup(func() { os.Remove(sock) })
	ddir := harness.DockerdDir(t)
	s.Policy.NRISocket = ""
	s.Policy.DaemonExtra = fmt.Sprintf("docker_authz = true\ndocker_authz_socket = %q\ndocker_address = %q\n", sock, filepath.Join(ddir, "docker.sock"))
	harness.WritePolicy(t, s.PolicyPath, s.Policy)

	signed := newImage(t, s, "demo/app:1", "signed image running in docker")
	unsigned := newImage(t, s, "demo/unsigned:1", "unsigned image running in docker")
	withdrawn := newImage(t, s, "demo/withdrawn:1", "image whose signature is withdrawn")
	sideloaded := newImage(t, s, "demo/sideloaded:1", "side-loaded image running in docker")
	sleeper := harness.PauseImage(t)
	sleeperRef := s.Ref("demo/sleeper:1")
	for _, p := range []struct {
		ref  string
		img  v1.Image
		sign bool
	}{{signed.ref, signed.img, true}, {unsigned.ref, unsigned.img, false}, {withdrawn.ref, withdrawn.img, true}, {sleeperRef, sleeper, true}} {
		_, manifest := harness.Push(t, p.ref, p.img)
		if p.sign {
			s.TUF.SetTarget(p.ref, manifest)
		}
	}
	if err := s.TUF.Publish(); err != nil {
		t.Fatal(err)
	}
	s.Sync(t)
	s.StartTrustd(t)
	n.d = harness.StartDockerd(t, harness.DockerdOptions{ContainerdAddress: s.Node.Address, AuthzPlugin: n.plugin, Dir: ddir})

	_, ver := n.api(t, "GET", "/version", nil)
	t.Logf("engine: %s", ver)
	if st := s.CLI(t, "status"); !strings.Contains(st.Stdout, "engine v2.") || !strings.Contains(st.Stdout, "enforcing: true") {
		t.Errorf("trustd status does not report the engine as enforced:\n%s%s", st.Stdout, st.Stderr)
	}

	for _, ref := range []string{signed.ref, unsigned.ref, withdrawn.ref, sleeperRef} {
		n.pull(t, ref)
	}
	id := n.imageID(t, signed.ref)

	t.Run("signed image runs by tag, ID, short ID and digest", func(t *testing.T) {
		n.run(t, signed.ref, signed.message)
		n.run(t, id, signed.message)
		n.run(t, strings.TrimPrefix(id, "sha256:")[:12], signed.message)
		n.run(t, signed.repo(t)+"@"+string(signed.manifest), signed.message)
	})
	t.Run("unsigned image refused with trustd's reason", func(t *testing.T) {
		st, _, out := n.create(t, unsigned.ref)
		n.refused(t, "create "+unsigned.ref, st, out, unsigned.repo(t), fragNotSigned)
	})
	t.Run("side-loaded unsigned image refused", func(t *testing.T) {
		tar := filepath.Join(t.TempDir(), "sideloaded.tar")
		harness.DockerSaveTar(t, tar, map[string]v1.Image{sideloaded.ref: sideloaded.img})
		st, out, err := n.d.Upload("/images/load", tar)
		t.Logf("POST /images/load -> %d %s", st, harness.APIMessage(out))
		if err != nil || st != http.StatusOK {
			t.Fatalf("load: %d %v %s", st, err, out)
		}
		st, _, msg := n.create(t, sideloaded.ref)
		n.refused(t, "create "+sideloaded.ref, st, msg, sideloaded.repo(t))
	})
	t.Run("tag moved after create: the container's own image starts, the tag is refused", func(t *testing.T) {
		st, cid, out := n.create(t, signed.ref)
		if st != http.StatusCreated {
			t.Fatalf("create: %d %s", st, out)
		}
		q := "?repo=" + url.QueryEscape(signed.repo(t)) + "&tag=1"
		if st, out := n.api(t, "POST", "/images/"+unsigned.ref+"/tag"+q, nil); st != http.StatusCreated {
			t.Fatalf("re-tag: %d %s", st, out)
		}
		n.started(t, cid, signed.message) // the image fixed at create
		st, _, out = n.create(t, signed.ref)
		n.refused(t, "create the moved tag", st, out, signed.repo(t))
		if st, out := n.api(t, "POST", "/images/"+id+"/tag"+q, nil); st != http.StatusCreated {
			t.Fatalf("re-tag back: %d %s", st, out)
		}
	})
	t.Run("a container created past the create check is refused at start", func(t *testing.T) {
		// The create-time race (a tag re-pointed between trustd's answer
		// and dockerd's lookup), made deterministic: created in audit mode.
		n.reload(t, "audit")
		st, cid, out := n.create(t, unsigned.ref)
		n.reload(t, "enforce")
		if st != http.StatusCreated {
			t.Fatalf("create in audit mode: %d %s", st, out)
		}
		st, out = n.api(t, "POST", "/containers/"+cid+"/start", nil)
		n.refused(t, "start", st, out, fragDenied, unsigned.repo(t))
		if n.running(t, cid) {
			t.Error("the refused container runs")
		}
	})
	t.Run("signature withdrawn: refused at the next start", func(t *testing.T) {
		st, cid, out := n.create(t, withdrawn.ref)
		if st != http.StatusCreated {
			t.Fatalf("create: %d %s", st, out)
		}
		s.TUF.RemoveTarget(withdrawn.ref)
		if err := s.TUF.Publish(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * decisionTimeout)
		for {
			st, out = n.api(t, "POST", "/containers/"+cid+"/start", nil)
			if st != http.StatusNoContent || time.Now().After(deadline) {
				break
			}
			n.api(t, "POST", "/containers/"+cid+"/kill", nil)
			n.api(t, "POST", "/containers/"+cid+"/wait", nil)
			time.Sleep(time.Second)
		}
		n.refused(t, "start after withdrawal", st, out, withdrawn.repo(t))
	})
	t.Run("exec and restart judged", func(t *testing.T) {
		st, cid, out := n.create(t, sleeperRef)
		if st != http.StatusCreated {
			t.Fatalf("create: %d %s", st, out)
		}
		if st, out := n.api(t, "POST", "/containers/"+cid+"/start", nil); st != http.StatusNoContent {
			t.Fatalf("start: %d %s", st, out)
		}
		st, out = n.api(t, "POST", "/containers/"+cid+"/exec", map[string]any{"Cmd": []string{"/pause"}})
		if st != http.StatusCreated {
			t.Errorf("exec create: %d %s", st, out)
		}
		if st, out := n.api(t, "POST", "/containers/"+cid+"/restart?t=1", nil); st != http.StatusNoContent {
			t.Errorf("restart: %d %s", st, out)
		}
		n.api(t, "POST", "/containers/"+cid+"/kill", nil)
	})
	t.Run("endpoints that bypass create and start refused", func(t *testing.T) {
		for _, c := range []struct{ path, group string }{
			{"/build", "build"}, {"/grpc", "buildkit"}, {"/session", "buildkit"},
			{"/swarm/init", "swarm"}, {"/services/create", "swarm"},
			{"/plugins/pull?remote=example/x", "plugins"}, {"/plugins/" + n.plugin + "/disable", "plugins"},
		} {
			st, out := n.api(t, "POST", c.path, map[string]any{})
			n.refused(t, "POST "+c.path, st, out, `"`+c.group+`" to docker_allow`)
		}
	})
	t.Run("dockerd's answers to trustd hang: trustd still answers, within its deadline, refusing", func(t *testing.T) {
		// trustd asks dockerd about images and containers; dockerd waits
		// for its plugin for ever. Here trustd's calls go to a socket that
		// accepts and never answers: each authorization must still come
		// back (refused) within trustd's deadline, and the API with it.
		hole := filepath.Join(ddir, "hole.sock")
		l, err := net.Listen("unix", hole)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close() // held open, unanswered, until the test ends
			}
		}()
		restart := func(address string) {
			if err := n.Trustd.Stop(); err != nil {
				t.Errorf("trustd on SIGTERM: %v", err)
			}
			s.Policy.DaemonExtra = fmt.Sprintf("docker_authz = true\ndocker_authz_socket = %q\ndocker_address = %q\n", sock, address)
			harness.WritePolicy(t, s.PolicyPath, s.Policy)
			s.StartTrustd(top)
		}
		restart(hole)
		start := time.Now()
		st, _, out := n.create(t, signed.ref)
		took := time.Since(start)
		t.Logf("create with dockerd's answers to trustd hanging: %d after %v", st, took.Round(time.Millisecond))
		if st != http.StatusForbidden || !strings.Contains(out, "trustd") {
			t.Errorf("create with trustd's calls to dockerd hanging: %d %s; want trustd's refusal", st, out)
		}
		if took > dockerDeadline+5*time.Second {
			t.Errorf("the refusal took %v: longer than trustd's deadline (%v) allows", took, dockerDeadline)
		}
		restart(filepath.Join(ddir, "docker.sock"))
		n.run(t, signed.ref, signed.message)
	})
	t.Run("trustd killed: the API fails and nothing runs", func(t *testing.T) {
		st, cid, out := n.create(t, signed.ref)
		if st != http.StatusCreated {
			t.Fatalf("create: %d %s", st, out)
		}
		n.Trustd.Kill()
		for _, c := range []struct{ method, path string }{{"GET", "/containers/json"}, {"POST", "/containers/" + cid + "/start"}} {
			if st, _ := n.api(t, c.method, c.path, nil); st != http.StatusInternalServerError {
				t.Errorf("%s %s with trustd down: %d, want 500", c.method, c.path, st)
			}
		}
		s.StartTrustd(t)
		if n.running(t, cid) {
			t.Error("a container started while trustd was down")
		}
	})
}
