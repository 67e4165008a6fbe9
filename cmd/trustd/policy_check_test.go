package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pcWrite writes body as name in dir and returns its path.
func pcWrite(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const pcSources = `version = 1

[[source]]
name = "corp"
kind = "tuf"
url = "https://tuf.corp.example/metadata/"
root = "corp-root.json"
repositories = ["registry.corp.example/**"]
`

// pcLines splits output into lines, without the final newline.
func pcLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func pcEqualLines(t *testing.T, what, got string, want []string) {
	t.Helper()
	g := pcLines(got)
	if len(g) != len(want) {
		t.Fatalf("%s: got %d lines, want %d:\n%s\nwant:\n%s", what, len(g), len(want), got, strings.Join(want, "\n"))
	}
	for i := range want {
		if g[i] != want[i] {
			t.Errorf("%s line %d:\n got %q\nwant %q", what, i+1, g[i], want[i])
		}
	}
}

func TestPolicyCheckValid(t *testing.T) {
	dir := t.TempDir()
	clean := pcWrite(t, dir, "clean.toml", pcSources+`
[[rule]]
images = ["registry.corp.example/**"]
action = "verify"
source = "corp"

[[rule]]
images = ["**"]
action = "deny"
`)
	warn := pcWrite(t, dir, "warn.toml", pcSources+`
[[source]]
name = "spare"
kind = "notary"
url = "https://notary.spare.example"
repositories = ["registry.spare.example/**"]

[[rule]]
images = ["registry.corp.example/**"]
action = "verify"
source = "corp"

[[rule]]
images = ["registry.corp.example/apps/web"]
action = "allow"

[[rule]]
images = ["registry.corp.example/apps/web"]
namespaces = ["prod"]
action = "deny"
`)
	audit := pcWrite(t, dir, "audit.toml", "version = 1\nmode = \"audit\"\n\n[[rule]]\nimages = [\"**\"]\naction = \"deny\"\n")

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"clean", []string{"policy", "check", clean}, []string{
			clean + ": OK (1 sources, 2 rules, mode enforce)",
		}},
		{"warnings", []string{"policy", "check", warn}, []string{
			warn + ":1:1: warning: no catch-all rule: images matching no rule are denied",
			warn + ":10:1: warning: source \"spare\" is not used by any rule",
			warn + ":25:1: warning: rule #3 (warn.toml:25) can never apply: rule #2 (warn.toml:21) decides every image and namespace it matches",
			warn + ": OK (2 sources, 3 rules, mode enforce)",
		}},
		{"global mode", []string{"policy", "check", audit}, []string{
			audit + ":2:8: warning: mode is \"audit\": denied images are logged but still run",
			audit + ": OK (0 sources, 1 rules, mode audit)",
		}},
		{"--config", []string{"policy", "check", "--config", clean}, []string{
			clean + ": OK (1 sources, 2 rules, mode enforce)",
		}},
		{"FILE wins over --config", []string{"policy", "check", "--config", warn, clean}, []string{
			clean + ": OK (1 sources, 2 rules, mode enforce)",
		}},
		{"flags after FILE", []string{"policy", "check", clean, "--config", warn}, []string{
			clean + ": OK (1 sources, 2 rules, mode enforce)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := trustd(t, tc.args...)
			if code != 0 || errs != "" {
				t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, errs, out)
			}
			pcEqualLines(t, "stdout", out, tc.want)
		})
	}
}

func TestPolicyCheckConfigFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	p := pcWrite(t, dir, "env.toml", "version = 1\n[[rule]]\nimages = [\"**\"]\naction = \"deny\"\n")
	t.Setenv("TRUSTD_CONFIG", p)
	code, out, errs := trustd(t, "policy", "check")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}
	pcEqualLines(t, "stdout", out, []string{p + ": OK (0 sources, 1 rules, mode enforce)"})
}

// TestConfigBeforeTheCommand: `trustd --config PATH COMMAND` is
// `trustd COMMAND --config PATH`, in each spelling; a later --config wins.
func TestConfigBeforeTheCommand(t *testing.T) {
	dir := t.TempDir()
	p := pcWrite(t, dir, "first.toml", "version = 1\n[[rule]]\nimages = [\"**\"]\naction = \"deny\"\n")
	other := pcWrite(t, dir, "other.toml", "version = 1\n[[rule]]\nimages = [\"**\"]\naction = \"allow\"\n")
	t.Setenv("TRUSTD_CONFIG", filepath.Join(dir, "none.toml"))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"--config PATH policy check", []string{"--config", p, "policy", "check"}, p},
		{"--config=PATH policy check", []string{"--config=" + p, "policy", "check"}, p},
		{"-config PATH policy check", []string{"-config", p, "policy", "check"}, p},
		{"policy check --config PATH", []string{"policy", "check", "--config", p}, p},
		{"the later --config wins", []string{"--config", p, "policy", "check", "--config", other}, other},
		{"--containerd-config is taken before the command too", []string{"--containerd-config", "/x.toml", "--config", p, "policy", "check"}, p},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := trustd(t, tc.args...)
			if code != 0 || !strings.Contains(out, tc.want+": OK") {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %s checked", code, out, errs, tc.want)
			}
		})
	}
	for _, args := range [][]string{{"--config"}, {"--frob", "policy", "check"}} {
		if code, _, errs := trustd(t, args...); code != 2 || !strings.Contains(errs, "usage") {
			t.Errorf("trustd %v: exit %d, stderr %q; want 2 and the usage", args, code, errs)
		}
	}
	// The verify command reads it too (with a policy that denies all).
	if code, out, _ := trustd(t, "--config", p, "verify", "--json", "x:1"); code != 1 || !strings.Contains(out, `"allowed":false`) {
		t.Errorf("trustd --config P verify: exit %d, %s", code, out)
	}
}

