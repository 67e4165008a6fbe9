package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/plugin/engine"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

func sha(s string) digest.Digest { return digest.FromBytes([]byte(s)) }

// testPolicy is testdata/policy.toml.tmpl: a TUF source, verify, allow
// (one rule for a namespace only) and deny rules; {{.DaemonExtra}} stands
// for more [daemon] keys.
var testPolicy = template.Must(template.ParseFiles(filepath.Join("testdata", "policy.toml.tmpl")))

// fakeDockerd serves the read-only Engine API calls the plugin makes, from
// maps, over a Unix socket; hang makes every call hang until the client
// gives up.
type fakeDockerd struct {
	images     map[string]Image  // by every name and ID dockerd resolves
	containers map[string]string // name or ID → image ID
	execs      map[string]string // exec ID → container ID
	// createdFrom is the name a container of an image ID was created from.
	createdFrom map[string]string
	hang        bool
	mu          sync.Mutex
	calls       []string
}

func (f *fakeDockerd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls = append(f.calls, r.URL.Path)
	f.mu.Unlock()
	if f.hang {
		<-r.Context().Done()
		return
	}
	p := r.URL.Path
	var v any
	switch {
	case strings.HasPrefix(p, "/images/") && strings.HasSuffix(p, "/json"):
		if img, ok := f.images[strings.TrimSuffix(strings.TrimPrefix(p, "/images/"), "/json")]; ok {
			v = img
		}
	case strings.HasPrefix(p, "/containers/") && strings.HasSuffix(p, "/json"):
		if id, ok := f.containers[strings.TrimSuffix(strings.TrimPrefix(p, "/containers/"), "/json")]; ok {
			v = map[string]any{"Id": "c", "Image": id, "Config": map[string]string{"Image": f.createdFrom[id]}}
		}
	case strings.HasPrefix(p, "/exec/") && strings.HasSuffix(p, "/json"):
		if id, ok := f.execs[strings.TrimSuffix(strings.TrimPrefix(p, "/exec/"), "/json")]; ok {
			v = map[string]string{"ContainerID": id}
		}
	case p == "/version":
		v = Version{Version: "28.3.2", APIVersion: "1.51"}
	}
	if v == nil {
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"message": "No such object: " + p})
		return
	}
	json.NewEncoder(w).Encode(v)
}

type world struct {
	plugin *Plugin
	docker *fakeDockerd
	log    *bytes.Buffer
}

