package policy

import (
	"errors"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/distribution/reference"
)

// The oracle: ParseRef and NormalizeRepo as they were written on
// distribution/reference, which the hand-written parser replaces.

func oracleTrim(err error) error {
	msg := err.Error()
	if m, ok := strings.CutPrefix(msg, "invalid reference format: "); ok && m != "" {
		return errors.New(m)
	}
	if msg == "invalid reference format" {
		return errors.New("not a valid repository name")
	}
	return err
}

// oracleParse is reference.ParseNormalizedNamed as a Ref (no default tag).
func oracleParse(s string) (Ref, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Ref{}, oracleTrim(err)
	}
	r := Ref{Repo: named.Name()}
	if t, ok := named.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		r.Digest = d.Digest()
	}
	return r, nil
}

var oracleDomain = regexp.MustCompile(`^(?:` + reference.DomainRegexp.String() + `)$`)

// checkOracle fails t when the hand-written parser and distribution/reference
// disagree on s: acceptance, result or error message.
func checkOracle(t *testing.T, s string) {
	t.Helper()
	got, gotErr := parseNormalized(s)
	want, wantErr := oracleParse(s)
	switch {
	case (gotErr == nil) != (wantErr == nil):
		t.Fatalf("%q: parseNormalized = %+v, %v; reference = %+v, %v", s, got, gotErr, want, wantErr)
	case gotErr != nil && gotErr.Error() != wantErr.Error():
		t.Fatalf("%q: error %q, reference %q", s, gotErr, wantErr)
	case got != want:
		t.Fatalf("%q: parseNormalized = %+v, reference = %+v", s, got, want)
	}
	if gotErr == nil && got.String() != s {
		// Not canonical: reference.ParseNamed refuses it, and IsString
		// must say so (normalizePattern relies on it).
		if got.IsString(s) {
			t.Fatalf("%q: IsString true for %q", s, got.String())
		}
	} else if gotErr == nil && !got.IsString(s) {
		t.Fatalf("%q: IsString false for itself", s)
	}
	if _, err := reference.ParseNamed(s); (err == nil) != (gotErr == nil && got.IsString(s)) {
		t.Fatalf("%q: reference.ParseNamed err %v, parsed %+v, %v", s, err, got, gotErr)
	}
	if g, w := isDomainAndPort(s), oracleDomain.MatchString(s); g != w {
		t.Fatalf("%q: isDomainAndPort = %v, reference.DomainRegexp %v", s, g, w)
	}
}

// oracleCanonical is the one intended difference from reference, written
// apart from host.go: reference keeps a registry host as written, trustd
// compares it as the network does. The host is lowercased, an IPv6 literal
// put in RFC 5952 form, the port read as a number and ":443" dropped
// (unless the host would then be a Docker Hub namespace), and Docker Hub's
// aliases are docker.io. ok is false when the result is not a name
// reference accepts as canonical, or when the host is a host only by its
// case: ParseRef must then refuse s.
func oracleCanonical(repo string) (canon string, ok bool) {
	host, path, _ := strings.Cut(repo, "/")
	host = strings.ToLower(host)
	port := ""
	if i := strings.LastIndex(host, ":"); i >= 0 && !strings.HasSuffix(host, "]") {
		host, port = host[:i], host[i+1:]
	}
	if v6, ok := strings.CutPrefix(host, "["); ok {
		if a, err := netip.ParseAddr(strings.TrimSuffix(v6, "]")); err == nil && !a.Is4In6() {
			host = "[" + a.String() + "]"
		}
	}
	if n, err := strconv.ParseUint(port, 10, 64); err == nil {
		port = strconv.FormatUint(n, 10)
	} else if port != "" {
		port = strings.TrimLeft(port, "0") // too long for a number
	}
	isHost := host == "localhost" || strings.ContainsAny(host, ".:")
	if port == "443" && isHost {
		port = ""
	}
	switch {
	case port != "":
		host += ":" + port
	case !isHost:
		return "", false
	case host == "index.docker.io" || host == "registry-1.docker.io":
		host = "docker.io"
	}
	canon = host + "/" + path
	named, err := reference.ParseNormalizedNamed(canon)
	if err != nil {
		return "", false
	}
	return named.Name(), true
}

// checkCanonical fails t when ParseRef and NormalizeRepo differ from
// reference by more than oracleCanonical.
func checkCanonical(t *testing.T, s string) {
	t.Helper()
	want, wantErr := oracleParse(s)
	ok := wantErr == nil
	if ok {
		want.Repo, ok = oracleCanonical(want.Repo)
	}
	got, err := ParseRef(s)
	switch {
	case (err == nil) != ok:
		t.Fatalf("%q: ParseRef = %+v, %v; reference, canonical host: %+v, %v", s, got, err, want, ok)
	case err != nil:
		return
	}
	if got.Repo != want.Repo || got.Digest != want.Digest || got.Tag != want.Tag && !(want.Tag == "" && want.Digest == "" && got.Tag == "latest") {
		t.Fatalf("%q: ParseRef = %+v, reference, canonical host: %+v", s, got, want)
	}
	if repo, err := NormalizeRepo(s); (err == nil) != (want.Tag == "" && want.Digest == "") || err == nil && repo != want.Repo {
		t.Fatalf("%q: NormalizeRepo = %q, %v; want %q", s, repo, err, want.Repo)
	}
}

