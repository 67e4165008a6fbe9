package pullgate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/trustd/trustd/policy"
)

func TestControlSocket(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		want       string // "" with ok false
	}{
		{"no daemon table", "version = 1\n", DefaultSocket},
		{"daemon table without the key", "version = 1\n[daemon]\ncache_dir = \"/x\"\n", DefaultSocket},
		{"basic string", "[daemon]\ncontrol_socket = \"/run/a.sock\"\n", "/run/a.sock"},
		{"literal string, comment, CRLF", "[daemon]\r\n  control_socket='/run/b.sock' # here\r\n", "/run/b.sock"},
		{"dotted key at the top", "version = 1\ndaemon.control_socket = \"/run/c.sock\"\n", "/run/c.sock"},
		{"quoted key parts", "[ \"daemon\" ]\n'control_socket' = \"/run/d.sock\"\n", "/run/d.sock"},
		{"in another table", "[[source]]\ncontrol_socket = \"/no\"\n[daemon]\n", DefaultSocket},
		{"after multi-line arrays and inline tables", `version = 1
[[rule]]
images = [
  "docker.io/**", # [daemon]
  "quay.io/**",
]
x = { a = "]", b = ['['] }
[daemon]
refresh = "5m" # control_socket = "/no"
control_socket = "/run/e.sock"
[[source]]
name = "a\"b#"
`, "/run/e.sock"},
		{"escapes", "[daemon]\ncontrol_socket = \"/run/\\u0066.sock\"\n", ""},
		{"escaped key", "[daemon]\n\"control\\u005fsocket\" = \"/x\"\n", ""},
		{"inline daemon table", "daemon = { control_socket = \"/x\" }\n", ""},
		{"multi-line string", "x = \"\"\"\n[daemon]\ncontrol_socket = \"/x\"\n\"\"\"\n", ""},
		{"the key twice", "[daemon]\ncontrol_socket = \"/a\"\ncontrol_socket = \"/b\"\n", ""},
		{"daemon table twice", "[daemon]\n[daemon]\ncontrol_socket = \"/a\"\n", ""},
		{"not a string", "[daemon]\ncontrol_socket = 5\n", ""},
		{"byte order mark", "\uFEFF[daemon]\ncontrol_socket = \"/a\"\n", ""},
		{"garbage", "[daemon\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := controlSocket([]byte(tc.toml))
			if ok != (tc.want != "") || got != tc.want {
				t.Fatalf("controlSocket = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

// FuzzControlSocket checks controlSocket against the daemon's parser: for a
// policy that parses, it gives up or names the same socket.
func FuzzControlSocket(f *testing.F) {
	for _, glob := range []string{"../../policy/testdata/valid/*.toml", "../../packaging/policy.toml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil {
				f.Add(string(b))
			}
		}
	}
	f.Add("version = 1\n[daemon]\ncontrol_socket = \"/run/x.sock\"\n[[rule]]\nimages = [\"**\"]\naction = \"deny\"\n")
	f.Fuzz(func(t *testing.T, doc string) {
		sock, ok := controlSocket([]byte(doc))
		p, err := policy.Parse("/etc/trustd/policy.toml", []byte(doc))
		if err != nil || !ok {
			return
		}
		if sock != p.Daemon.ControlSocket {
			t.Fatalf("controlSocket = %q, the policy says %q", sock, p.Daemon.ControlSocket)
		}
	})
}

func FuzzAppendString(f *testing.F) {
	f.Add("/etc/trustd/policy.toml")
	f.Add("a\"b\\c\x00\x1f\x7f\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		var got string
		if err := json.Unmarshal(appendString(nil, s), &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); got != want && utf8.ValidString(s) {
			t.Fatalf("%q became %q", s, got)
		}
	})
}

func TestParseResponse(t *testing.T) {
	for _, tc := range []struct {
		name, resp string
		code       int
		out, err   string
	}{
		{"allowed", "HTTP/1.1 200 OK\r\nContent-Length: 18\r\ntrustd-exit: 0\r\n\r\ntrustd: allowed x\n", 0, "trustd: allowed x\n", ""},
		{"denied, body to the end", "HTTP/1.1 200 OK\r\nTrustd-Exit: 1\r\n\r\ntrustd: denied x\n", 1, "trustd: denied x\n", ""},
		{"server error", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nboom\n", 0, "", "HTTP 500: boom"},
		{"older daemon", "HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\n\r\n404 page not found\n", 0, "", "HTTP 404"},
		{"no exit code", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, "", "Trustd-Exit"},
		{"other exit code", "HTTP/1.1 200 OK\r\nTrustd-Exit: 2\r\n\r\n", 0, "", "Trustd-Exit"},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTrustd-Exit: 0\r\n\r\nshort", 0, "", "truncated"},
		{"truncated head", "HTTP/1.1 200 OK\r\nTrustd-Exit: 0\r\n", 0, "", "truncated"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrustd-Exit: 0\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 0, "", "Transfer-Encoding"},
		{"not HTTP", "SSH-2.0-x\r\n\r\n", 0, "", "not an HTTP answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, err := parseResponse([]byte(tc.resp))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || code != tc.code || string(out) != tc.out {
				t.Fatalf("got %d %q %v", code, out, err)
			}
		})
	}
}