func newWorld(t *testing.T, daemonExtra string) *world {
	t.Helper()
	var doc bytes.Buffer
	if err := testPolicy.Execute(&doc, struct{ DaemonExtra string }{daemonExtra}); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("policy.toml", doc.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	corp := verify.NewSourceIndex("corp", "tuf", map[string]*verify.Repo{
		"registry.corp.example/app": {Source: "corp", Name: "registry.corp.example/app", Expires: exp,
			Tags: map[string]verify.RoleTargets{
				"1": {"targets": {Digest: sha("app-index"), Length: 10}},
				"2": {"targets": {Digest: sha("app2-index"), Length: 10}},
			}},
	})
	var buf bytes.Buffer
	e := &engine.Engine{Log: slog.New(slog.NewJSONHandler(&buf, nil))}
	e.Swap(&engine.Snapshot{Policy: p, Index: verify.NewIndex(corp)})

	signed := Image{ID: string(sha("app-index")), RepoTags: []string{"registry.corp.example/app:1"}, RepoDigests: []string{"registry.corp.example/app@" + string(sha("app-index"))}}
	moved := Image{ID: string(sha("evil-index")), RepoTags: []string{"registry.corp.example/app:1"}}
	unsigned := Image{ID: string(sha("other-index")), RepoTags: []string{"registry.corp.example/other:1", "registry.corp.example/other2:1"}}
	dev := Image{ID: string(sha("dev-index")), RepoTags: []string{"registry.corp.example/dev/x:1"}}
	dangling := Image{ID: string(sha("dangling-index")), RepoTags: []string{}, RepoDigests: []string{}}
	untagged := Image{ID: string(sha("app2-index")), RepoTags: []string{}, RepoDigests: []string{}} // its tag moved on
	shortIDRepo := Image{ID: string(sha("abc-index")), RepoTags: []string{}}
	fd := &fakeDockerd{
		images: map[string]Image{
			"registry.corp.example/app:1": signed, string(sha("app-index")): signed, sha("app-index").Encoded()[:12]: signed,
			string(sha("evil-index")):       moved,
			"registry.corp.example/other:1": unsigned, string(sha("other-index")): unsigned,
			"registry.corp.example/dev/x:1": dev,
			string(sha("dangling-index")):   dangling,
			string(sha("app2-index")):       untagged,
			string(sha("abc-index")):        shortIDRepo,
		},
		containers: map[string]string{
			"good": string(sha("app-index")), "moved": string(sha("evil-index")), "bad": string(sha("other-index")),
			"dangling": string(sha("dangling-index")), "gone": string(sha("removed-index")),
			"untagged": string(sha("app2-index")), "by-short-id": string(sha("abc-index")),
		},
		execs: map[string]string{"e-good": "good", "e-bad": "bad"},
		createdFrom: map[string]string{
			string(sha("app2-index")): "registry.corp.example/app:2",
			string(sha("abc-index")):  sha("abc-index").Encoded()[:6],
		},
	}
	dir, err := os.MkdirTemp("", "trustd-docker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: fd}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &world{plugin: &Plugin{Engine: e, Docker: NewClient("unix://" + sock), Log: slog.New(slog.NewJSONHandler(&buf, nil))}, docker: fd, log: &buf}
}

func createBody(image string) []byte {
	return []byte(`{"Image":"` + image + `","Cmd":["true"],"HostConfig":{"NetworkMode":"host"}}`)
}

func TestAuthorize(t *testing.T) {
	for _, tc := range []struct {
		name, method, uri string
		body              []byte
		extra             string // more [daemon] keys
		allow             bool
		msg               string // in the refusal
	}{
		{"list", "GET", "/v1.51/containers/json", nil, "", true, ""},
		{"pull", "POST", "/v1.51/images/create?fromImage=registry.corp.example/other&tag=1", nil, "", true, ""},
		{"create signed by tag", "POST", "/v1.51/containers/create", createBody("registry.corp.example/app:1"), "", true, ""},
		{"create signed by ID", "POST", "/v1.51/containers/create", createBody(string(sha("app-index"))), "", true, ""},
		{"create signed by short ID", "POST", "/v1.51/containers/create", createBody(sha("app-index").Encoded()[:12]), "", true, ""},
		{"create unsigned", "POST", "/v1.51/containers/create", createBody("registry.corp.example/other:1"), "", false,
			"trustd: denied registry.corp.example/other@" + string(sha("other-index"))},
		{"create not in store: dockerd refuses it, the client pulls", "POST", "/containers/create", createBody("registry.corp.example/app:2"), "", true, ""},
		{"create with a case-variant key", "POST", "/containers/create", []byte(`{"Image":"registry.corp.example/app:1","image":"registry.corp.example/other:1"}`), "", false, `keys "Image" and "image"`},
		{"create without a body", "POST", "/containers/create", nil, "", false, "no JSON body"},
		{"create namespaced rule does not apply", "POST", "/containers/create", createBody("registry.corp.example/dev/x:1"), "", false, "is not signed"},
		{"start signed", "POST", "/v1.51/containers/good/start", nil, "", true, ""},
		{"start unsigned", "POST", "/v1.51/containers/bad/start", nil, "", false, "trustd: denied registry.corp.example/other@"},
		{"start: the tag moved after create", "POST", "/containers/moved/start", nil, "", false, "trustd: denied registry.corp.example/app@" + string(sha("evil-index"))},
		{"restart unsigned", "POST", "/containers/bad/restart", nil, "", false, "trustd: denied"},
		{"unpause unsigned", "POST", "/containers/bad/unpause", nil, "", false, "trustd: denied"},
		{"exec create unsigned", "POST", "/containers/bad/exec", []byte(`{"Cmd":["sh"]}`), "", false, "trustd: denied"},
		{"exec start signed", "POST", "/exec/e-good/start", []byte(`{}`), "", true, ""},
		{"exec start unsigned", "POST", "/exec/e-bad/start", []byte(`{}`), "", false, "trustd: denied"},
		{"exec unknown", "POST", "/exec/nope/start", nil, "", false, "inspecting exec nope"},
		{"start unknown container", "POST", "/containers/nope/start", nil, "", false, "inspecting container nope"},
		{"start: image removed", "POST", "/containers/gone/start", nil, "", false, "could not judge the image"},
		{"start: dangling image", "POST", "/containers/dangling/start", nil, "", false, "has no repository name"},
		{"start: the image lost its tag, judged under the name it was created from", "POST", "/containers/untagged/start", nil, "", true, ""},
		{"start: created by short ID, which is no repository name", "POST", "/containers/by-short-id/start", nil, `docker_allow = []`, false, "has no repository name"},
		{"build refused", "POST", "/v1.51/build", nil, "", false, `adds "build" to docker_allow`},
		{"build allowed", "POST", "/v1.51/build", nil, `docker_allow = ["build"]`, true, ""},
		{"buildkit refused", "POST", "/grpc", nil, `docker_allow = ["build"]`, false, `"buildkit"`},
		{"service create refused", "POST", "/services/create", []byte(`{}`), "", false, `"swarm"`},
		{"plugin disable refused", "POST", "/plugins/trustd/disable", nil, "", false, `"plugins"`},
		{"unclean path", "POST", "/containers/good/../bad/start", nil, "", false, "canonical form"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.extra)
			a := w.plugin.Answer(context.Background(), &authzRequest{RequestMethod: tc.method, RequestURI: tc.uri, RequestBody: tc.body})
			if a.Allow != tc.allow || !strings.Contains(a.Msg, tc.msg) {
				t.Errorf("answer = %+v; want allow %v, message containing %q\ncalls: %v\nlog:\n%s", a, tc.allow, tc.msg, w.docker.calls, w.log)
			}
			if !tc.allow && !strings.HasPrefix(a.Msg, "trustd: ") {
				t.Errorf("refusal %q does not say it is trustd's", a.Msg)
			}
		})
	}
}

