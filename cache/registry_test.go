package cache

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/test/harness"
)

func TestFetchSignedManifests(t *testing.T) {
	reg := harness.StartRegistry(t)
	img := harness.BuildImage(t, "hello", "hi")
	d, m := harness.Push(t, reg+"/demo/hello:1.0", img)
	mc := &ManifestCache{Dir: t.TempDir()}
	missing := digest.FromString("not pushed")
	n, problems := FetchSignedManifests(context.Background(), &Registry{}, mc, map[string][]TargetRef{
		reg + "/demo/hello": {{Digest: d, Length: int64(len(m))}, {Digest: missing, Length: 10}},
	})
	if n != 1 || len(problems) != 1 || !strings.Contains(problems[0], "HTTP 404") {
		t.Fatalf("fetched %d, problems %v", n, problems)
	}
	got, err := mc.ReadBlob(context.Background(), d)
	if err != nil || string(got) != string(m) {
		t.Fatalf("cached manifest: %v", err)
	}
	// Already cached: nothing fetched again.
	if n, _ := FetchSignedManifests(context.Background(), &Registry{}, mc, map[string][]TargetRef{reg + "/demo/hello": {{Digest: d}}}); n != 0 {
		t.Fatalf("refetched %d", n)
	}
}

func TestRegistryServingOtherBytes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"schemaVersion":2,"config":{"digest":"sha256:` + strings.Repeat("0", 64) + `"}}`))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	mc := &ManifestCache{Dir: t.TempDir()}
	d := digest.FromString("signed")
	n, problems := FetchSignedManifests(context.Background(), &Registry{}, mc, map[string][]TargetRef{host + "/x/y": {{Digest: d}}})
	if n != 0 || len(problems) != 1 || !strings.Contains(problems[0], "other bytes") || mc.Has(d) {
		t.Fatalf("fetched %d, problems %v", n, problems)
	}
}

func TestRegistryTokenFlow(t *testing.T) {
	body := []byte(`{"schemaVersion":2,"config":{"digest":"sha256:` + strings.Repeat("1", 64) + `"}}`)
	d := digest.FromBytes(body)
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/token":
			if r.URL.Query().Get("scope") != "repository:team/app:pull" || r.URL.Query().Get("service") != "reg" {
				http.Error(w, "bad scope", 400)
				return
			}
			w.Write([]byte(`{"token":"T"}`))
		case r.Header.Get("Authorization") != "Bearer T":
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+srv.URL+`/token",service="reg",scope="repository:team/app:pull"`)
			w.WriteHeader(401)
		default:
			w.Write(body)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	b, err := (&Registry{}).FetchManifest(context.Background(), host+"/team/app", d, 1<<20)
	if err != nil || string(b) != string(body) {
		t.Fatalf("%v", err)
	}
}

func TestEndpoint(t *testing.T) {
	for _, tc := range []struct{ repo, base, path string }{
		{"docker.io/library/nginx", "https://registry-1.docker.io", "library/nginx"},
		{"127.0.0.1:5000/demo/hello", "http://127.0.0.1:5000", "demo/hello"},
		{"localhost:5000/a", "http://localhost:5000", "a"},
		{"registry.example.com/a/b", "https://registry.example.com", "a/b"},
	} {
		base, path, err := Endpoint(tc.repo)
		if err != nil || base != tc.base || path != tc.path {
			t.Errorf("%s: %s %s %v", tc.repo, base, path, err)
		}
	}
}
