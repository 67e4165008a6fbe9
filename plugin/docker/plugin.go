package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/plugin/engine"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// DefaultDeadline bounds each answer of a Plugin whose Deadline is 0.
// dockerd waits for a plugin without a time limit: a plugin that hangs
// hangs the API, so trustd answers within this, refusing when it could not
// decide in time.
const DefaultDeadline = 10 * time.Second

// maxRequest bounds an authorization request read from dockerd (a body
// of at most 4 MiB, base64-encoded, and the headers).
const maxRequest = 8 << 20

// Plugin answers dockerd's authorization requests. Its fields are set
// before Listen and not changed after; the policy (docker_allow, the
// rules) is read from Engine's snapshot at each request, so a reload
// applies at once.
type Plugin struct {
	Engine *engine.Engine
	// Docker calls back into dockerd (inspect a container, an exec, an
	// image). Those calls are authorized too: the plugin serves
	// concurrently.
	Docker *Client
	Log    *slog.Logger
	// Deadline bounds each answer; 0 means DefaultDeadline.
	Deadline time.Duration

	srv *http.Server
	ln  net.Listener
}

// Listen binds the plugin's socket (dockerd finds a plugin named NAME at
// /run/docker/plugins/NAME.sock), mode 0600, replacing a stale one and
// refusing to take over one another process serves.
func (p *Plugin) Listen(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("docker authorization socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("docker authorization socket %s: exists and is not a socket", path)
		}
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return fmt.Errorf("docker authorization socket %s: another process is already listening", path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("docker authorization socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("docker authorization socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("docker authorization socket: %w", err)
	}
	p.ln = ln
	p.srv = &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 5 * time.Second}
	return nil
}

// Serve serves until Close.
func (p *Plugin) Serve() error {
	err := p.srv.Serve(p.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops serving and removes the socket: dockerd then refuses every
// API call (it cannot reach the plugin) until trustd is back.
func (p *Plugin) Close() error {
	if p.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := p.srv.Shutdown(ctx)
	os.Remove(p.ln.Addr().String())
	return err
}

// Handler serves the plugin protocol.
func (p *Plugin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathActivate, func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, activateResponse{Implements: []string{"authz"}})
	})
	mux.HandleFunc("POST "+pathAuthZReq, func(w http.ResponseWriter, r *http.Request) {
		var req authzRequest
		if err := readRequest(r, &req); err != nil {
			writeAnswer(w, authzResponse{Msg: "trustd: cannot read the authorization request: " + err.Error()})
			return
		}
		writeAnswer(w, p.Answer(r.Context(), &req))
	})
	// Answers are not filtered: what trustd refuses it refuses before
	// dockerd acts.
	mux.HandleFunc("POST "+pathAuthZRes, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxRequest))
		writeAnswer(w, authzResponse{Allow: true})
	})
	return mux
}

func readRequest(r *http.Request, req *authzRequest) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequest+1))
	if err != nil {
		return err
	}
	if len(body) > maxRequest {
		return fmt.Errorf("larger than %d bytes", maxRequest)
	}
	return json.Unmarshal(body, req)
}

func writeAnswer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", pluginContentType)
	_ = json.NewEncoder(w).Encode(v)
}

// Answer decides one request within the plugin's deadline: a decision that
// takes longer (a call back into dockerd that hangs) refuses.
func (p *Plugin) Answer(ctx context.Context, req *authzRequest) authzResponse {
	deadline := p.Deadline
	if deadline <= 0 {
		deadline = DefaultDeadline
	}
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	ch := make(chan authzResponse, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				p.Log.Error("docker authorization panicked; refusing", "request", req.RequestMethod+" "+req.RequestURI, "panic", fmt.Sprint(v))
				ch <- refuse("trustd: refused: internal error deciding this request")
			}
		}()
		ch <- p.authorize(ctx, req)
	}()
	select {
	case a := <-ch:
		return a
	case <-ctx.Done():
		p.Log.Warn("docker request refused: no decision in time", "request", req.RequestMethod+" "+req.RequestURI, "deadline", deadline.String())
		return refuse(fmt.Sprintf("trustd: refused %s %s: no decision within %s", req.RequestMethod, req.RequestURI, deadline))
	}
}

func refuse(msg string) authzResponse { return authzResponse{Msg: msg} }

var allow = authzResponse{Allow: true}

