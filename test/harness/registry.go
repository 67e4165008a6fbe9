package harness

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"

	"github.com/google/go-containerregistry/pkg/registry"
)

// StartRegistry serves an in-memory OCI registry (go-containerregistry's) on
// 127.0.0.1 over plain HTTP until cleanup, and returns its host:port.
// Containerd reaches it through Options.Registries or Node.AddRegistry.
func StartRegistry(t TB) string {
	t.Helper()
	host, _ := StartStoppableRegistry(t)
	return host
}

// StartStoppableRegistry is StartRegistry, and also returns a function
// that stops the registry before cleanup (a test of decisions with the
// registry gone); it may be called more than once.
//
// Options are go-containerregistry's registry options (for instance
// registry.WithReferrersSupport(true): the OCI 1.1 referrers API, which
// the registry lacks by default).
func StartStoppableRegistry(t TB, opts ...registry.Option) (string, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	srv := &http.Server{Handler: registry.New(append([]registry.Option{registry.Logger(log.New(io.Discard, "", 0))}, opts...)...)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("harness: registry on %s: %v", l.Addr(), err)
		}
	}()
	stop := func() {
		srv.Close()
		<-done
	}
	t.Cleanup(stop)
	return l.Addr().String(), stop
}
