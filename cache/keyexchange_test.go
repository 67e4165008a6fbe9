package cache

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Trust data is fetched with a classical key exchange (small handshakes);
// a server that accepts only post-quantum groups gets them, and keeps
// them, instead of failing.
func TestKeyExchangeFallback(t *testing.T) {
	for _, tc := range []struct {
		name   string
		groups []tls.CurveID // the server's; nil: Go's defaults
		want   tls.CurveID
		pq     bool // the host is remembered as post-quantum only
	}{
		{"server with Go's defaults", nil, tls.X25519, false},
		{"server with post-quantum groups only", []tls.CurveID{tls.X25519MLKEM768}, tls.X25519MLKEM768, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []tls.CurveID
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = append(got, r.TLS.CurveID)
				w.Write([]byte("{}"))
			}))
			srv.TLS = &tls.Config{CurvePreferences: tc.groups}
			srv.StartTLS()
			defer srv.Close()
			roots := x509.NewCertPool()
			roots.AddCert(srv.Certificate())
			tr := newTransport(roots).(*keyExchangeFallback)
			f := &HTTPFetcher{Client: &http.Client{Transport: tr}}
			for i := 0; i < 2; i++ {
				if _, err := f.Fetch(context.Background(), srv.URL+"/timestamp.json", 1024); err != nil {
					t.Fatalf("fetch %d: %v", i, err)
				}
				tr.CloseIdleConnections() // a new handshake each time
			}
			for i, c := range got {
				if c != tc.want {
					t.Errorf("request %d: key exchange %v, want %v", i, c, tc.want)
				}
			}
			if _, pq := tr.pqHosts.Load(srv.Listener.Addr().String()); pq != tc.pq {
				t.Errorf("host remembered as post-quantum only: %v, want %v", pq, tc.pq)
			}
		})
	}
}
