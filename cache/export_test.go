package cache

import (
	"crypto/x509"
	"net/http"
)

// NewDefaultTransport is the transport of the default HTTP client, with
// the given roots, for benchmarks against a test server.
func NewDefaultTransport(roots *x509.CertPool) http.RoundTripper { return newTransport(roots) }

// NumGUNLocks is how many per-repository refresh locks the source holds.
func (s *NotarySource) NumGUNLocks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.locks)
}
