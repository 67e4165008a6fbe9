package notary

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// seedRepos are the real repositories the fuzz targets start from.
var seedRepos = []struct{ dir, gun string }{
	{"notary-fixture-0.1", "docker.com/notary0.1/samplerepo"},
	{"notary-fixture-0.3", "docker.com/notary0.3/tst"},
	{"dockerhub-library-alpine", "docker.io/library/alpine"},
	{"connaisseur/alice-image", "docker.io/phbelitz/alice-image"},
	{"connaisseur/sample-image", "docker.io/phbelitz/sample-image"},
	{"connaisseur/never-expire-with-delegations-image", neverExpireGUN},
	{"connaisseur/err-image", neverExpireGUN},
}

// FuzzParse: no input makes a parser panic, and whatever parses has a
// canonical form that parses again to the same canonical form.
func FuzzParse(f *testing.F) {
	for _, r := range seedRepos {
		fs := loadRepo(f, r.dir)
		for _, b := range [][]byte{fs.Root, fs.Timestamp, fs.Snapshot, fs.Targets} {
			f.Add(b)
		}
		for _, b := range fs.Delegations {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"signed":{"_type":"Targets","version":1,"expires":"2030-01-01T00:00:00Z","targets":{},"delegations":{"keys":{},"roles":[{"name":"targets/a","keyids":[],"threshold":1,"path_hash_prefixes":["ab"]}]}},"signatures":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, role := range []string{roleRoot, roleTimestamp, roleSnapshot, roleTargets, roleReleases} {
			e, err := parseByRole(role, b)
			if err != nil {
				continue
			}
			// The canonical bytes are themselves canonical.
			v, err := decodeJSON(e.canonical)
			if err != nil {
				t.Fatalf("%s: canonical form does not decode: %v", role, err)
			}
			e2, err := parseEnvelope([]byte(`{"signed":` + string(e.canonical) + `,"signatures":[]}`))
			if err != nil || e2.digest != e.digest || v == nil {
				t.Fatalf("%s: canonical form is not stable: %v", role, err)
			}
		}
		if _, body, err := parseRoot(b); err == nil {
			for _, c := range evalRootKeys(body, "x", time.Unix(0, 0), true) {
				_ = c.k.publicKeyID()
			}
		}
	})
}

// FuzzVerify: no combination of files makes Verify panic, and a verdict is
// always well-formed.
func FuzzVerify(f *testing.F) {
	for _, r := range seedRepos {
		fs := loadRepo(f, r.dir)
		f.Add(fs.Root, fs.Timestamp, fs.Snapshot, fs.Targets, fs.Delegations[roleReleases], r.gun)
	}
	f.Fuzz(func(t *testing.T, root, ts, sn, tg, rel []byte, gun string) {
		files := Files{Root: root, Timestamp: ts, Snapshot: sn, Targets: tg, Delegations: map[string][]byte{roleReleases: rel}}
		for _, now := range []time.Time{time.Date(2019, 10, 20, 0, 0, 0, 0, time.UTC), time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)} {
			for _, pin := range []Pin{{TOFU: true}, {RootKeys: []string{connaisseurRootKey}}, {}} {
				res, err := Verify(files, &Trusted{Root: root}, Options{GUN: gun, Now: now, Pin: pin})
				if err != nil {
					if !strings.HasPrefix(err.Error(), "notary") {
						t.Fatalf("error without context: %v", err)
					}
					if errors.Is(err, ErrExpired) {
						var e *ExpiredError
						if !errors.As(err, &e) {
							t.Fatalf("ErrExpired without ExpiredError: %v", err)
						}
					}
					continue
				}
				for tag, roles := range res.Repo.Tags {
					if len(res.Repo.Order[tag]) != len(roles) {
						t.Fatalf("tag %q: order %v for %v", tag, res.Repo.Order[tag], roles)
					}
					for _, tgt := range roles {
						if tgt.Digest.Algorithm() != digest.SHA256 || tgt.Digest.Validate() != nil || tgt.Length < 0 {
							t.Fatalf("tag %q: bad target %+v", tag, tgt)
						}
					}
				}
				if res.Repo.Expires.Before(now) {
					t.Fatalf("expired repo accepted: %s < %s", res.Repo.Expires, now)
				}
			}
		}
	})
}

// FuzzVerifySigned signs fuzzed "signed" objects for targets and
// targets/releases with the right keys, so that the fuzzer reaches the
// delegation walk and target resolution past the signature checks.
func FuzzVerifySigned(f *testing.F) {
	r := newTestRepo(f, testGUN, testNow)
	releasesKey := newECDSAKey(f)
	r.top.children = []*testRole{{name: roleReleases, keys: []*tkey{releasesKey}, threshold: 1, paths: []string{"v", ""}, version: 1,
		expires: testNow.AddDate(1, 0, 0), targets: map[string][]byte{"v1": []byte("x"), "w": []byte("y")},
		children: []*testRole{{name: "targets/releases/sub", keys: []*tkey{releasesKey}, threshold: 1, hashPfx: []string{"a", "b"}, version: 1, expires: testNow.AddDate(1, 0, 0)}}}}
	base := r.build(f)
	seed := func(b []byte) []byte {
		e, err := parseEnvelope(b)
		if err != nil {
			f.Fatal(err)
		}
		return e.canonical
	}
	f.Add(seed(base.Targets), seed(base.Delegations[roleReleases]))
	for _, rp := range seedRepos[:4] {
		fs := loadRepo(f, rp.dir)
		if e, err := parseEnvelope(fs.Targets); err == nil {
			f.Add(e.canonical, seed(base.Delegations[roleReleases]))
		}
	}
	f.Fuzz(func(t *testing.T, targets, releases []byte) {
		tv, err := decodeJSON(targets)
		if err != nil {
			return
		}
		rv, err := decodeJSON(releases)
		if err != nil {
			return
		}
		tm, ok1 := tv.(map[string]any)
		rm, ok2 := rv.(map[string]any)
		if !ok1 || !ok2 {
			return
		}
		if _, err := cjsonOK(tm, rm); err != nil {
			return
		}
		files := Files{Root: base.Root, Targets: signFile(t, tm, by(r.top.keys...)...), Delegations: map[string][]byte{
			roleReleases:           signFile(t, rm, by(releasesKey)...),
			"targets/releases/sub": signFile(t, rm, by(releasesKey)...),
		}}
		files = r.resnap(t, files)
		res, err := Verify(files, nil, r.opts())
		if err != nil {
			return
		}
		for tag, roles := range res.Repo.Tags {
			if len(res.Repo.Order[tag]) != len(roles) {
				t.Fatalf("tag %q: order %v for %v", tag, res.Repo.Order[tag], roles)
			}
			for role := range roles {
				if role != roleTargets && role != roleReleases && role != "targets/releases/sub" {
					t.Fatalf("tag %q from unexpected role %q", tag, role)
				}
			}
		}
	})
}

// cjsonOK reports whether every object can be canonicalised (the signer
// cannot sign what has no canonical form, e.g. floats).
func cjsonOK(objs ...map[string]any) (bool, error) {
	for _, o := range objs {
		if _, err := parseEnvelope(mustJSON(o)); err != nil && strings.Contains(err.Error(), "canonicalise") {
			return false, err
		}
	}
	return true, nil
}

func mustJSON(o map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"signed": o, "signatures": []any{}})
	if err != nil {
		return nil
	}
	return b
}
