package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustd/trustd/internal/gen"
)

const (
	sigA = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	sigB = "sha256:486ea46224d1bb4fb680f34f7c9ad96a8f24ec88be73ea8e5a6c65260e9cb8a7"
)

// TestRepoCommands runs the publishing commands in order, as a team would,
// each step with its expected exit code and output.
func TestRepoCommands(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "repo")
	pass := filepath.Join(tmp, "pass")
	if err := os.WriteFile(pass, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	teamA, teamB := filepath.Join(tmp, "team-a"), filepath.Join(tmp, "team-b")
	steps := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no verb", []string{"repo"}, exitUsage, "usage: trustd repo"},
		{"unknown verb", []string{"repo", "frobnicate", dir}, exitUsage, "unknown repo command"},
		{"sign before init", []string{"repo", "sign", dir, "registry.corp.example/app:1", "--digest", sigA, "--length", "5"}, exitDenied, "run trustd repo init first"},
		{"init bad threshold", []string{"repo", "init", dir, "--root-keys", "1", "--root-threshold", "2"}, exitDenied, "threshold 2 of 1 keys"},
		{"init bad key type", []string{"repo", "init", dir, "--key-type", "rsa"}, exitDenied, "key type"},
		{"init keys inside metadata", []string{"repo", "init", dir, "--keys", filepath.Join(dir, "metadata", "k")}, exitDenied, "inside the published tree"},
		{"init", []string{"repo", "init", dir, "--root-keys", "2", "--root-threshold", "2", "--passphrase-file", pass}, exitOK, `kind = "tuf"`},
		{"init again", []string{"repo", "init", dir}, exitDenied, "already holds a repository"},
		{"sign without passphrase", []string{"repo", "sign", dir, "registry.corp.example/app:1", "--digest", sigA, "--length", "5"}, exitDenied, "is encrypted"},
		{"sign digest", []string{"repo", "sign", dir, "REGISTRY.corp.example/app:1", "--digest", sigA, "--length", "5", "--passphrase-file", pass}, exitOK, "registry.corp.example/app:1 → " + sigA},
		{"sign two images with a digest", []string{"repo", "sign", dir, "registry.corp.example/a:1", "registry.corp.example/b:1", "--digest", sigA, "--length", "5"}, exitUsage, "exactly one IMAGE"},
		{"sign without tag digest", []string{"repo", "sign", dir, "registry.corp.example/app@" + sigA, "--digest", sigA, "--length", "5"}, exitUsage, "has no tag"},
		{"sign bad length", []string{"repo", "sign", dir, "registry.corp.example/app:1", "--digest", sigA}, exitUsage, "length must be given"},
		{"keygen a", []string{"repo", "keygen", teamA}, exitOK, "team-a.pub"},
		{"keygen b", []string{"repo", "keygen", teamB}, exitOK, "team-b.pub"},
		{"keygen other", []string{"repo", "keygen", filepath.Join(tmp, "other")}, exitOK, "other.pub"},
		{"keygen again", []string{"repo", "keygen", teamA}, exitDenied, "already exists"},
		{"delegate no pattern", []string{"repo", "delegate", dir, "releases", "--key", teamA + ".pub"}, exitUsage, "--repositories"},
		{"delegate top-level name", []string{"repo", "delegate", dir, "snapshot", "--key", teamA + ".pub", "--repositories", "registry.corp.example/team/**", "--passphrase-file", pass}, exitDenied, "top-level role"},
		{"delegate", []string{"repo", "delegate", dir, "releases", "--key", teamA + ".pub", "--key", teamB + ".pub", "--threshold", "2", "--repositories", "registry.corp.example/team/**", "--passphrase-file", pass}, exitOK, "waits for role releases"},
		{"sign outside paths", []string{"repo", "sign", dir, "registry.corp.example/app:2", "--digest", sigB, "--length", "5", "--role", "releases", "--key", teamA}, exitDenied, "not in the role's paths"},
		{"sign with a key the role does not list", []string{"repo", "sign", dir, "registry.corp.example/team/app:1", "--digest", sigB, "--length", "5", "--role", "releases", "--key", filepath.Join(tmp, "other")}, exitDenied, "is not one of role releases's keys"},
		{"sign team a", []string{"repo", "sign", dir, "registry.corp.example/team/app:1", "--digest", sigB, "--length", "5", "--role", "releases", "--key", teamA}, exitOK, "releases version 1: 1 of 2 signatures"},
		{"status pending", []string{"repo", "status", dir}, exitOK, "pending version 1: 1 of 2, waiting"},
		{"sign-metadata wrong key", []string{"repo", "sign-metadata", dir, "releases", "--key", filepath.Join(dir, "keys")}, exitDenied, ""},
		{"sign-metadata team b", []string{"repo", "sign-metadata", dir, "releases", "--key", teamB, "--passphrase-file", pass}, exitOK, "published: releases, targets, snapshot, timestamp"},
		{"sign-metadata nothing pending", []string{"repo", "sign-metadata", dir, "releases", "--key", teamB}, exitDenied, "no pending metadata"},
		{"unsign unknown", []string{"repo", "unsign", dir, "registry.corp.example/nope:1", "--passphrase-file", pass}, exitDenied, "does not sign"},
		{"unsign", []string{"repo", "unsign", dir, "registry.corp.example/app:1", "--passphrase-file", pass}, exitOK, "changed: registry.corp.example/app:1"},
		{"refresh", []string{"repo", "refresh", dir, "--margin", "25h", "--passphrase-file", pass}, exitOK, "signed again: timestamp"},
		{"refresh expiring targets", []string{"repo", "refresh", dir, "--margin", "2400h", "--passphrase-file", pass}, exitDenied, "targets expires"},
		{"rotate delegated", []string{"repo", "rotate", dir, "releases", "--passphrase-file", pass}, exitDenied, "its team's"},
		{"rotate root", []string{"repo", "rotate", dir, "root", "--passphrase-file", pass}, exitOK, "published: root"},
		{"status", []string{"repo", "status", dir, "--json", "--passphrase-file", pass}, exitOK, `"role":"releases"`},
	}
	for _, s := range steps {
		code, out, errOut := trustd(t, s.args...)
		if code != s.code || !strings.Contains(out+errOut, s.want) {
			t.Fatalf("%s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", s.name, code, s.code, out, errOut, s.want)
		}
	}
	// The published tree holds only public metadata.
	filepath.Walk(filepath.Join(dir, "metadata"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		if !strings.HasSuffix(p, ".json") || strings.Contains(filepath.Base(p), "key") {
			t.Errorf("published tree holds %s", p)
		}
		return nil
	})
	fi, err := os.Stat(filepath.Join(dir, "keys"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("key directory: %v %v", fi.Mode(), err)
	}
}

