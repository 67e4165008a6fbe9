package cache

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
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// manifestAccept lists the manifest media types trustd asks a registry for.
var manifestAccept = strings.Join([]string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

// Registry fetches manifests by digest from the registry that serves a
// repository, anonymously (bearer tokens are requested when the registry
// asks). What it returns is only trusted after the caller checks its
// digest: a registry is no source of trust, only of bytes.
type Registry struct {
	Client  *http.Client
	Timeout time.Duration
}

// Endpoint returns the base URL of the registry API for a normalised
// repository name and the repository path on it. Loopback registries are
// reached over plain HTTP, every other one over HTTPS.
func Endpoint(repo string) (base, path string, err error) {
	host, path, ok := strings.Cut(repo, "/")
	if !ok || host == "" || path == "" {
		return "", "", fmt.Errorf("repository %q has no registry host", repo)
	}
	if host == "docker.io" {
		host = "registry-1.docker.io"
	}
	scheme := "https"
	if isLoopback(host) {
		scheme = "http"
	}
	return scheme + "://" + host, path, nil
}

func isLoopback(hostport string) bool {
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// FetchManifest returns the manifest (or index) d of repo, at most limit
// bytes, after checking that its bytes hash to d.
func (r *Registry) FetchManifest(ctx context.Context, repo string, d digest.Digest, limit int64) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	base, path, err := Endpoint(repo)
	if err != nil {
		return nil, err
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := base + "/v2/" + path + "/manifests/" + string(d)
	resp, err := r.get(ctx, u, "")
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		challenge := resp.Header.Get("WWW-Authenticate")
		resp.Body.Close()
		token, err := r.token(ctx, challenge, path)
		if err != nil {
			return nil, fmt.Errorf("manifest %s of %s: %w", d, repo, err)
		}
		if resp, err = r.get(ctx, u, token); err != nil {
			return nil, err
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("manifest %s of %s: HTTP %d", d, repo, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("manifest %s of %s: %w", d, repo, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("manifest %s of %s: %w", d, repo, ErrTooLarge)
	}
	if d.Algorithm().FromBytes(b) != d {
		return nil, fmt.Errorf("manifest %s of %s: the registry served other bytes", d, repo)
	}
	return b, nil
}

func (r *Registry) client() *http.Client {
	if r.Client != nil {
		return r.Client
	}
	return http.DefaultClient
}

func (r *Registry) get(ctx context.Context, u, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", manifestAccept)
	req.Header.Set("User-Agent", "trustd")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return r.client().Do(req)
}

// token performs the anonymous bearer token flow of a registry challenge.
func (r *Registry) token(ctx context.Context, challenge, path string) (string, error) {
	scheme, params, ok := strings.Cut(challenge, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", fmt.Errorf("registry requires authentication (%q)", challenge)
	}
	p := parseChallenge(params)
	realm := p["realm"]
	ru, err := url.Parse(realm)
	if err != nil || (ru.Scheme != "https" && !(ru.Scheme == "http" && isLoopback(ru.Host))) {
		return "", fmt.Errorf("registry token realm %q is not usable", realm)
	}
	q := ru.Query()
	if s := p["service"]; s != "" {
		q.Set("service", s)
	}
	scope := p["scope"]
	if scope == "" {
		scope = "repository:" + path + ":pull"
	}
	q.Set("scope", scope)
	ru.RawQuery = q.Encode()
	resp, err := r.get(ctx, ru.String(), "")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("registry token: HTTP %d", resp.StatusCode)
	}
	var t struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&t); err != nil {
		return "", fmt.Errorf("registry token: %w", err)
	}
	if t.Token == "" {
		t.Token = t.AccessToken
	}
	if t.Token == "" {
		return "", errors.New("registry token: empty")
	}
	return t.Token, nil
}

func parseChallenge(s string) map[string]string {
	out := map[string]string{}
	for len(s) > 0 {
		s = strings.TrimLeft(s, " ,")
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				break
			}
			v, s = rest[1:end+1], rest[end+2:]
		} else {
			v, s, _ = strings.Cut(rest, ",")
		}
		out[strings.ToLower(strings.TrimSpace(k))] = v
	}
	return out
}

// maxManifestFetches bounds the manifests fetched in one sync of a source;
// the rest come in later rounds.
const maxManifestFetches = 1000

// FetchSignedManifests stores in mc every signed manifest (and the
// platform manifests of every signed index) of the source that mc lacks,
// fetched from the repositories' registries. Side-loaded images keep their
// config digest but not their manifest, so this is what lets a node match
// them offline. Failures are returned as problems, never fatal.
func FetchSignedManifests(ctx context.Context, reg *Registry, mc *ManifestCache, repos map[string][]TargetRef) (fetched int, problems []string) {
	type job struct {
		repo string
		d    digest.Digest
		size int64
	}
	var jobs []job
	for repo, targets := range repos {
		for _, t := range targets {
			if !mc.Has(t.Digest) && len(jobs) < maxManifestFetches {
				jobs = append(jobs, job{repo, t.Digest, t.Length})
			}
		}
	}
	var mu sync.Mutex
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	fetch := func(j job) []job {
		limit := j.size
		if limit <= 0 || limit > 4<<20 {
			limit = 4 << 20
		}
		b, err := reg.FetchManifest(ctx, j.repo, j.d, limit)
		if err == nil {
			err = mc.Put(j.d, b)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			problems = append(problems, err.Error())
			return nil
		}
		fetched++
		var idx struct {
			Manifests []struct {
				Digest digest.Digest `json:"digest"`
				Size   int64         `json:"size"`
			} `json:"manifests"`
		}
		var kids []job
		if json.Unmarshal(b, &idx) == nil {
			for _, m := range idx.Manifests {
				if m.Digest.Validate() == nil && !mc.Has(m.Digest) && len(kids) < 64 {
					kids = append(kids, job{j.repo, m.Digest, m.Size})
				}
			}
		}
		return kids
	}
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func(j job) {
			defer wg.Done()
			kids := fetch(j)
			<-sem
			for _, k := range kids {
				fetch(k)
			}
		}(j)
	}
	wg.Wait()
	return fetched, problems
}

// TargetRef is one signed digest to fetch.
type TargetRef struct {
	Digest digest.Digest
	Length int64
}