// TestAnswerDeadline: a dockerd that never answers trustd's call back
// (or a decision that hangs) refuses the request within the deadline;
// dockerd itself would wait for ever.
func TestAnswerDeadline(t *testing.T) {
	w := newWorld(t, "")
	w.docker.hang = true
	w.plugin.Deadline = 300 * time.Millisecond
	start := time.Now()
	a := w.plugin.Answer(context.Background(), &authzRequest{RequestMethod: "POST", RequestURI: "/containers/good/start"})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("answered after %s", took)
	}
	if a.Allow || !strings.Contains(a.Msg, "no decision within 300ms") {
		t.Errorf("answer = %+v", a)
	}
}

// TestProtocol drives the plugin over its socket as dockerd does.
func TestProtocol(t *testing.T) {
	w := newWorld(t, "")
	dir, err := os.MkdirTemp("", "trustd-authz-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "trustd.sock")
	if err := w.plugin.Listen(sock); err != nil {
		t.Fatal(err)
	}
	go w.plugin.Serve()
	defer w.plugin.Close()
	if err := (&Plugin{}).Listen(sock); err == nil || !strings.Contains(err.Error(), "already listening") {
		t.Errorf("a second Listen on a served socket: %v", err)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	post := func(path string, body any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := hc.Post("http://plugin"+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := post(pathActivate, nil); !strings.Contains(strings.Join(toStrings(got["Implements"]), ","), "authz") {
		t.Errorf("activate: %v", got)
	}
	// RequestBody is base64 in the protocol's JSON, as []byte is.
	got := post(pathAuthZReq, map[string]any{"RequestMethod": "POST", "RequestUri": "/v1.51/containers/create", "RequestBody": createBody("registry.corp.example/other:1")})
	if got["Allow"] != false || !strings.Contains(got["Msg"].(string), "trustd: denied registry.corp.example/other@") {
		t.Errorf("AuthZReq: %v", got)
	}
	got = post(pathAuthZReq, map[string]any{"RequestMethod": "POST", "RequestUri": "/v1.51/containers/good/start"})
	if got["Allow"] != true {
		t.Errorf("AuthZReq: %v", got)
	}
	if got := post(pathAuthZRes, map[string]any{"RequestMethod": "POST", "RequestUri": "/v1.51/containers/good/start", "ResponseStatusCode": 204}); got["Allow"] != true {
		t.Errorf("AuthZRes: %v", got)
	}
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