func TestPolicyCheckInvalid(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body string
		want       []string // after "<file>:"
	}{
		{"empty", "", []string{"1:1: missing required key \"version\""}},
		{"syntax", "version = 1\nmode = \"enforce\" x\n", []string{"2:18: syntax error: expected newline but got U+0078 'x'"}},
		{"version", "version = 2\n", []string{"1:11: version: unsupported version 2 (this trustd reads version 1)"}},
		{"unknown key", "version = 1\n[daemon]\nrefresh_interval = \"5m\"\n", []string{"3:1: unknown key \"daemon.refresh_interval\""}},
		// Structural errors stop the check before the meaning is judged:
		// no "missing required key action" here.
		{"key case", "version = 1\n[[rule]]\nimages = [\"**\"]\nAction = \"deny\"\n", []string{
			"4:1: unknown key \"rule.Action\" (keys are case-sensitive: did you mean \"action\"?)",
		}},
		{"wrong type", "version = 1\n[daemon]\nrefresh = 300\n", []string{"3:11: daemon.refresh: expected a duration string such as \"5m\", got an integer"}},
		{"duplicate key", "version = 1\nmode = \"audit\"\nmode = \"off\"\n", []string{"3:1: duplicate key \"mode\" (first defined at FILE:2:1)"}},
		{"semantic errors, all reported", pcSources + `
[[rule]]
images = ["nginx:latest", "*"]
action = "verify"
source = "hubb"

[[rule]]
images = ["**"]
action = "allow"
threshold = 2

[[mirror]]
from = "mirror.example:5000"
to = "mirror.example:5000"
`, []string{
			"11:11: rule.images: invalid pattern \"nginx:latest\": a pattern must not contain a tag",
			"11:27: rule.images: invalid pattern \"*\": \"*\" is ambiguous: write \"**\" for every repository or \"docker.io/library/*\" for Docker official images",
			"13:10: rule.source: unknown source \"hubb\"",
			"18:13: rule.threshold: only valid with action \"verify\"",
			"22:6: mirror.to: same as from (\"mirror.example:5000\")",
		}},
		{"tuf source without root", "version = 1\n[[source]]\nname = \"corp\"\nkind = \"tuf\"\nurl = \"http://tuf.example/\"\nrepositories = [\"**\"]\n", []string{
			"2:1: source: missing required key \"root\" (a tuf source starts from its initial root.json)",
			"5:7: source.url: http is only allowed for loopback hosts, not \"tuf.example\" (use https)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pcWrite(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".toml", tc.body)
			code, out, errs := trustd(t, "policy", "check", p)
			if code != 1 || errs != "" {
				t.Fatalf("exit %d (want 1), stderr %q, stdout:\n%s", code, errs, out)
			}
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				want[i] = p + ":" + strings.ReplaceAll(w, "FILE", p)
			}
			pcEqualLines(t, "stdout", out, want)
			if strings.Contains(out, "OK") {
				t.Errorf("an invalid policy reported OK:\n%s", out)
			}
		})
	}
}

func TestPolicyCheckUnreadable(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.toml")
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing file", missing, "read policy: open " + missing + ": no such file or directory"},
		{"directory", dir, "read policy: read " + dir + ": is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The check failed (exit 1); it is not a usage error.
			code, out, errs := trustd(t, "policy", "check", tc.path)
			if code != 1 || errs != "" {
				t.Fatalf("exit %d (want 1), stderr %q, stdout %q", code, errs, out)
			}
			pcEqualLines(t, "stdout", out, []string{tc.want})
		})
	}
}

func TestPolicyCheckUsage(t *testing.T) {
	dir := t.TempDir()
	p := pcWrite(t, dir, "p.toml", "version = 1\n")
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no subcommand", []string{"policy"}, "trustd policy: usage: trustd policy check [FILE]"},
		{"unknown subcommand", []string{"policy", "lint", p}, "trustd policy: usage: trustd policy check [FILE]"},
		{"two files", []string{"policy", "check", p, p}, "trustd policy: usage: trustd policy check [FILE]"},
		{"unknown flag", []string{"policy", "check", "--strict", p}, "flag provided but not defined: -strict"},
		{"flag without value", []string{"policy", "check", "--config"}, "flag needs an argument: -config"},
		{"help", []string{"policy", "check", "-h"}, "Usage of trustd policy check:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := trustd(t, tc.args...)
			if code != 2 {
				t.Fatalf("exit %d (want 2), stdout %q, stderr %q", code, out, errs)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if !strings.Contains(errs, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errs)
			}
		})
	}
}
