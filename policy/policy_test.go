package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const v1 = "version = 1\n"

// hubSource is a valid notary source named "hub".
const hubSource = `
[[source]]
name = "hub"
kind = "notary"
url = "https://notary.docker.io"
repositories = ["docker.io/**"]
`

// corpSource is a valid tuf source named "corp".
const corpSource = `
[[source]]
name = "corp"
kind = "tuf"
url = "https://tuf.corp.example/metadata/"
root = "/etc/trustd/corp-root.json"
repositories = ["registry.corp.example/**"]
`

func mustParse(t *testing.T, doc string) *Policy {
	t.Helper()
	p, err := Parse("p.toml", []byte(doc))
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	return p
}

func norms(ps []Pattern) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Normalized())
	}
	return out
}

func dur(d time.Duration) *time.Duration { return &d }

func TestParseDefaults(t *testing.T) {
	p := mustParse(t, v1)
	want := Daemon{
		CacheDir:            "/var/lib/trustd",
		Refresh:             5 * time.Minute,
		OfflineGrace:        0,
		NRISocket:           "/var/run/nri/nri.sock",
		ContainerdAddress:   "/run/containerd/containerd.sock",
		ContainerdNamespace: "k8s.io",
		ControlSocket:       "/run/trustd/trustd.sock",
		MetricsAddress:      "",
		DockerAuthzSocket:   "/run/docker/plugins/trustd.sock",
		DockerAddress:       "/run/docker.sock",
	}
	if !reflect.DeepEqual(p.Daemon, want) {
		t.Errorf("Daemon = %+v, want %+v", p.Daemon, want)
	}
	if p.Version != 1 || p.Mode != ModeEnforce || p.File != "p.toml" {
		t.Errorf("Version, Mode, File = %d, %q, %q; want 1, enforce, p.toml", p.Version, p.Mode, p.File)
	}
	if len(p.Sources)+len(p.Rules)+len(p.Mirrors) != 0 {
		t.Errorf("want no sources, rules or mirrors, got %d, %d, %d", len(p.Sources), len(p.Rules), len(p.Mirrors))
	}
	// An empty [daemon] table keeps the defaults too.
	if p := mustParse(t, v1+"[daemon]\n"); !reflect.DeepEqual(p.Daemon, want) {
		t.Errorf("empty [daemon]: Daemon = %+v, want %+v", p.Daemon, want)
	}
}

