package policy

import (
	"errors"
	"regexp"
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
}

func TestParseRefOracle(t *testing.T) {
	for _, s := range refOracleSeeds {
		checkOracle(t, s)
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
		// ParseRef and NormalizeRepo add nothing but their wrapping.
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
		{"nginx", 1},
		{"team/app:1", 1},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, func() { _, _ = ParseRef(tt.in) }); n != tt.allocs {
			t.Errorf("ParseRef(%q): %v allocations, want %v", tt.in, n, tt.allocs)
		}
	}
}
