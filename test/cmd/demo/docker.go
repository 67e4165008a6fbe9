package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trustd/trustd/test/harness"
)

// dockerDemo is the demo on a Docker Engine node (`make demo DOCKER=1`):
// dockerd, on the stack's containerd with containerd's image store, requires
// trustd as its authorization plugin; no NRI. A signed and an unsigned image
// are pulled (Docker judges images where containers start), then run.
func dockerDemo(t harness.TB) {
	step(1, "Checking prerequisites (root, containerd, runc and dockerd from `make tools`)")
	harness.Prereqs(t)
	harness.DockerdPrereqs(t)

	step(2, "Building trustd; starting containerd, a registry and a file server for the TUF repository on 127.0.0.1")
	s := harness.StartStack(t, harness.StackOptions{NoRequireTrustd: true})
	repoDir := filepath.Join(t.TempDir(), "tuf")
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(repoDir, "metadata"))))
	t.Cleanup(srv.Close)
	plugin := fmt.Sprintf("trustd-demo-%d", os.Getpid())
	sock := filepath.Join(harness.DockerPluginsDir, plugin+".sock")
	t.Cleanup(func() { os.Remove(sock) })
	ddir := harness.DockerdDir(t)

	signed := s.Ref("demo/hello:1.0")
	unsigned := s.Ref("demo/unsigned:1.0")
	step(3, "Pushing two images; signing one of them with trustd repo")
	images := map[string]v1.Image{
		signed:   harness.BuildImage(t, "demo signed", "Hello from a signed image!"),
		unsigned: harness.BuildImage(t, "demo unsigned", "Hello from an unsigned image!"),
	}
	for _, ref := range []string{signed, unsigned} {
		d, _ := harness.Push(t, ref, images[ref])
		detail("%-40s %s", ref, d)
	}
	repo(t, s, "init", repoDir)
	repo(t, s, "sign", repoDir, signed, "--insecure-registry")
	s.Policy.TUFURL, s.Policy.TUFRoot = srv.URL+"/", filepath.Join(repoDir, "metadata", "1.root.json")
	s.Policy.NRISocket = ""
	s.Policy.DaemonExtra = fmt.Sprintf("docker_authz = true\ndocker_authz_socket = %q\ndocker_address = %q\n", sock, filepath.Join(ddir, "docker.sock"))
	harness.WritePolicy(t, s.PolicyPath, s.Policy)
	detail("policy           %s: docker_authz = true, nri_socket = \"\" (a Docker-only node)", s.PolicyPath)

	step(4, "trustd sync, trustd run (the authorization plugin), then dockerd requiring it")
	s.Sync(t)
	s.StartTrustd(t)
	d := harness.StartDockerd(t, harness.DockerdOptions{ContainerdAddress: s.Node.Address, AuthzPlugin: plugin, Dir: ddir})
	if _, out, err := d.API("GET", "/version", nil); err == nil {
		var v struct{ Version string }
		_ = json.Unmarshal(out, &v)
		detail("dockerd          %s, engine %s, --authorization-plugin=%s", d.Socket, v.Version, plugin)
	}

	step(5, "For each image: pull it, then create and start a container (as `docker run` does)")
	ran := map[string]bool{}
	for _, ref := range []string{signed, unsigned} {
		fmt.Printf("\n  %s\n", ref)
		repoName := strings.TrimSuffix(ref, ":1.0")
		if st, out, err := d.API("POST", "/images/create?fromImage="+url.QueryEscape(repoName)+"&tag=1.0", nil); err != nil || st != http.StatusOK || strings.Contains(string(out), `"error"`) {
			t.Fatalf("pull %s: %d %s %v", ref, st, out, err)
		}
		verdict("docker pull", "OK", "pulls are allowed: images are judged where containers start")
		st, out, err := d.API("POST", "/containers/create", map[string]any{"Image": ref, "HostConfig": map[string]any{"NetworkMode": "host"}})
		if err != nil {
			t.Fatalf("create %s: %v", ref, err)
		}
		if st != http.StatusCreated {
			verdict("docker create", "REFUSED", harness.APIMessage(out))
			continue
		}
		var c struct{ Id string }
		_ = json.Unmarshal(out, &c)
		if st, out, _ := d.API("POST", "/containers/"+c.Id+"/start", nil); st != http.StatusNoContent {
			verdict("docker start", "REFUSED", harness.APIMessage(out))
			continue
		}
		verdict("docker run", "ALLOWED", "trustd allowed the create and the start")
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, logs, _ := d.API("GET", "/containers/"+c.Id+"/logs?stdout=1&stderr=1", nil)
			if strings.Contains(string(logs), "Hello") {
				verdict("container output", "", "Hello from a signed image!")
				ran[ref] = true
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("container %s printed %q", c.Id, logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
		d.API("POST", "/containers/"+c.Id+"/kill", nil)
	}
	if !ran[signed] || ran[unsigned] {
		t.Fatalf("signed image ran: %v, unsigned image ran: %v; want true, false", ran[signed], ran[unsigned])
	}
	step(6, "Done: the signed image ran under Docker; the unsigned one was refused by trustd")
}