func TestParseKeys(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, p *Policy)
	}{
		{"version hex", "version = 0x1\n", func(t *testing.T, p *Policy) {
			if p.Version != 1 {
				t.Errorf("Version = %d", p.Version)
			}
		}},
		{"mode enforce", v1 + `mode = "enforce"`, func(t *testing.T, p *Policy) {
			if p.Mode != ModeEnforce {
				t.Errorf("Mode = %q", p.Mode)
			}
		}},
		{"mode audit", v1 + `mode = "audit"`, func(t *testing.T, p *Policy) {
			if p.Mode != ModeAudit {
				t.Errorf("Mode = %q", p.Mode)
			}
		}},
		{"mode off", v1 + `mode = "off"`, func(t *testing.T, p *Policy) {
			if p.Mode != ModeOff {
				t.Errorf("Mode = %q", p.Mode)
			}
		}},
		{"daemon all keys", v1 + `
[daemon]
cache_dir = "/srv/trustd"
refresh = "90s"
offline_grace = "24h"
nri_socket = "/tmp/nri.sock"
containerd_address = "unix:///tmp/containerd.sock"
containerd_namespace = "default"
control_socket = "/tmp/trustd.sock"
metrics_address = "127.0.0.1:9109"
docker_authz = true
docker_authz_socket = "/run/docker/plugins/trustd-a.sock"
docker_address = "unix:///var/run/docker.sock"
docker_allow = ["swarm", "build"]
`, func(t *testing.T, p *Policy) {
			want := Daemon{
				CacheDir:            "/srv/trustd",
				Refresh:             90 * time.Second,
				OfflineGrace:        24 * time.Hour,
				NRISocket:           "/tmp/nri.sock",
				ContainerdAddress:   "unix:///tmp/containerd.sock",
				ContainerdNamespace: "default",
				ControlSocket:       "/tmp/trustd.sock",
				MetricsAddress:      "127.0.0.1:9109",
				DockerAuthz:         true,
				DockerAuthzSocket:   "/run/docker/plugins/trustd-a.sock",
				DockerAddress:       "unix:///var/run/docker.sock",
				DockerAllow:         []string{"build", "swarm"},
			}
			if !reflect.DeepEqual(p.Daemon, want) {
				t.Errorf("Daemon = %+v, want %+v", p.Daemon, want)
			}
		}},
		{"daemon dotted keys and inline table", v1 + "daemon = {refresh = \"1m\", offline_grace = \"0s\"}\n", func(t *testing.T, p *Policy) {
			if p.Daemon.Refresh != time.Minute || p.Daemon.OfflineGrace != 0 || p.Daemon.CacheDir != DefaultCacheDir {
				t.Errorf("Daemon = %+v", p.Daemon)
			}
		}},
		{"docker-only node: no NRI socket", v1 + "[daemon]\nnri_socket = \"\"\ndocker_authz = true\n", func(t *testing.T, p *Policy) {
			if p.Daemon.NRISocket != "" || !p.Daemon.DockerAuthz || p.Daemon.DockerAuthzSocket != DefaultDockerAuthzSocket || p.Daemon.DockerAllow != nil {
				t.Errorf("Daemon = %+v", p.Daemon)
			}
		}},
		{"daemon containerd address as a path", v1 + "daemon.containerd_address = \"/run/k3s/containerd/containerd.sock\"\n", func(t *testing.T, p *Policy) {
			if p.Daemon.ContainerdAddress != "/run/k3s/containerd/containerd.sock" {
				t.Errorf("ContainerdAddress = %q", p.Daemon.ContainerdAddress)
			}
		}},
		{"notary source", v1 + hubSource + `trust_on_first_use = true
offline_grace = "1h"
`, func(t *testing.T, p *Policy) {
			s := p.Source("hub")
			if s == nil {
				t.Fatal(`Source("hub") = nil`)
			}
			if s != p.Sources[0] || s.Name != "hub" || s.Kind != KindNotary || s.URL != "https://notary.docker.io" ||
				s.Root != "" || !s.TrustOnFirstUse || s.OfflineGrace == nil || *s.OfflineGrace != time.Hour || len(s.Pins) != 0 {
				t.Errorf("source = %+v", s)
			}
			if got := norms(s.Repositories); !reflect.DeepEqual(got, []string{"docker.io/**"}) {
				t.Errorf("Repositories = %q", got)
			}
			if s.Pos != (Position{"p.toml", 3, 1}) {
				t.Errorf("Pos = %v", s.Pos)
			}
		}},
		{"source defaults", v1 + hubSource, func(t *testing.T, p *Policy) {
			s := p.Source("hub")
			if s.TrustOnFirstUse || s.OfflineGrace != nil || s.Pins != nil {
				t.Errorf("source = %+v", s)
			}
			if p.Source("nope") != nil {
				t.Error(`Source("nope") != nil`)
			}
		}},
		{"tuf source absolute root", v1 + corpSource, func(t *testing.T, p *Policy) {
			s := p.Source("corp")
			if s.Kind != KindTUF || s.Root != "/etc/trustd/corp-root.json" {
				t.Errorf("source = %+v", s)
			}
		}},
		{"tuf source relative root", v1 + strings.Replace(corpSource, "/etc/trustd/corp-root.json", "keys/../corp-root.json", 1), func(t *testing.T, p *Policy) {
			// Parse("p.toml"): relative to ".", cleaned.
			if s := p.Source("corp"); s.Root != "corp-root.json" {
				t.Errorf("Root = %q", s.Root)
			}
		}},
		{"tuf source with loopback http and explicit false tofu", v1 + `
[[source]]
name = "local.tuf_1"
kind = "tuf"
url = "http://127.0.0.1:8080/"
root = "/r.json"
repositories = ["127.0.0.1:5000/**"]
trust_on_first_use = false
`, func(t *testing.T, p *Policy) {
			if s := p.Source("local.tuf_1"); s == nil || s.URL != "http://127.0.0.1:8080/" || s.TrustOnFirstUse {
				t.Errorf("source = %+v", s)
			}
		}},
		{"pins", v1 + hubSource + `
  [[source.pin]]
  repositories = ["docker.io/library/*"]
  root_keys = ["0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]
  [[source.pin]]
  repositories = ["corp/**"]
  ca = "certs/ca.pem"
`, func(t *testing.T, p *Policy) {
			s := p.Source("hub")
			if len(s.Pins) != 2 {
				t.Fatalf("Pins = %d", len(s.Pins))
			}
			p0, p1 := s.Pins[0], s.Pins[1]
			if got := norms(p0.Repositories); !reflect.DeepEqual(got, []string{"docker.io/library/*"}) {
				t.Errorf("pin 0 Repositories = %q", got)
			}
			if len(p0.RootKeys) != 2 || p0.RootKeys[0][:4] != "0123" || p0.CA != "" {
				t.Errorf("pin 0 = %+v", p0)
			}
			if got := norms(p1.Repositories); !reflect.DeepEqual(got, []string{"docker.io/corp/**"}) {
				t.Errorf("pin 1 Repositories = %q", got)
			}
			if p1.CA != "certs/ca.pem" || p1.RootKeys != nil {
				t.Errorf("pin 1 = %+v", p1)
			}
			if p0.Pos != (Position{"p.toml", 9, 3}) || p1.Pos != (Position{"p.toml", 12, 3}) {
				t.Errorf("pin positions = %v, %v", p0.Pos, p1.Pos)
			}
		}},
		{"rule all keys", v1 + hubSource + `
[[rule]]
images = ["nginx", "library/*"]
namespaces = ["prod", "kube-*"]
action = "verify"
source = "hub"
signers = ["targets/releases"]
threshold = 1
mode = "audit"
`, func(t *testing.T, p *Policy) {
			r := p.Rules[0]
			if got := norms(r.Images); !reflect.DeepEqual(got, []string{"docker.io/library/nginx", "docker.io/library/*"}) {
				t.Errorf("Images = %q", got)
			}
			if r.Images[0].String() != "nginx" {
				t.Errorf("Images[0].String() = %q", r.Images[0].String())
			}
			if !reflect.DeepEqual(r.Namespaces, []string{"prod", "kube-*"}) || r.Action != ActionVerify || r.Source != "hub" ||
				!reflect.DeepEqual(r.Signers, []string{"targets/releases"}) || r.Threshold != 1 || r.Mode != ModeAudit || r.Index != 0 {
				t.Errorf("rule = %+v", r)
			}
			if r.Pos != (Position{"p.toml", 9, 1}) {
				t.Errorf("Pos = %v", r.Pos)
			}
		}},
		{"rule defaults notary", v1 + hubSource + "[[rule]]\nimages = [\"**\"]\naction = \"verify\"\nsource = \"hub\"\n", func(t *testing.T, p *Policy) {
			r := p.Rules[0]
			if !reflect.DeepEqual(r.Namespaces, []string{"*"}) || !reflect.DeepEqual(r.Signers, []string{"targets/releases", "targets"}) ||
				r.Threshold != 1 || r.Mode != "" {
				t.Errorf("rule = %+v", r)
			}
		}},
		{"rule defaults tuf", v1 + corpSource + "[[rule]]\nimages = [\"registry.corp.example/**\"]\naction = \"verify\"\nsource = \"corp\"\n", func(t *testing.T, p *Policy) {
			r := p.Rules[0]
			if r.Signers != nil || r.Threshold != 1 {
				t.Errorf("rule = %+v", r)
			}
		}},
		{"rule tuf threshold without signers", v1 + corpSource + "[[rule]]\nimages = [\"registry.corp.example/**\"]\naction = \"verify\"\nsource = \"corp\"\nthreshold = 3\nsigners = [\"a\", \"b\", \"c\"]\n", func(t *testing.T, p *Policy) {
			if r := p.Rules[0]; r.Threshold != 3 || len(r.Signers) != 3 {
				t.Errorf("rule = %+v", r)
			}
		}},
		{"rule threshold 2 of notary defaults", v1 + hubSource + "[[rule]]\nimages = [\"**\"]\naction = \"verify\"\nsource = \"hub\"\nthreshold = 2\n", func(t *testing.T, p *Policy) {
			if r := p.Rules[0]; r.Threshold != 2 {
				t.Errorf("Threshold = %d", r.Threshold)
			}
		}},
		{"allow and deny rules", v1 + "[[rule]]\nimages = [\"a/b\"]\naction = \"allow\"\nmode = \"off\"\n[[rule]]\nimages = [\"**\"]\naction = \"deny\"\n", func(t *testing.T, p *Policy) {
			a, d := p.Rules[0], p.Rules[1]
			if a.Action != ActionAllow || a.Source != "" || a.Signers != nil || a.Threshold != 0 || a.Mode != ModeOff || a.Index != 0 {
				t.Errorf("allow rule = %+v", a)
			}
			if d.Action != ActionDeny || d.Index != 1 || d.Pos.Line != 6 {
				t.Errorf("deny rule = %+v", d)
			}
		}},
		{"rules as inline tables", v1 + "rule = [\n  {images = [\"a/b\"], action = \"allow\"},\n  {images = [\"**\"], action = \"deny\", namespaces = [\"x\"]},\n]\n", func(t *testing.T, p *Policy) {
			if len(p.Rules) != 2 || p.Rules[1].Action != ActionDeny || p.Rules[1].Pos != (Position{"p.toml", 4, 3}) {
				t.Errorf("rules = %+v %+v", p.Rules[0], p.Rules[1])
			}
		}},
		{"mirrors", v1 + `
[[mirror]]
from = "mirror.corp.example:5000/hub"
to = "docker.io"
[[mirror]]
from = "localhost:5000"
to = "library"
[[mirror]]
from = "index.docker.io/x"
to = "quay.io/x"
`, func(t *testing.T, p *Policy) {
			got := [][2]string{}
			for _, m := range p.Mirrors {
				got = append(got, [2]string{m.From, m.To})
			}
			want := [][2]string{
				{"mirror.corp.example:5000/hub", "docker.io"},
				{"localhost:5000", "docker.io/library/library"},
				{"docker.io/library/x", "quay.io/x"},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("mirrors = %q, want %q", got, want)
			}
			if p.Mirrors[1].Pos != (Position{"p.toml", 6, 1}) {
				t.Errorf("Pos = %v", p.Mirrors[1].Pos)
			}
		}},
		{"comments, CRLF and quoted keys", "# policy\r\nversion = 1 # v\r\n\"mode\" = 'audit'\r\n", func(t *testing.T, p *Policy) {
			if p.Mode != ModeAudit {
				t.Errorf("Mode = %q", p.Mode)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, mustParse(t, tt.doc))
		})
	}
}