// TestRepoImportNotary: import-notary reads the Notary source of the
// policy from trustd's cache and signs its bindings, one role per signer
// when asked, printing the signers to name in the policy.
func TestRepoImportNotary(t *testing.T) {
	tmp := t.TempDir()
	now := time.Now()
	keys, err := gen.NewNotaryKeys(false, now)
	if err != nil {
		t.Fatal(err)
	}
	app, err := gen.NewNotaryRepo(keys, gen.NotaryOptions{GUN: gen.NotaryPrefix + "app", Tags: 2, Releases: 1, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	db, err := gen.NewNotaryRepo(keys, gen.NotaryOptions{GUN: gen.NotaryPrefix + "db", Tags: 1, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	srv := gen.Serve(gen.NewNotaryServer(app, db))
	defer srv.Close()
	cacheDir := filepath.Join(tmp, "cache")
	if err := gen.CacheNotary(context.Background(), cacheDir, "hub", nil, []*gen.NotaryRepo{app}, now); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(tmp, "policy.toml")
	if err := os.WriteFile(pol, fmt.Appendf(nil, `version = 1
[daemon]
cache_dir = %q
[[source]]
name = "hub"
kind = "notary"
url = %q
repositories = ["docker.io/corp/**"]
trust_on_first_use = true
[[rule]]
images = ["docker.io/corp/**"]
action = "verify"
source = "hub"
`, cacheDir, srv.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	flat, per := filepath.Join(tmp, "flat"), filepath.Join(tmp, "per")
	for _, s := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"init flat", []string{"repo", "init", flat}, exitOK, "root key IDs"},
		{"init per signer", []string{"repo", "init", per}, exitOK, "root key IDs"},
		{"no source", []string{"repo", "import-notary", flat, "--config", pol}, exitUsage, "--source NAME"},
		{"per signer with signers", []string{"repo", "import-notary", flat, "--config", pol, "--source", "hub", "--per-signer", "--signers", "targets"}, exitUsage, "usage"},
		{"unknown source", []string{"repo", "import-notary", flat, "--config", pol, "--source", "nope"}, exitDenied, `no source "nope"`},
		{"uncached repository", []string{"repo", "import-notary", flat, "--config", pol, "--source", "hub", "docker.io/corp/other"}, exitDenied, "no verified trust data"},
		{"flat", []string{"repo", "import-notary", flat, "--config", pol, "--source", "hub", "docker.io/corp/*"}, exitOK, "targets/releases -> targets"},
		{"flat again", []string{"repo", "import-notary", flat, "--config", pol, "--source", "hub"}, exitOK, "nothing to change"},
		{"per signer", []string{"repo", "import-notary", per, "--config", pol, "--source", "hub", "--per-signer"}, exitOK, "targets/releases -> releases"},
		{"per signer status", []string{"repo", "status", per}, exitOK, "releases"},
		{"not cached without --fetch", []string{"repo", "import-notary", flat, "--config", pol, "--source", "hub", "docker.io/corp/db"}, exitDenied, "no verified trust data"},
		{"fetched", []string{"repo", "import-notary", flat, "--config", pol, "--source", "hub", "docker.io/corp/db", "--fetch"}, exitOK, "changed: targets: docker.io/corp/db:v0.0"},
	} {
		code, out, errOut := trustd(t, s.args...)
		if code != s.code || !strings.Contains(out+errOut, s.want) {
			t.Fatalf("%s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", s.name, code, s.code, out, errOut, s.want)
		}
	}
	if _, err := os.Stat(filepath.Join(per, "keys", "releases.key")); err != nil {
		t.Fatalf("the delegated role's key: %v", err)
	}
}
