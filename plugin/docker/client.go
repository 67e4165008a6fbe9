package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrNotFound is dockerd's 404: no such container, exec or image.
var ErrNotFound = errors.New("not found")

// maxAnswer bounds what trustd reads of one answer of dockerd.
const maxAnswer = 8 << 20

// Client calls dockerd's Engine API over its Unix socket, read-only, each
// call bounded in time (Timeout) and size. It is safe for concurrent use.
type Client struct {
	// Address is dockerd's socket: an absolute path, or unix:// and one.
	Address string
	// Timeout bounds each call; 0 means 5s. The caller's context may
	// end it sooner.
	Timeout time.Duration

	hc *http.Client
}

// NewClient returns a client of the dockerd listening on address.
func NewClient(address string) *Client {
	sock := strings.TrimPrefix(address, "unix://")
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Client{Address: address, hc: &http.Client{Transport: tr}}
}

// Image is what trustd reads of GET /images/{ref}/json.
type Image struct {
	ID          string   `json:"Id"`
	RepoTags    []string `json:"RepoTags"`
	RepoDigests []string `json:"RepoDigests"`
}

// Version is what trustd reads of GET /version.
type Version struct {
	Version    string `json:"Version"`
	APIVersion string `json:"ApiVersion"`
}

// Image inspects an image by any name dockerd resolves: name[:tag],
// name@digest, a full or short ID.
func (c *Client) Image(ctx context.Context, ref string) (*Image, error) {
	var img Image
	if err := c.get(ctx, "/images/"+url.PathEscape(ref)+"/json", &img); err != nil {
		return nil, fmt.Errorf("inspecting image %s: %w", ref, err)
	}
	return &img, nil
}

// ContainerImage returns the ID of a container's image (its `.Image`,
// fixed when the container was created) and the name it was created from
// (`.Config.Image`, as the request gave it).
func (c *Client) ContainerImage(ctx context.Context, id string) (imageID, createdFrom string, err error) {
	var ctr struct {
		Image  string `json:"Image"`
		Config struct {
			Image string `json:"Image"`
		} `json:"Config"`
	}
	if err := c.get(ctx, "/containers/"+url.PathEscape(id)+"/json", &ctr); err != nil {
		return "", "", fmt.Errorf("inspecting container %s: %w", id, err)
	}
	if ctr.Image == "" {
		return "", "", fmt.Errorf("inspecting container %s: dockerd names no image for it", id)
	}
	return ctr.Image, ctr.Config.Image, nil
}

// ExecContainer returns the ID of the container an exec instance runs in.
func (c *Client) ExecContainer(ctx context.Context, id string) (string, error) {
	var ex struct {
		ContainerID string `json:"ContainerID"`
	}
	if err := c.get(ctx, "/exec/"+url.PathEscape(id)+"/json", &ex); err != nil {
		return "", fmt.Errorf("inspecting exec %s: %w", id, err)
	}
	if ex.ContainerID == "" {
		return "", fmt.Errorf("inspecting exec %s: dockerd names no container for it", id)
	}
	return ex.ContainerID, nil
}

// Version returns the engine's version.
func (c *Client) Version(ctx context.Context) (*Version, error) {
	var v Version
	if err := c.get(ctx, "/version", &v); err != nil {
		return nil, fmt.Errorf("asking dockerd its version: %w", err)
	}
	return &v, nil
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("dockerd at %s: %w", c.Address, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("dockerd at %s: %w", c.Address, err)
	}
	if len(body) > maxAnswer {
		return fmt.Errorf("dockerd at %s: answer larger than %d bytes", c.Address, maxAnswer)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s", ErrNotFound, apiMessage(body))
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("dockerd answered %s: %s", resp.Status, apiMessage(body))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("dockerd's answer: %w", err)
	}
	return nil
}

// apiMessage is the message of an Engine API error answer, bounded.
func apiMessage(body []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		msg = e.Message
	}
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}