// authorize classifies the request and judges the image it would run.
func (p *Plugin) authorize(ctx context.Context, req *authzRequest) authzResponse {
	r := classify(req.RequestMethod, req.RequestURI)
	c := engine.Context{Via: engine.ViaDocker}
	switch r.kind {
	case pass:
		return allow
	case malformed:
		p.Log.Warn("docker request refused", "request", r.what, "reason", "unreadable path")
		return refuse(fmt.Sprintf("trustd: refused %s: trustd reads only request paths in canonical form", r.what))
	case group:
		if s := p.Engine.Snapshot(); s != nil && slices.Contains(s.Policy.Daemon.DockerAllow, r.group) {
			return allow
		}
		p.Log.Warn("docker request refused", "request", r.what, "group", r.group)
		return refuse(fmt.Sprintf("trustd: refused %s: it runs images that trustd cannot judge; an operator who accepts that adds %q to docker_allow in trustd's policy", r.what, r.group))
	case create:
		image, err := createImage(req.RequestBody)
		if err != nil {
			d := p.Engine.Unjudged(ctx, "", "", "", err, c)
			return answer(d)
		}
		d, judged := p.judgeImage(ctx, image, "", c, true)
		if !judged {
			return allow
		}
		return answer(d)
	case exec:
		id, err := p.Docker.ExecContainer(ctx, r.target)
		if err != nil {
			return answer(p.Engine.Unjudged(ctx, "", "", "", err, c))
		}
		r.target = id
	}
	// container or exec: the container's own image, fixed at create.
	c.Container = r.target
	imageID, createdFrom, err := p.Docker.ContainerImage(ctx, r.target)
	if err != nil {
		return answer(p.Engine.Unjudged(ctx, "", "", "", err, c))
	}
	d, _ := p.judgeImage(ctx, imageID, createdFrom, c, false)
	return answer(d)
}

func answer(d verify.Decision) authzResponse {
	if d.Allowed {
		return allow
	}
	return refuse(d.Message())
}

// judgeImage judges the image dockerd resolves ref to, by its ID (with
// containerd's image store, the manifest or index digest) under each
// repository dockerd names it, and the repository of createdFrom (the
// name a container was created from: its image keeps its digest when the
// tag moves on): it is allowed when one allows it. At create, an image
// dockerd does not hold is not judged (judged false): dockerd refuses the
// creation itself, and the client pulls and tries again.
func (p *Plugin) judgeImage(ctx context.Context, ref, createdFrom string, c engine.Context, atCreate bool) (d verify.Decision, judged bool) {
	img, err := p.Docker.Image(ctx, ref)
	if atCreate && errors.Is(err, ErrNotFound) {
		return verify.Decision{}, false
	}
	if err != nil {
		return p.Engine.Unjudged(ctx, ref, "", "", err, c), true
	}
	id, err := digest.Parse(img.ID)
	if err != nil {
		return p.Engine.Unjudged(ctx, ref, "", "", fmt.Errorf("dockerd gives image ID %q: %w", img.ID, err), c), true
	}
	names := slices.Concat(img.RepoTags, img.RepoDigests)
	if createdFrom != "" && !isID(createdFrom, id) {
		names = append(names, createdFrom)
	}
	cands := Candidates(names, id)
	if len(cands) == 0 {
		err := fmt.Errorf("image %s has no repository name in Docker's store, so no rule can apply to it", id)
		return p.Engine.Unjudged(ctx, ref, "", "", err, c), true
	}
	return p.Engine.DecideAny(ctx, cands, c), true
}

// isID reports whether name is image id's ID or a prefix of it, as dockerd
// resolves them ("sha256:…", or hexadecimal digits): a short ID such as
// "abcdef" is also a valid repository name (docker.io/library/abcdef),
// which must not choose the rule.
func isID(name string, id digest.Digest) bool {
	hex := strings.TrimPrefix(name, id.Algorithm().String()+":")
	return hex != "" && strings.HasPrefix(id.Encoded(), hex)
}

// Candidates are the facts of the image id under each repository its
// names are in, in order, each once: the image is judged by its digest
// against the trust data of the repository, with namespace "" (Docker has
// no Kubernetes namespace: only rules without a namespaces restriction
// apply).
func Candidates(names []string, id digest.Digest) []verify.Facts {
	var out []verify.Facts
	var seen []string
	for _, name := range names {
		ref, err := policy.ParseRef(name)
		if err != nil || slices.Contains(seen, ref.Repo) {
			continue // "<none>:<none>", or a repository already listed
		}
		seen = append(seen, ref.Repo)
		out = append(out, verify.Facts{Subject: verify.SubjectContainer, Image: ref.Repo + "@" + string(id), Digest: id})
	}
	return out
}

// Address is the socket the plugin listens on ("" before Listen).
func (p *Plugin) Address() string {
	if p.ln == nil {
		return ""
	}
	return p.ln.Addr().String()
}
