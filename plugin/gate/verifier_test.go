package gate

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/verify"
)

func TestParseVerifierRequest(t *testing.T) {
	d := digest.FromString("m")
	desc := `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + string(d) + `","size":10}`
	tests := []struct {
		name  string
		args  []string
		stdin string
		err   string
	}{
		{"ok", []string{"-name", "127.0.0.1:5000/demo/hello:1.0", "-digest", string(d), "-stdin-media-type", "application/vnd.oci.descriptor.v1+json"}, desc, ""},
		{"ok with double dashes", []string{"--name", "nginx", "--digest", string(d)}, "", ""},
		{"missing name", []string{"-digest", string(d)}, "", "-name is missing"},
		{"bad digest", []string{"-name", "x", "-digest", "sha256:zz"}, "", "-digest"},
		{"unknown flag", []string{"-name", "x", "-digest", string(d), "-evil"}, "", "usage"},
		{"extra args", []string{"-name", "x", "-digest", string(d), "extra"}, "", "unexpected arguments"},
		{"descriptor disagrees", []string{"-name", "x", "-digest", string(digest.FromString("other")), "-stdin-media-type", "application/vnd.oci.descriptor.v1+json"}, desc, "differs"},
		{"descriptor not json", []string{"-name", "x", "-digest", string(d), "-stdin-media-type", "application/vnd.oci.descriptor.v1+json"}, "{{", "descriptor"},
		{"descriptor too large", []string{"-name", "x", "-digest", string(d), "-stdin-media-type", "application/vnd.oci.descriptor.v1+json"}, strings.Repeat(" ", maxVerifierStdin+1), "larger"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseVerifierRequest(tc.args, strings.NewReader(tc.stdin))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if r.Facts().Subject != verify.SubjectPull || r.Facts().Digest != r.Digest {
					t.Fatalf("facts: %+v", r.Facts())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err=%v, want %q", err, tc.err)
			}
		})
	}
}

func TestRunVerifier(t *testing.T) {
	d := digest.FromString("m")
	args := []string{"-name", "reg.example/a:1", "-digest", string(d)}
	allow := func(context.Context, verify.Facts) (verify.Decision, error) {
		return verify.Decision{Allowed: true, Image: "reg.example/a:1", Reason: "ok"}, nil
	}
	deny := func(context.Context, verify.Facts) (verify.Decision, error) {
		return verify.Decision{Image: "reg.example/a:1", Digest: d, Reason: "evil\nsecond line \x1b[31m"}, nil
	}
	broken := func(context.Context, verify.Facts) (verify.Decision, error) {
		return verify.Decision{}, errors.New("cache unreadable")
	}
	for _, tc := range []struct {
		name   string
		decide DecideFunc
		code   int
		want   string
	}{
		{"allowed", allow, 0, "trustd: allowed"},
		{"denied, hostile reason escaped", deny, 1, `evil second line \x1b[31m`},
		{"could not decide blocks", broken, 1, "could not decide: cache unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := RunVerifier(context.Background(), args, nil, &out, tc.decide)
			if code != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("code %d, out %q", code, out.String())
			}
			if strings.Count(out.String(), "\n") != 1 {
				t.Fatalf("want exactly one line: %q", out.String())
			}
		})
	}
}

func FuzzVerifierRequest(f *testing.F) {
	f.Add("127.0.0.1:5000/demo/hello:1.0", string(digest.FromString("x")), `{"digest":"`+string(digest.FromString("x"))+`"}`)
	f.Add("", "sha256:", "")
	f.Fuzz(func(t *testing.T, name, dg, stdin string) {
		r, err := ParseVerifierRequest([]string{"-name", name, "-digest", dg, "-stdin-media-type", "application/vnd.oci.descriptor.v1+json"}, strings.NewReader(stdin))
		if err == nil && (r.Digest.Validate() != nil || r.Name == "") {
			t.Fatalf("accepted invalid request %+v", r)
		}
		var out bytes.Buffer
		RunVerifier(context.Background(), []string{"-name", name, "-digest", dg}, nil, &out, func(context.Context, verify.Facts) (verify.Decision, error) {
			return verify.Decision{Image: name, Reason: name}, nil
		})
		if strings.Count(out.String(), "\n") != 1 {
			t.Fatalf("output must be one line: %q", out.String())
		}
	})
}