func TestParseErrors(t *testing.T) {
	key := strings.Repeat("a", 64)
	tests := []struct {
		name string
		doc  string
		want string
	}{
		// Document structure.
		{"empty file", "", `p.toml:1:1: missing required key "version"`},
		{"syntax trailing garbage", v1 + "mode = \"audit\" x\n", `p.toml:2:16: syntax error: expected newline but got U+0078 'x'`},
		{"syntax unterminated array", v1 + "x = [\n", `p.toml:2:6: syntax error: array is incomplete`},
		{"byte order mark", "\uFEFFversion = 1\n", `p.toml:1:1: the file starts with a byte order mark (U+FEFF): remove it`},
		{"too large", v1 + "#" + strings.Repeat("x", MaxSize), `p.toml:1:1: policy file is larger than 1048576 bytes`},
		{"unknown top-level key", v1 + "mod = \"audit\"\n", `p.toml:2:1: unknown key "mod"`},
		{"unknown key case", "Version = 1\n", `p.toml:1:1: unknown key "Version" (keys are case-sensitive: did you mean "version"?)`},
		{"case variant cannot override", v1 + "[[rule]]\nimages = [\"**\"]\naction = \"deny\"\nAction = \"allow\"\n", `p.toml:5:1: unknown key "rule.Action" (keys are case-sensitive: did you mean "action"?)`},
		{"unknown table", v1 + "[deamon]\nrefresh = \"1m\"\n", `p.toml:2:2: unknown key "deamon"`},
		{"unknown subtable", v1 + "[[rule]]\nimages = [\"**\"]\naction = \"deny\"\n[rule.extra]\n", `p.toml:5:7: unknown key "rule.extra"`},
		{"unknown keys everywhere", v1 + "[daemon]\nrefresh_interval = \"1m\"\n[[source]]\nnam = \"x\"\n[[source.pin]]\nroot_key = []\n[[rule]]\nimage = []\n[[mirror]]\nform = \"a\"\n",
			"p.toml:3:1: unknown key \"daemon.refresh_interval\"\np.toml:5:1: unknown key \"source.nam\"\np.toml:7:1: unknown key \"source.pin.root_key\"\np.toml:9:1: unknown key \"rule.image\"\np.toml:11:1: unknown key \"mirror.form\""},
		{"unknown key in inline table", v1 + "rule = [{images = [\"**\"], acton = \"deny\"}]\n", `p.toml:2:27: unknown key "rule.acton"`},
		{"duplicate key", v1 + "mode = \"audit\"\nmode = \"enforce\"\n", `p.toml:3:1: duplicate key "mode" (first defined at p.toml:2:1)`},
		{"duplicate key in rule", v1 + "[[rule]]\nimages = [\"**\"]\nimages = [\"a/b\"]\n", `p.toml:4:1: duplicate key "rule.images" (first defined at p.toml:3:1)`},
		{"duplicate version", v1 + "version = 2\n", `p.toml:2:1: duplicate key "version" (first defined at p.toml:1:1)`},
		{"duplicate table", v1 + "[daemon]\n[daemon]\n", `p.toml:3:2: table daemon already exists`},
		{"table for array of tables", v1 + "[rule]\nimages = [\"**\"]\naction = \"deny\"\n", `p.toml:2:2: rule: expected an array of tables ([[rule]]), got a table`},
		{"array of tables for table", v1 + "[[daemon]]\n", `p.toml:2:3: daemon: expected a table ([daemon]), got an array of tables`},
		{"table for scalar", v1 + "[mode]\n", `p.toml:2:2: mode: expected a string, got a table`},
		{"table for pin", v1 + hubSource + "[source.pin]\nca = \"x\"\n", `p.toml:8:9: source.pin: expected an array of tables ([[source.pin]]), got a table`},
		{"subtable before its array", v1 + "[[source.pin]]\nca = \"x\"\n", `p.toml:2:3: source: [[source]] must come before its subtables`},
		{"dotted key through scalar", v1 + "[daemon]\nrefresh.x = \"1m\"\n", `p.toml:3:1: daemon.refresh: expected a duration string such as "5m", got a table`},
		{"array for table", v1 + "daemon = []\n", `p.toml:2:10: daemon: expected a table ([daemon]), got an array`},
		{"inline table for array of tables", v1 + "rule = {images = [\"**\"]}\n", `p.toml:2:8: rule: expected an array of tables ([[rule]]), got an inline table`},
		{"scalar in array of tables", v1 + "rule = [1]\n", `p.toml:2:9: rule: expected an array of tables ([[rule]]), got an integer in an array`},

		// Types.
		{"version string", "version = \"1\"\n", `p.toml:1:11: version: expected an integer, got a string`},
		{"version float", "version = 1.0\n", `p.toml:1:11: version: expected an integer, got a float`},
		{"mode integer", v1 + "mode = 1\n", `p.toml:2:8: mode: expected a string, got an integer`},
		{"refresh integer", v1 + "[daemon]\nrefresh = 300\n", `p.toml:3:11: daemon.refresh: expected a duration string such as "5m", got an integer`},
		{"offline grace time", v1 + "[daemon]\noffline_grace = 00:05:00\n", `p.toml:3:17: daemon.offline_grace: expected a duration string such as "5m", got a date or time`},
		{"tofu string", v1 + hubSource + "trust_on_first_use = \"yes\"\n", `p.toml:8:22: source.trust_on_first_use: expected a boolean, got a string`},
		{"images string", v1 + "[[rule]]\nimages = \"nginx\"\n", `p.toml:3:10: rule.images: expected an array of strings, got a string`},
		{"images integer element", v1 + "[[rule]]\nimages = [\"a/b\", 2]\n", `p.toml:3:18: rule.images: expected an array of strings, got an integer in it`},
		{"images nested array", v1 + "[[rule]]\nimages = [[\"a\"]]\n", `p.toml:3:10: rule.images: expected an array of strings, got an array in it`},
		{"threshold string", v1 + "[[rule]]\nthreshold = \"1\"\n", `p.toml:3:13: rule.threshold: expected an integer, got a string`},
		{"threshold overflow", v1 + "[[rule]]\nthreshold = 99999999999999999999\n", `p.toml:3:13: decimal number is too large to fit in a 64-bit signed integer`},
		{"boolean for string", v1 + "[[mirror]]\nfrom = true\n", `p.toml:3:8: mirror.from: expected a string, got a boolean`},

		// Version and mode.
		{"version 2", "version = 2\nanything = \"goes\"\n", `p.toml:1:11: version: unsupported version 2 (this trustd reads version 1)`},
		{"version 0", "version = 0\n", `p.toml:1:11: version: unsupported version 0 (this trustd reads version 1)`},
		{"missing version", "mode = \"audit\"\n", `p.toml:1:1: missing required key "version"`},
		{"unknown mode", v1 + "mode = \"enforced\"\n", `p.toml:2:8: mode: unknown mode "enforced" (want "enforce", "audit" or "off")`},
		{"mode case", v1 + "mode = \"Enforce\"\n", `p.toml:2:8: mode: unknown mode "Enforce" (want "enforce", "audit" or "off")`},

		// Daemon.
		{"daemon empty path", v1 + "[daemon]\ncache_dir = \"\"\n", `p.toml:3:13: daemon.cache_dir: must not be empty`},
		{"daemon relative paths", v1 + "[daemon]\ncache_dir = \"var/lib\"\nnri_socket = \"nri.sock\"\ncontainerd_address = \"unix://run/c.sock\"\ncontrol_socket = \"unix:///run/t.sock\"\n",
			"p.toml:3:13: daemon.cache_dir: must be an absolute path, not \"var/lib\"\n" +
				"p.toml:4:14: daemon.nri_socket: must be an absolute path, not \"nri.sock\"\n" +
				"p.toml:5:22: daemon.containerd_address: must be an absolute path, not \"unix://run/c.sock\"\n" +
				"p.toml:6:18: daemon.control_socket: must be an absolute path, not \"unix:///run/t.sock\""},
		{"refresh unparsable", v1 + "[daemon]\nrefresh = \"5 minutes\"\n", `p.toml:3:11: daemon.refresh: invalid duration "5 minutes" (examples: "30s", "5m", "1h30m")`},
		{"refresh no unit", v1 + "[daemon]\nrefresh = \"300\"\n", `p.toml:3:11: daemon.refresh: invalid duration "300" (examples: "30s", "5m", "1h30m")`},
		{"refresh zero", v1 + "[daemon]\nrefresh = \"0s\"\n", `p.toml:3:11: daemon.refresh: must be positive`},
		{"refresh negative", v1 + "[daemon]\nrefresh = \"-5m\"\n", `p.toml:3:11: daemon.refresh: must not be negative`},
		{"offline grace negative", v1 + "[daemon]\noffline_grace = \"-1s\"\n", `p.toml:3:17: daemon.offline_grace: must not be negative`},
		{"containerd namespace", v1 + "[daemon]\ncontainerd_namespace = \"k8s io\"\n", `p.toml:3:24: daemon.containerd_namespace: invalid namespace "k8s io"`},
		{"containerd namespace empty", v1 + "[daemon]\ncontainerd_namespace = \"\"\n", `p.toml:3:24: daemon.containerd_namespace: invalid namespace ""`},
		{"metrics address", v1 + "[daemon]\nmetrics_address = \"9109\"\n", `p.toml:3:19: daemon.metrics_address: invalid address "9109" (want host:port, e.g. "127.0.0.1:9109")`},
		{"no NRI and no Docker", v1 + "[daemon]\nnri_socket = \"\"\n", `p.toml:3:14: daemon.nri_socket: empty (no NRI) while docker_authz is off: trustd would enforce nothing on this node (set docker_authz = true for a Docker-only node)`},
		{"no NRI, Docker off", v1 + "[daemon]\nnri_socket = \"\"\ndocker_authz = false\n", `p.toml:3:14: daemon.nri_socket: empty (no NRI) while docker_authz is off: trustd would enforce nothing on this node (set docker_authz = true for a Docker-only node)`},
		{"docker authz not a bool", v1 + "[daemon]\ndocker_authz = \"yes\"\n", `p.toml:3:16: daemon.docker_authz: expected a boolean, got a string`},
		{"docker paths", v1 + "[daemon]\ndocker_authz_socket = \"\"\ndocker_address = \"docker.sock\"\n",
			"p.toml:3:23: daemon.docker_authz_socket: must not be empty\n" +
				"p.toml:4:18: daemon.docker_address: must be an absolute path, not \"docker.sock\""},
		{"docker socket not a url", v1 + "[daemon]\ndocker_authz_socket = \"unix:///run/docker/plugins/trustd.sock\"\n", `p.toml:3:23: daemon.docker_authz_socket: must be an absolute path, not "unix:///run/docker/plugins/trustd.sock"`},
		{"docker allow unknown and twice", v1 + "[daemon]\ndocker_allow = [\"build\", \"Build\", \"build\", \"grpc\"]\n",
			"p.toml:3:26: daemon.docker_allow: unknown endpoint group \"Build\" (known: build, buildkit, plugins, swarm)\n" +
				"p.toml:3:35: daemon.docker_allow: \"build\" is listed twice\n" +
				"p.toml:3:44: daemon.docker_allow: unknown endpoint group \"grpc\" (known: build, buildkit, plugins, swarm)"},
		{"metrics port", v1 + "[daemon]\nmetrics_address = \"127.0.0.1:99999\"\n", `p.toml:3:19: daemon.metrics_address: invalid address "127.0.0.1:99999" (want host:port, e.g. "127.0.0.1:9109")`},

		// Sources.
		{"source missing keys", v1 + "[[source]]\n",
			"p.toml:2:1: source: missing required key \"name\"\n" +
				"p.toml:2:1: source: missing required key \"kind\"\n" +
				"p.toml:2:1: source: missing required key \"url\"\n" +
				"p.toml:2:1: source: missing required key \"repositories\""},
		{"source name invalid", v1 + strings.Replace(hubSource, `"hub"`, `"Hub"`, 1), `p.toml:4:8: source.name: invalid name "Hub" (want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit)`},
		{"source name empty", v1 + strings.Replace(hubSource, `"hub"`, `""`, 1), `p.toml:4:8: source.name: invalid name "" (want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit)`},
		{"source name leading dash", v1 + strings.Replace(hubSource, `"hub"`, `"-hub"`, 1), `p.toml:4:8: source.name: invalid name "-hub" (want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit)`},
		{"source name duplicate", v1 + hubSource + hubSource, `p.toml:10:8: source.name: duplicate source name "hub" (first defined at p.toml:3:1)`},
		{"source kind", v1 + strings.Replace(hubSource, `"notary"`, `"Notary"`, 1), `p.toml:5:8: source.kind: unknown kind "Notary" (want "notary", "tuf" or "sigstore")`},
		{"url empty", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `""`, 1), `p.toml:6:7: source.url: must not be empty`},
		{"url not absolute", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `"notary.docker.io"`, 1), `p.toml:6:7: source.url: "notary.docker.io" is not an absolute URL (want https://host/...)`},
		{"url opaque", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `"https:notary.docker.io"`, 1), `p.toml:6:7: source.url: "https:notary.docker.io" is not an absolute URL (want https://host/...)`},
		{"url unparsable", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `"https://notary docker.io"`, 1), `p.toml:6:7: source.url: invalid URL "https://notary docker.io": invalid character " " in host name`},
		{"url scheme", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `"ftp://notary.docker.io"`, 1), `p.toml:6:7: source.url: scheme "ftp" is not allowed (want https, or http for a loopback host)`},
		{"url http remote", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `"http://notary.docker.io"`, 1), `p.toml:6:7: source.url: http is only allowed for loopback hosts, not "notary.docker.io" (use https)`},
		{"url http 10/8", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `"http://10.0.0.1:4443"`, 1), `p.toml:6:7: source.url: http is only allowed for loopback hosts, not "10.0.0.1" (use https)`},
		{"url http localhost suffix", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `"http://localhost.evil.example"`, 1), `p.toml:6:7: source.url: http is only allowed for loopback hosts, not "localhost.evil.example" (use https)`},
		{"url no host", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `"https:///path"`, 1), `p.toml:6:7: source.url: missing host in "https:///path"`},
		{"url credentials", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `"https://user:pw@notary.docker.io"`, 1), `p.toml:6:7: source.url: must not contain credentials`},
		{"url query", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `"https://notary.docker.io/?x=1"`, 1), `p.toml:6:7: source.url: must not contain a query or fragment`},
		{"url fragment", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `"https://notary.docker.io/#x"`, 1), `p.toml:6:7: source.url: must not contain a query or fragment`},
		{"url port", v1 + strings.Replace(hubSource, `"https://notary.docker.io"`, `"https://notary.docker.io:99999"`, 1), `p.toml:6:7: source.url: invalid port "99999"`},
		{"repositories empty", v1 + strings.Replace(hubSource, `["docker.io/**"]`, `[]`, 1), `p.toml:7:16: source.repositories: must not be empty`},
		{"repositories invalid", v1 + strings.Replace(hubSource, `["docker.io/**"]`, `["docker.io/**", "Docker.io/Library"]`, 1), `p.toml:7:33: source.repositories: invalid pattern "Docker.io/Library": repository names must be lowercase`},
		{"tuf without root", v1 + strings.Replace(corpSource, "root = \"/etc/trustd/corp-root.json\"\n", "", 1), `p.toml:3:1: source: missing required key "root" (a tuf source starts from its initial root.json)`},
		{"tuf empty root", v1 + strings.Replace(corpSource, "/etc/trustd/corp-root.json", "", 1), `p.toml:7:8: source.root: must not be empty`},
		{"notary with root", v1 + hubSource + "root = \"/r.json\"\n", `p.toml:8:8: source.root: only valid for kind "tuf"`},
		{"tuf with tofu", v1 + corpSource + "trust_on_first_use = true\n", `p.toml:9:22: source.trust_on_first_use: only valid for kind "notary" (a tuf source starts from its root)`},
		{"tuf with pin", v1 + corpSource + "[[source.pin]]\nrepositories = [\"**\"]\nca = \"/ca.pem\"\n", `p.toml:9:1: source.pin: only valid for kind "notary"`},
		{"source offline grace", v1 + hubSource + "offline_grace = \"forever\"\n", `p.toml:8:17: source.offline_grace: invalid duration "forever" (examples: "30s", "5m", "1h30m")`},
		{"source offline grace negative", v1 + hubSource + "offline_grace = \"-1h\"\n", `p.toml:8:17: source.offline_grace: must not be negative`},

		// Pins.
		{"pin empty", v1 + hubSource + "[[source.pin]]\n",
			"p.toml:8:1: source.pin: missing required key \"repositories\"\n" +
				"p.toml:8:1: source.pin: missing required key \"root_keys\" or \"ca\""},
		{"pin both", v1 + hubSource + "[[source.pin]]\nrepositories = [\"**\"]\nroot_keys = [\"" + key + "\"]\nca = \"/ca.pem\"\n", `p.toml:8:1: source.pin: set either "root_keys" or "ca", not both`},
		{"pin empty repositories", v1 + hubSource + "[[source.pin]]\nrepositories = []\nca = \"/ca.pem\"\n", `p.toml:9:16: source.pin.repositories: must not be empty`},
		{"pin invalid repository", v1 + hubSource + "[[source.pin]]\nrepositories = [\"a:1\"]\nca = \"/ca.pem\"\n", `p.toml:9:17: source.pin.repositories: invalid pattern "a:1": a pattern must not contain a tag`},
		{"pin empty root keys", v1 + hubSource + "[[source.pin]]\nrepositories = [\"**\"]\nroot_keys = []\n", `p.toml:10:13: source.pin.root_keys: must not be empty`},
		{"pin bad root key", v1 + hubSource + "[[source.pin]]\nrepositories = [\"**\"]\nroot_keys = [\"" + strings.ToUpper(key) + "\", \"abc\"]\n",
			"p.toml:10:14: source.pin.root_keys: invalid root key ID \"" + strings.ToUpper(key) + "\" (want 64 lowercase hex digits)\n" +
				"p.toml:10:82: source.pin.root_keys: invalid root key ID \"abc\" (want 64 lowercase hex digits)"},
		{"pin duplicate root key", v1 + hubSource + "[[source.pin]]\nrepositories = [\"**\"]\nroot_keys = [\"" + key + "\", \"" + key + "\"]\n", `p.toml:10:82: source.pin.root_keys: duplicate root key ID "` + key + `"`},
		{"pin empty ca", v1 + hubSource + "[[source.pin]]\nrepositories = [\"**\"]\nca = \"\"\n", `p.toml:10:6: source.pin.ca: must not be empty`},

		// Rules.
		{"rule missing keys", v1 + "[[rule]]\n",
			"p.toml:2:1: rule: missing required key \"images\"\n" +
				"p.toml:2:1: rule: missing required key \"action\""},
		{"rule empty images", v1 + "[[rule]]\nimages = []\naction = \"deny\"\n", `p.toml:3:10: rule.images: must not be empty`},
		{"rule empty namespaces", v1 + "[[rule]]\nimages = [\"**\"]\nnamespaces = []\naction = \"deny\"\n", `p.toml:4:14: rule.namespaces: must not be empty (omit it for every namespace)`},
		{"rule bad namespaces", v1 + "[[rule]]\nimages = [\"**\"]\nnamespaces = [\"\", \"Prod\", \"kube-[\", \"**\", \"a/b\"]\naction = \"deny\"\n",
			"p.toml:4:15: rule.namespaces: invalid namespace pattern \"\": empty pattern\n" +
				"p.toml:4:19: rule.namespaces: invalid namespace pattern \"Prod\": Kubernetes namespaces have lowercase letters, digits and '-' only (use *, ? and [...] to match several)\n" +
				"p.toml:4:27: rule.namespaces: invalid namespace pattern \"kube-[\": syntax error in pattern\n" +
				"p.toml:4:37: rule.namespaces: invalid namespace pattern \"**\": use \"*\"\n" +
				"p.toml:4:43: rule.namespaces: invalid namespace pattern \"a/b\": Kubernetes namespaces have lowercase letters, digits and '-' only (use *, ? and [...] to match several)"},
		{"rule unknown action", v1 + "[[rule]]\nimages = [\"**\"]\naction = \"permit\"\n", `p.toml:4:10: rule.action: unknown action "permit" (want "verify", "allow" or "deny")`},
		{"rule unknown mode", v1 + "[[rule]]\nimages = [\"**\"]\naction = \"deny\"\nmode = \"warn\"\n", `p.toml:5:8: rule.mode: unknown mode "warn" (want "enforce", "audit" or "off")`},
		{"verify without source", v1 + "[[rule]]\nimages = [\"**\"]\naction = \"verify\"\n", `p.toml:2:1: rule: missing required key "source" (required with action "verify")`},
		{"verify unknown source", v1 + hubSource + "[[rule]]\nimages = [\"**\"]\naction = \"verify\"\nsource = \"hubb\"\n", `p.toml:11:10: rule.source: unknown source "hubb"`},
		{"source on allow", v1 + hubSource + "[[rule]]\nimages = [\"**\"]\naction = \"allow\"\nsource = \"hub\"\nsigners = [\"targets\"]\nthreshold = 1\n",
			"p.toml:11:10: rule.source: only valid with action \"verify\"\n" +
				"p.toml:12:11: rule.signers: only valid with action \"verify\"\n" +
				"p.toml:13:13: rule.threshold: only valid with action \"verify\""},
		{"source on deny", v1 + hubSource + "[[rule]]\nimages = [\"**\"]\naction = \"deny\"\nsource = \"hub\"\n", `p.toml:11:10: rule.source: only valid with action "verify"`},
		{"signers empty list", v1 + hubSource + "[[rule]]\nimages = [\"**\"]\naction = \"verify\"\nsource = \"hub\"\nsigners = []\n", `p.toml:12:11: rule.signers: must not be empty (omit it for the default)`},
		{"signers bad entries", v1 + hubSource + "[[rule]]\nimages = [\"**\"]\naction = \"verify\"\nsource = \"hub\"\nsigners = [\"targets\", \"\", \"targets\", \" targets/x\", \"releases\", \"targets/\"]\n",
			"p.toml:12:23: rule.signers: empty signer\n" +
				"p.toml:12:27: rule.signers: duplicate signer \"targets\"\n" +
				"p.toml:12:38: rule.signers: signer \" targets/x\" has leading or trailing white space\n" +
				"p.toml:12:52: rule.signers: \"releases\" is not a Notary role (want \"targets\" or \"targets/<name>\")\n" +
				"p.toml:12:64: rule.signers: \"targets/\" is not a Notary role (want \"targets\" or \"targets/<name>\")"},
		{"tuf signers any name", v1 + corpSource + "[[rule]]\nimages = [\"**\"]\naction = \"verify\"\nsource = \"corp\"\nsigners = [\"releases\", \"releases\"]\n", `p.toml:13:24: rule.signers: duplicate signer "releases"`},
		{"threshold zero", v1 + hubSource + "[[rule]]\nimages = [\"**\"]\naction = \"verify\"\nsource = \"hub\"\nthreshold = 0\n", `p.toml:12:13: rule.threshold: must be at least 1`},
		{"threshold negative", v1 + hubSource + "[[rule]]\nimages = [\"**\"]\naction = \"verify\"\nsource = \"hub\"\nthreshold = -1\n", `p.toml:12:13: rule.threshold: must be at least 1`},
		{"threshold above signers", v1 + hubSource + "[[rule]]\nimages = [\"**\"]\naction = \"verify\"\nsource = \"hub\"\nsigners = [\"targets\"]\nthreshold = 2\n", `p.toml:13:13: rule.threshold: 2 is more than the number of signers (1)`},
		{"threshold above default signers", v1 + hubSource + "[[rule]]\nimages = [\"**\"]\naction = \"verify\"\nsource = \"hub\"\nthreshold = 3\n", `p.toml:12:13: rule.threshold: 3 is more than the number of signers (2)`},
		{"threshold huge for tuf", v1 + corpSource + "[[rule]]\nimages = [\"**\"]\naction = \"verify\"\nsource = \"corp\"\nthreshold = 100000\n", `p.toml:13:13: rule.threshold: 100000 is too large`},

		// Patterns.
		{"pattern empty", v1 + "[[rule]]\nimages = [\"\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern "": empty pattern`},
		{"pattern star", v1 + "[[rule]]\nimages = [\"*\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern "*": "*" is ambiguous: write "**" for every repository or "docker.io/library/*" for Docker official images`},
		{"pattern tag", v1 + "[[rule]]\nimages = [\"nginx:latest\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern "nginx:latest": a pattern must not contain a tag`},
		{"pattern tag after host", v1 + "[[rule]]\nimages = [\"localhost:5000/a:1\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern "localhost:5000/a:1": a pattern must not contain a tag`},
		{"pattern digest", v1 + "[[rule]]\nimages = [\"nginx@sha256:0123\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern "nginx@sha256:0123": a pattern must not contain a digest`},
		{"pattern space", v1 + "[[rule]]\nimages = [\" nginx\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern " nginx": leading or trailing white space`},
		{"pattern empty segment", v1 + "[[rule]]\nimages = [\"docker.io//nginx\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern "docker.io//nginx": empty path segment`},
		{"pattern trailing slash", v1 + "[[rule]]\nimages = [\"docker.io/\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern "docker.io/": empty path segment`},
		{"pattern partial doublestar", v1 + "[[rule]]\nimages = [\"docker.io/lib**\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern "docker.io/lib**": "**" must be a whole path segment`},
		{"pattern uppercase", v1 + "[[rule]]\nimages = [\"Nginx\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern "Nginx": repository names must be lowercase`},
		{"pattern bad host", v1 + "[[rule]]\nimages = [\"*_x.example/a\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern "*_x.example/a": invalid registry host`},
		{"pattern bad component", v1 + "[[rule]]\nimages = [\"corp/-app\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern "corp/-app": not a valid repository name`},
		{"pattern too long", v1 + "[[rule]]\nimages = [\"a/" + strings.Repeat("b", 300) + "\"]\naction = \"deny\"\n", `p.toml:3:11: rule.images: invalid pattern "a/` + strings.Repeat("b", 300) + `": repository name must not be more than 255 characters`},

		// Mirrors.
		{"mirror missing keys", v1 + "[[mirror]]\n",
			"p.toml:2:1: mirror: missing required key \"from\"\n" +
				"p.toml:2:1: mirror: missing required key \"to\""},
		{"mirror empty", v1 + "[[mirror]]\nfrom = \"\"\nto = \"\"\n",
			"p.toml:3:8: mirror.from: must not be empty\n" +
				"p.toml:4:6: mirror.to: must not be empty"},
		{"mirror invalid", v1 + "[[mirror]]\nfrom = \"bad_host.example\"\nto = \"Docker\"\n",
			"p.toml:3:8: mirror.from: invalid registry host \"bad_host.example\"\n" +
				"p.toml:4:6: mirror.to: invalid repository name \"Docker\": repository name (library/Docker) must be lowercase"},
		{"mirror with tag", v1 + "[[mirror]]\nfrom = \"m.example/a:1\"\nto = \"docker.io\"\n", `p.toml:3:8: mirror.from: invalid repository name "m.example/a:1": a repository name must not contain a tag or digest`},
		{"mirror duplicate", v1 + "[[mirror]]\nfrom = \"m.example/hub\"\nto = \"docker.io\"\n[[mirror]]\nfrom = \"m.example/hub\"\nto = \"quay.io\"\n", `p.toml:6:8: mirror.from: duplicate mirror for "m.example/hub" (first defined at p.toml:2:1)`},
		{"mirror duplicate after normalisation", v1 + "[[mirror]]\nfrom = \"index.docker.io\"\nto = \"m.example\"\n[[mirror]]\nfrom = \"docker.io\"\nto = \"quay.io\"\n", `p.toml:6:8: mirror.from: duplicate mirror for "docker.io" (first defined at p.toml:2:1)`},
		{"mirror to itself", v1 + "[[mirror]]\nfrom = \"m.example\"\nto = \"m.example\"\n", `p.toml:4:6: mirror.to: same as from ("m.example")`},

		// Several independent errors are all reported, in file order.
		{"many errors", v1 + "mode = \"x\"\n[[rule]]\nimages = [\"A\"]\naction = \"verify\"\n[daemon]\nrefresh = \"x\"\n",
			"p.toml:2:8: mode: unknown mode \"x\" (want \"enforce\", \"audit\" or \"off\")\n" +
				"p.toml:3:1: rule: missing required key \"source\" (required with action \"verify\")\n" +
				"p.toml:4:11: rule.images: invalid pattern \"A\": repository names must be lowercase\n" +
				"p.toml:7:11: daemon.refresh: invalid duration \"x\" (examples: \"30s\", \"5m\", \"1h30m\")"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		if seen[tt.name] {
			t.Fatalf("duplicate test name %q", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("p.toml", []byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want error:\n%s", p, tt.want)
			}
			if p != nil {
				t.Errorf("Parse returned a policy with its error")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got: %s\nwant: %s", got, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false")
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != strings.Count(tt.want, "\n")+1 {
				t.Fatalf("errors.As(Errors) = %v, %d errors", errs, len(errs))
			}
			for _, e := range errs {
				if e.Pos.File != "p.toml" || e.Pos.Line < 1 || e.Pos.Col < 1 || !errors.Is(e, ErrInvalid) {
					t.Errorf("error %q: bad position %+v or not ErrInvalid", e, e.Pos)
				}
			}
		})
	}
}

// TestSyntaxErrorsUnwrap checks that go-toml's errors stay reachable.
func TestSyntaxErrorsUnwrap(t *testing.T) {
	_, err := Parse("p.toml", []byte(v1+"[daemon]\n[daemon]\n"))
	var e *Error
	if !errors.As(err, &e) || e.Err == nil || e.Pos != (Position{"p.toml", 3, 2}) {
		t.Fatalf("errors.As(*Error) = %#v", e)
	}
	if e.Unwrap() != e.Err {
		t.Errorf("Unwrap() = %v", e.Unwrap())
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.toml")
	doc := v1 + strings.Replace(corpSource, "/etc/trustd/corp-root.json", "corp-root.json", 1) +
		"[[source.pin]]\n" // tuf sources cannot have pins
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(file)
	if want := file + ":9:1: source.pin: only valid for kind \"notary\""; err == nil || err.Error() != want {
		t.Fatalf("Load error = %v, want %s", err, want)
	}

	if err := os.WriteFile(file, []byte(v1+strings.Replace(corpSource, "/etc/trustd/corp-root.json", "corp-root.json", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "corp-root.json"); p.Source("corp").Root != want || p.File != file {
		t.Errorf("Root, File = %q, %q; want %q, %q", p.Source("corp").Root, p.File, want, file)
	}

	_, err = Load(filepath.Join(dir, "missing.toml"))
	if err == nil || errors.Is(err, ErrInvalid) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v; want a not-exist error that is not ErrInvalid", err)
	}

	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, []byte(v1+"#"+strings.Repeat("x", MaxSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v", err)
	}
}

func TestStrings(t *testing.T) {
	if got := (Position{"/etc/trustd/policy.toml", 3, 7}).String(); got != "/etc/trustd/policy.toml:3:7" {
		t.Errorf("Position.String() = %q", got)
	}
	if got := (Position{"", 1, 1}).String(); got != "<input>:1:1" {
		t.Errorf("Position.String() = %q", got)
	}
	w := Warning{Pos: Position{"p.toml", 2, 1}, Message: "m"}
	if got := w.String(); got != "p.toml:2:1: warning: m" {
		t.Errorf("Warning.String() = %q", got)
	}
	e := &Error{Pos: Position{"p.toml", 2, 1}, Msg: "m"}
	if got := e.Error(); got != "p.toml:2:1: m" {
		t.Errorf("Error.Error() = %q", got)
	}
	es := Errors{e, &Error{Pos: Position{"p.toml", 3, 4}, Msg: "n"}}
	if got := es.Error(); got != "p.toml:2:1: m\np.toml:3:4: n" {
		t.Errorf("Errors.Error() = %q", got)
	}
	if !errors.Is(es, ErrInvalid) || len(es.Unwrap()) != 2 {
		t.Errorf("Errors does not unwrap")
	}

	p, err := Parse("/etc/trustd/policy.toml", []byte(v1+"\n[[rule]]\nimages = [\"**\"]\naction = \"deny\"\n\n[[rule]]\nimages = [\"a/b\"]\naction = \"allow\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Rules[1].String(); got != "rule #2 (policy.toml:7)" {
		t.Errorf("Rule.String() = %q", got)
	}
}

func TestEffectiveMode(t *testing.T) {
	for _, tt := range []struct {
		rule, global, want Mode
	}{
		{"", ModeEnforce, ModeEnforce},
		{"", ModeAudit, ModeAudit},
		{ModeAudit, ModeEnforce, ModeAudit},
		{ModeEnforce, ModeOff, ModeEnforce},
		{ModeOff, ModeEnforce, ModeOff},
	} {
		r := &Rule{Mode: tt.rule}
		if got := r.EffectiveMode(tt.global); got != tt.want {
			t.Errorf("Rule{Mode: %q}.EffectiveMode(%q) = %q, want %q", tt.rule, tt.global, got, tt.want)
		}
	}
}
