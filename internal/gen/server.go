package gen

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

// Counter counts what crosses a server's listener: bytes in both
// directions (HTTP requests and responses, headers included; TCP/IP
// framing excluded), connections accepted and requests served.
type Counter struct {
	Read, Written, Conns, Requests atomic.Int64
}

// Bytes is the total of both directions.
func (c *Counter) Bytes() int64 { return c.Read.Load() + c.Written.Load() }

// Reset zeroes every count.
func (c *Counter) Reset() {
	c.Read.Store(0)
	c.Written.Store(0)
	c.Conns.Store(0)
	c.Requests.Store(0)
}

type countingListener struct {
	net.Listener
	c *Counter
}

func (l countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.c.Conns.Add(1)
	return &countingConn{Conn: conn, c: l.c}, nil
}

type countingConn struct {
	net.Conn
	c *Counter
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.c.Read.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.c.Written.Add(int64(n))
	return n, err
}

// Server is an HTTP server on 127.0.0.1 whose traffic is counted.
type Server struct {
	*httptest.Server
	Counter *Counter
}

// Serve starts h on a loopback port, counting its traffic. Close it when
// done.
func Serve(h http.Handler) *Server { return serve(h, false) }

// ServeTLS is Serve over HTTPS (httptest's certificate: Server.Client
// trusts it). Counted bytes include the TLS handshakes and records.
func ServeTLS(h http.Handler) *Server { return serve(h, true) }

func serve(h http.Handler, tls bool) *Server {
	c := &Counter{}
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.Requests.Add(1)
		h.ServeHTTP(w, r)
	})
	s := httptest.NewUnstartedServer(counted)
	s.Listener = countingListener{Listener: s.Listener, c: c}
	if tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	return &Server{Server: s, Counter: c}
}

// NotaryServer serves Notary repositories as a Notary server does:
// GET /v2/<gun>/_trust/tuf/<role>.json. It is safe for concurrent use;
// Put replaces a repository.
type NotaryServer struct {
	mu    sync.RWMutex
	repos map[string]*NotaryRepo
}

// NewNotaryServer serves repos.
func NewNotaryServer(repos ...*NotaryRepo) *NotaryServer {
	s := &NotaryServer{repos: map[string]*NotaryRepo{}}
	for _, r := range repos {
		s.Put(r)
	}
	return s
}

// Put adds or replaces a repository.
func (s *NotaryServer) Put(r *NotaryRepo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[r.GUN] = r
}

// ServeHTTP implements http.Handler.
func (s *NotaryServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/")
	gun, file, ok2 := strings.Cut(rest, "/_trust/tuf/")
	role, ok3 := strings.CutSuffix(file, ".json")
	if r.Method != http.MethodGet || !ok || !ok2 || !ok3 {
		http.NotFound(w, r)
		return
	}
	s.mu.RLock()
	repo := s.repos[gun]
	s.mu.RUnlock()
	var b []byte
	if repo != nil {
		b = repo.File(role)
	}
	if b == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// TUFServer serves a directory of TUF metadata under /metadata/ (files
// only), as a static TUF repository is served. Its URL for a TUF source
// is <server URL>/metadata/.
func TUFServer(dir string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metadata/{file}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			http.NotFound(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	return mux
}
