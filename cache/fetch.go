package cache

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
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

// newTransport returns the transport of an HTTPFetcher's own client,
// trusting roots (nil: the system's roots). It keeps connections and TLS
// sessions across a sync round, in which several repositories of one
// server are fetched at once.
//
// Key exchange: X25519 and P-256 first, not Go's default hybrid
// post-quantum X25519MLKEM768, whose key shares (~1.2 KB each way) more
// than double the bytes of a new connection (~4 KB instead of ~1.7 KB),
// for a refresh that is otherwise one small timestamp request (issue 7).
// What these connections carry is public: signed trust metadata, which
// is verified end to end whatever the transport, and at most a registry
// token that expires in minutes, so recording the traffic today to break
// its key exchange later gains nothing. crypto/tls ignores the order of
// CurvePreferences and puts a post-quantum group first whenever one is
// allowed, so "X25519 first, ML-KEM if the server insists" cannot be said
// in one configuration: a server that refuses the classical groups (a
// handshake failure) is retried with Go's defaults, and that host keeps
// them. See docs/SECURITY.md.
func newTransport(roots *x509.CertPool) http.RoundTripper {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 16
	base.IdleConnTimeout = 10 * time.Minute
	classic, pq := base.Clone(), base.Clone()
	classic.TLSClientConfig = &tls.Config{
		RootCAs:            roots,
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
		CurvePreferences:   []tls.CurveID{tls.X25519, tls.CurveP256},
	}
	pq.TLSClientConfig = &tls.Config{RootCAs: roots, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	return &keyExchangeFallback{classic: classic, pq: pq}
}

// keyExchangeFallback sends requests over classic, and over pq to the hosts
// that refused classic's key exchange.
type keyExchangeFallback struct {
	classic, pq *http.Transport
	pqHosts     sync.Map // host:port -> true
}

func (t *keyExchangeFallback) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, ok := t.pqHosts.Load(req.URL.Host); ok {
		return t.pq.RoundTrip(req)
	}
	resp, err := t.classic.RoundTrip(req)
	if err == nil || req.URL.Scheme != "https" || req.Body != nil && req.Body != http.NoBody || !refusedHandshake(err) {
		return resp, err
	}
	t.pqHosts.Store(req.URL.Host, true)
	return t.pq.RoundTrip(req)
}

// refusedHandshake reports whether err is the server's handshake_failure
// alert: what a server that shares no key exchange group with the client
// answers.
func refusedHandshake(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && strings.Contains(op.Err.Error(), "handshake failure")
}

// CloseIdleConnections closes both transports' idle connections.
func (t *keyExchangeFallback) CloseIdleConnections() {
	t.classic.CloseIdleConnections()
	t.pq.CloseIdleConnections()
}

// HTTPFetcher fetches over HTTP(S) with a per-request deadline and a size
// bound; a server that streams forever or trickles bytes is cut off.
//
// Each HTTPFetcher without a Client has its own (made on first use): no
// connection, TLS session or per-host key exchange choice is shared with
// another fetcher, another Store or another test. Safe for concurrent use.
type HTTPFetcher struct {
	Client *http.Client
	// Timeout bounds each request, body included. Default 30s.
	Timeout time.Duration
	// UserAgent is sent with each request.
	UserAgent string

	once sync.Once
	own  *http.Client
}

// client is Client, or the fetcher's own.
func (f *HTTPFetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	f.once.Do(func() { f.own = &http.Client{Transport: newTransport(nil)} })
	return f.own
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
	resp, err := f.client().Do(req)
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
