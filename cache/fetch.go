package cache

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ErrNotFound is returned by a Fetcher when the server has no such file.
var ErrNotFound = errors.New("not found")

// ErrTooLarge is returned when a response exceeds its size bound.
var ErrTooLarge = errors.New("response larger than allowed")

// ErrUnreachable marks fetch errors that mean the source cannot be reached
// (connection refused, time-out, server error) as opposed to a source
// that answers with bad data. Offline grace applies only to the former.
var ErrUnreachable = errors.New("source unreachable")

// Fetcher downloads one file of trust metadata, at most limit bytes. It is
// the network edge of the cache: tests replace it with a fake.
type Fetcher interface {
	Fetch(ctx context.Context, url string, limit int64) ([]byte, error)
}

// defaultClient keeps connections and TLS sessions across a sync round,
// in which several repositories of one server are fetched at once.
var defaultClient = &http.Client{Transport: func() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	t.IdleConnTimeout = 10 * time.Minute
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	t.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	return t
}()}

// HTTPFetcher fetches over HTTP(S) with a per-request deadline and a size
// bound; a server that streams forever or trickles bytes is cut off.
type HTTPFetcher struct {
	Client *http.Client
	// Timeout bounds each request, body included. Default 30s.
	Timeout time.Duration
	// UserAgent is sent with each request.
	UserAgent string
}

// Fetch implements Fetcher.
func (f *HTTPFetcher) Fetch(ctx context.Context, url string, limit int64) ([]byte, error) {
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if f.UserAgent != "" {
		req.Header.Set("User-Agent", f.UserAgent)
	}
	client := f.Client
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w: %w", url, ErrUnreachable, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("fetch %s: %w (HTTP %d)", url, ErrNotFound, resp.StatusCode)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("fetch %s: %w: HTTP %d", url, ErrUnreachable, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("fetch %s: HTTP %d", url, resp.StatusCode)
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("fetch %s: %w (%d > %d bytes)", url, ErrTooLarge, resp.ContentLength, limit)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w: %w", url, ErrUnreachable, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("fetch %s: %w (more than %d bytes)", url, ErrTooLarge, limit)
	}
	return b, nil
}
