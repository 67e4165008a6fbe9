package cache

import (
	"crypto/x509"
	"net/http"
)

// NewDefaultTransport is the transport of the default HTTP client, with
// the given roots, for benchmarks against a test server.
func NewDefaultTransport(roots *x509.CertPool) http.RoundTripper { return newTransport(roots) }

// NumGUNLocks is how many per-repository refresh locks the source holds.
func (s *NotarySource) NumGUNLocks() int { return s.locks.len() }

// NumRepoLocks is how many per-repository locks the source holds.
func (s *SigstoreSource) NumRepoLocks() int { return s.locks.len() }

func (r *repoMutexes) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}