// refOracleSeeds are the tricky cases: case, ports, IPv6, digests, Docker
// Hub's defaults, separators, length limits, non-ASCII.
var refOracleSeeds = []string{
	"", "nginx", "nginx:1.25", "library/nginx", "docker.io/nginx", "docker.io/library/nginx:1.25",
	"index.docker.io/nginx", "index.docker.io/x/y:z", "docker.io", "docker.io/", "/nginx", "nginx/",
	"registry.example/team/app@" + testDigest, "registry.example/team/app:v1@" + testDigest,
	"nginx@" + testDigest, "nginx:1@" + testDigest, testDigest, "@" + testDigest, ":tag", "nginx:",
	"nginx@", "nginx:1@", "Nginx", "nginx:LATEST", "docker.io/Library/nginx", "Registry/app", "REGISTRY.example/app",
	"Foo_x/bar", "a_b.c/foo", "a.b_c/foo:1", "localhost", "localhost/app", "localhost:5000", "localhost:5000/a/b",
	"localhost:/a", "localhost:x/a", "127.0.0.1:5000/demo/hello:1.0", "[::1]:5000/demo", "[::1]/demo", "[::1]",
	"[::1]:/demo", "[fe80::1%eth0]/x", "[]:5000/x", "[::g]/x", "[::1]x/y", "a-.b/c", "-a.b/c", "a..b/c", "a.b./c",
	"a__b", "a___b", "a--b", "a-b", "a._b", "a.-b", "a/b/c/d/e:1", "a//b", "a/ b", " a", "a ", "a:b:c",
	"a:b@c", "a@sha256:0123", "a@sha256:" + strings.Repeat("0", 63) + "g", "a@sha256:" + strings.Repeat("0", 62),
	"a@sha256:" + strings.Repeat("A", 64), "a@SHA256:" + strings.Repeat("a", 64), "a@sha512:" + strings.Repeat("a", 128),
	"a@sha384:" + strings.Repeat("a", 96), "a@md5:" + strings.Repeat("a", 32), "a@sha256+b64:" + strings.Repeat("a", 64),
	"a@Sha-256:" + strings.Repeat("a", 64), "a@1sha:" + strings.Repeat("a", 64), "a@sha256.x_y:" + strings.Repeat("a", 32),
	strings.Repeat("a", 64), strings.Repeat("a", 64) + ":1", strings.Repeat("A", 64), strings.Repeat("f", 63),
	strings.Repeat("a", 247), strings.Repeat("a", 248), strings.Repeat("a", 255), strings.Repeat("a", 256),
	"x.io/" + strings.Repeat("a", 255), "x.io/" + strings.Repeat("a", 256), "a_b/" + strings.Repeat("a", 251),
	"a_b.c/" + strings.Repeat("a", 249), "a_b.c/" + strings.Repeat("a", 250),
	"nginx:" + strings.Repeat("t", 128), "nginx:" + strings.Repeat("t", 129), "nginx:_x", "nginx:.x", "nginx:-x", "nginx:x.-_",
	"ngïnx", "x.io/ngïnx", "nginx:ü", "x.io/a:\u212a", "\u212a.io/a", "x.io/\u0130", "x.io/a\xff", "\xff/a", "日本/a",
	"a\x00", "a\n", "a/b:\u212a@" + testDigest,
	// Registry host spellings.
	"REGISTRY.corp.example/app:1", "registry.corp.example:443/app", "Registry.Corp.Example:0443/app@" + testDigest,
	"registry.corp.example:00/app", "registry.corp.example:" + strings.Repeat("0", 30) + "443/app", "LOCALHOST/app",
	"LOCALHOST:443/app", "localhost:443", "registry-1.docker.io/nginx", "Registry-1.Docker.IO:443/a/b", "INDEX.docker.io/nginx",
	"DOCKER.IO/nginx", "docker.io:443/nginx", "docker.io:5000/nginx", "registry:443/app", "Registry:443/app", "Registry:0443/app",
	"[::1]:443/app", "[0:0:0:0:0:0:0:1]:5000/app", "[FE80::A]/app", "[::ffff:7f00:1]/app", "[:::]/app",
	"registry-1.docker.io/" + strings.Repeat("a", 248), "registry-1.docker.io/" + strings.Repeat("a", 247),
}

func TestParseRefOracle(t *testing.T) {
	for _, s := range refOracleSeeds {
		checkOracle(t, s)
		checkCanonical(t, s)
	}
}

// FuzzParseRefOracle holds the hand-written reference parser to
// distribution/reference: same acceptance, same result, same error.
func FuzzParseRefOracle(f *testing.F) {
	for _, s := range refOracleSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkOracle(t, s)
		// ParseRef and NormalizeRepo add their wrapping and the
		// canonical registry host.
		checkCanonical(t, s)
		r, err := ParseRef(s)
		if err != nil && !errors.Is(err, ErrInvalidReference) {
			t.Fatalf("%q: %v does not match ErrInvalidReference", s, err)
		}
		if err == nil {
			again, err := ParseRef(r.String())
			if err != nil || again != r {
				t.Fatalf("%q: ParseRef(%q) = %+v, %v; want %+v", s, r.String(), again, err, r)
			}
		}
	})
}

func TestParseRefAllocs(t *testing.T) {
	tests := []struct {
		in     string
		allocs float64
	}{
		{"docker.io/library/nginx:1.25", 0},
		{"registry.example/team/app@" + testDigest, 0},
		{"registry.example:5000/team/app:v1@" + testDigest, 0},
		{"localhost/app", 0},
		{"[::1]:5000/demo", 0},
		{"registry:443/app", 0},
		{"nginx", 1},
		{"team/app:1", 1},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, func() { _, _ = ParseRef(tt.in) }); n != tt.allocs {
			t.Errorf("ParseRef(%q): %v allocations, want %v", tt.in, n, tt.allocs)
		}
	}
}
