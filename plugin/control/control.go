package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/trustd/trustd/plugin/engine"

	"github.com/trustd/trustd/verify"
)

// ControlServer serves the control socket: a Unix socket, mode 0600, for
// root only. It answers relayed pulls from the daemon's memory (POST
// pullgate.Path: a pull needs no cache load), the daemon's status, and
// requests to sync or reload the cache.
type ControlServer struct {
	Engine *engine.Engine
	Status func(ctx context.Context) any
	Sync   func(ctx context.Context) any
	// ReloadCache re-reads the verified cache from disk (after an import).
	ReloadCache func(ctx context.Context) any
	// Refresh, if set, is called for a denied pull: it may fetch the
	// repository's trust data online (a pull is online) and returns true
	// when the decision should be made again, or the error that stopped
	// the fetch (which then becomes part of the reason).
	Refresh func(ctx context.Context, d verify.Decision) (bool, error)

	srv      *http.Server
	ln       net.Listener
	policies policyCheck // the relayed verifier's policy files
}

// Listen binds the socket, replacing a stale one.
func (c *ControlServer) Listen(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("control socket %s: another trustd is already listening", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+VerifierPath, c.verifier)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, c.Status(r.Context()))
	})
	mux.HandleFunc("POST /v1/sync", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, c.Sync(r.Context()))
	})
	mux.HandleFunc("POST /v1/reload-cache", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, c.ReloadCache(r.Context()))
	})
	c.ln = ln
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return nil
}

// Serve serves until Close.
func (c *ControlServer) Serve() error {
	err := c.srv.Serve(c.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops serving and removes the socket.
func (c *ControlServer) Close() error {
	if c.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	os.Remove(c.ln.Addr().String())
	return err
}

// maxPullRefreshes bounds the sources a denied pull fetches from: a rule
// requires its own source and at most a few more ([[rule.also]]).
const maxPullRefreshes = 5

// judge decides f from memory and records the decision. A denied pull may
// first fetch the repository's trust data from the source that denied it
// (Refresh) and be decided again; when another source of the rule then
// denies it, from that one too, each source once.
func (c *ControlServer) judge(ctx context.Context, f verify.Facts, via engine.Via) verify.Decision {
	start := time.Now()
	d := c.Engine.Evaluate(ctx, f)
	var fetched []string
	for !d.Allowed && f.Subject == verify.SubjectPull && c.Refresh != nil && d.Source != "" &&
		!slices.Contains(fetched, d.Source) && len(fetched) < maxPullRefreshes {
		fetched = append(fetched, d.Source)
		again, err := c.Refresh(ctx, d)
		if err != nil {
			d.Reason += fmt.Sprintf("; fetching its trust data from source %q failed: %v", d.Source, err)
			break
		}
		if !again {
			break
		}
		d = c.Engine.Evaluate(ctx, f)
	}
	c.Engine.Record(f, d, engine.Context{Via: via}, time.Since(start))
	return d
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ControlClient talks to a daemon's control socket.
type ControlClient struct {
	Socket  string
	Timeout time.Duration
}

func (c *ControlClient) client() *http.Client {
	t := c.Timeout
	if t == 0 {
		t = 3 * time.Second
	}
	return &http.Client{
		Timeout: t,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.Socket)
		}},
	}
}

// Get fetches a JSON document (status, sync) from the daemon into v.
func (c *ControlClient) Get(ctx context.Context, method, path string, v any) error {
	return c.do(ctx, method, path, nil, v)
}

func (c *ControlClient) do(ctx context.Context, method, path string, body []byte, v any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://trustd"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("control socket: HTTP %d: %s", resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}
