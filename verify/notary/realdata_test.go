package notary

// Verdicts on real Notary / Docker Hub / connaisseur metadata (see
// testdata/notary-v1/README.md and NOTICE): every signature in it verifies,
// which makes it the oracle for canonical JSON, key IDs and signature
// methods.

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

const dataDir = "testdata/notary-v1/"

// Root key IDs of the real data.
const (
	alpineRootKey      = "a2489bcac7a79aa67b19b96c4a3bf0c675ffdf00c6d2fabe1a5df1115e80adce"
	connaisseurRootKey = "52e8085cd75be93c5062130e08663a83a20f2eb9baf31f28eef4735e50f3a407"
	neverExpireGUN     = "docker.io/securesystemsengineering/never-expire"
)

// Digests signed in the real data.
const (
	alpine26       = "sha256:9ace551613070689a12857d62c30ef0daa9a376107ec0fff0e34786cedb3399b"
	alpineLatest   = "sha256:7043076348bf5040220df6ad703798fd8593a0918d06d3ce30c6c93be117e430"
	license        = "sha256:9395bac6fccb26bcb55efb083d1b4b0fe72a1c25f959f056c016120b3bb56a62"
	empty          = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	aliceTest      = "sha256:ac904c9b191d14faf54b7952f2650a4bb21c201bf34131388b851e8ce992a652"
	connaisseurA15 = "sha256:a154797b8300165956ee1f16d98f3a1426301c1168f0462c73ce9bc03361cabf"
	connaisseur799 = "sha256:799c0fa8aa4c9fbff5a99aef1b4b5c3abb9c2f34134345005982fad3489893c7"
)

func at(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// readData reads a file of the real data. connaisseur stores its files
// re-indented; json.Compact restores the bytes the Notary server served
// (the snapshot and timestamp hashes prove it).
func readData(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(dataDir + rel)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(rel, "connaisseur/") {
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err == nil {
			return buf.Bytes()
		}
	}
	return b
}

func loadRepo(t testing.TB, dir string) Files {
	t.Helper()
	f := Files{
		Root:        readData(t, dir+"/root.json"),
		Timestamp:   readData(t, dir+"/timestamp.json"),
		Snapshot:    readData(t, dir+"/snapshot.json"),
		Targets:     readData(t, dir+"/targets.json"),
		Delegations: map[string][]byte{},
	}
	ms, err := filepath.Glob(dataDir + dir + "/targets/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		rel := strings.TrimPrefix(m, dataDir)
		f.Delegations["targets/"+strings.TrimSuffix(filepath.Base(m), ".json")] = readData(t, rel)
	}
	return f
}

func metaOf(b []byte) Meta {
	s256, s512 := sha256.Sum256(b), sha512.Sum512(b)
	return Meta{Length: int64(len(b)), Hashes: map[string][]byte{"sha256": s256[:], "sha512": s512[:]}}
}

// verifyPatched runs Verify step by step. Where connaisseur's tooling left a
// wrong length next to a correct hash, it corrects the length in the
// verified parent (after checking the hashes match) and reports the role in
// patched. subst replaces delegation files as a Notary server that re-signs
// the snapshot (it holds the snapshot key) could.
func verifyPatched(t *testing.T, f Files, prev *Trusted, o Options, subst map[string][]byte) (res *Result, patched []string, err error) {
	t.Helper()
	root, err := VerifyRoot(f.Root, prev, o)
	if err != nil {
		return nil, nil, err
	}
	ts, err := root.VerifyTimestamp(f.Timestamp, prev)
	if err != nil {
		return nil, nil, err
	}
	if m := ts.body.snapshot; m.Length != int64(len(f.Snapshot)) && m.checkHashes(f.Snapshot) == nil {
		ts.body.snapshot.Length = int64(len(f.Snapshot))
		patched = append(patched, roleSnapshot)
	}
	sn, err := root.VerifySnapshot(f.Snapshot, ts, prev)
	if err != nil {
		return nil, patched, err
	}
	files := map[string][]byte{roleTargets: f.Targets}
	for name, b := range f.Delegations {
		files[name] = b
	}
	for name, b := range files {
		if m, ok := sn.body.meta[name]; ok && m.Length != int64(len(b)) && m.checkHashes(b) == nil {
			m.Length = int64(len(b))
			sn.body.meta[name] = m
			patched = append(patched, name)
		}
	}
	dels := map[string][]byte{}
	for name, b := range f.Delegations {
		dels[name] = b
	}
	for name, b := range subst {
		dels[name] = b
		sn.body.meta[name] = metaOf(b)
	}
	sort.Strings(patched)
	res, err = root.verifyTargets(ts, sn, f.Targets, dels, prev)
	return res, patched, err
}

// want is one (role, digest, length) a tag must resolve to, in order.
type want struct {
	role, digest string
	length       int64
}

func checkTags(t *testing.T, res *Result, tags map[string][]want, count int) {
	t.Helper()
	if count >= 0 && len(res.Repo.Tags) != count {
		t.Errorf("got %d tags, want %d: %v", len(res.Repo.Tags), count, res.Repo.Tags)
	}
	for tag, ws := range tags {
		var roles []string
		for _, w := range ws {
			roles = append(roles, w.role)
			got, ok := res.Repo.Tags[tag][w.role]
			if !ok {
				t.Errorf("tag %s: no target from %s (have %v)", tag, w.role, res.Repo.Tags[tag])
				continue
			}
			if string(got.Digest) != w.digest || got.Length != w.length {
				t.Errorf("tag %s from %s: got %s/%d, want %s/%d", tag, w.role, got.Digest, got.Length, w.digest, w.length)
			}
		}
		if !reflect.DeepEqual(res.Repo.Order[tag], roles) {
			t.Errorf("tag %s: order %v, want %v", tag, res.Repo.Order[tag], roles)
		}
		if len(res.Repo.Tags[tag]) != len(ws) {
			t.Errorf("tag %s: roles %v, want exactly %v", tag, res.Repo.Order[tag], roles)
		}
	}
}

func TestRealData(t *testing.T) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC) // when this test was written; the data below is judged at fixed times
	tofu := Pin{TOFU: true}
	pinNE := Pin{RootKeys: []string{connaisseurRootKey}}
	cases := []struct {
		name        string
		dir, gun    string
		at          time.Time
		pin         Pin
		patched     []string // roles whose length connaisseur got wrong (hashes verified)
		wantErr     error
		errContains []string
		tags        map[string][]want
		tagCount    int // -1: do not check
		expiresRole string
		expires     string
		problems    []string // substrings, each must appear in Repo.Problems
		noProblems  bool
	}{
		{
			name: "notary-fixture-0.1 target LICENSE", dir: "notary-fixture-0.1", gun: "docker.com/notary0.1/samplerepo",
			at: at(t, "2020-01-01T00:00:00Z"), pin: tofu,
			tags: map[string][]want{"LICENSE": {{roleTargets, license, 11309}}}, tagCount: 1,
			expiresRole: roleTimestamp, expires: "2116-01-12T00:58:43.527711489Z", noProblems: true,
		},
		{
			name: "notary-fixture-0.1 still valid at the time of writing", dir: "notary-fixture-0.1", gun: "docker.com/notary0.1/samplerepo",
			at: now, pin: Pin{RootKeys: []string{"4ff57dc987163053a12c066f2dd36b1ae6037a92f5416d381fe311a3db1868d8"}},
			tags: map[string][]want{"LICENSE": {{roleTargets, license, 11309}}}, tagCount: 1, expiresRole: roleTimestamp,
		},
		{
			name: "notary-fixture-0.3 rsa-x509 rsapss delegation targets/releases", dir: "notary-fixture-0.3", gun: "docker.com/notary0.3/tst",
			at: at(t, "2017-01-01T00:00:00Z"), pin: tofu,
			tags: map[string][]want{
				"LICENSE": {{roleTargets, license, 11309}},
				"change":  {{roleTargets, empty, 0}},
				"hello":   {{roleReleases, empty, 0}},
			}, tagCount: 3,
			// the root certificate (2026-07-25) expires before any metadata (2116)
			expiresRole: roleRoot, expires: "2026-07-25T22:56:32Z", noProblems: true,
		},
		{
			name: "notary-fixture-0.3 delegation certificate expired: accepted as Notary does, reported", dir: "notary-fixture-0.3", gun: "docker.com/notary0.3/tst",
			at: at(t, "2020-01-01T00:00:00Z"), pin: tofu,
			tags: map[string][]want{"hello": {{roleReleases, empty, 0}}}, tagCount: 3,
			problems: []string{"targets/releases: certificate of key 68243a1f948be7841403f65fc8f24d5eda9050c337e727e2eacc3d3cb5227d73 expired at 2017-07-27"},
		},
		{
			name: "dockerhub library/alpine, TOFU", dir: "dockerhub-library-alpine", gun: "docker.io/library/alpine",
			at: at(t, "2018-07-25T00:00:00Z"), pin: tofu,
			tags: map[string][]want{
				"2.6":    {{roleTargets, alpine26, 528}},
				"latest": {{roleTargets, alpineLatest, 2029}},
				"3.8":    {{roleTargets, alpineLatest, 2029}},
			}, tagCount: 13, expiresRole: roleTimestamp, expires: "2018-08-03T15:48:41.776179945Z", noProblems: true,
		},
		{
			name: "dockerhub library/alpine, pinned root key", dir: "dockerhub-library-alpine", gun: "docker.io/library/alpine",
			at: at(t, "2018-07-25T00:00:00Z"), pin: Pin{RootKeys: []string{alpineRootKey}},
			tags: map[string][]want{"2.6": {{roleTargets, alpine26, 528}}}, tagCount: 13,
		},
		{
			name: "dockerhub library/alpine, pinned to another key", dir: "dockerhub-library-alpine", gun: "docker.io/library/alpine",
			at: at(t, "2018-07-25T00:00:00Z"), pin: Pin{RootKeys: []string{connaisseurRootKey}},
			wantErr: ErrPinMismatch, errContains: []string{alpineRootKey, connaisseurRootKey},
		},
		{
			name: "dockerhub library/alpine, pinned to its public key ID instead of the certificate's", dir: "dockerhub-library-alpine", gun: "docker.io/library/alpine",
			at: at(t, "2018-07-25T00:00:00Z"), pin: Pin{RootKeys: []string{publicKeyIDOf(t, "dockerhub-library-alpine", alpineRootKey)}},
			wantErr: ErrPinMismatch, errContains: []string{"pin the certificate's key ID \"" + alpineRootKey + "\""},
		},
		{
			name: "dockerhub library/alpine, no pin and no TOFU", dir: "dockerhub-library-alpine", gun: "docker.io/library/alpine",
			at: at(t, "2018-07-25T00:00:00Z"), pin: Pin{},
			wantErr: ErrNotPinned, errContains: []string{`root_keys = ["` + alpineRootKey + `"]`},
		},
		{
			name: "dockerhub library/alpine under another GUN", dir: "dockerhub-library-alpine", gun: "docker.io/library/busybox",
			at: at(t, "2018-07-25T00:00:00Z"), pin: tofu,
			wantErr: ErrCertificate, errContains: []string{`CN "docker.io/library/alpine" is not the GUN`},
		},
		{
			name: "connaisseur alice-image: tag only in delegations, releases first", dir: "connaisseur/alice-image", gun: "docker.io/phbelitz/alice-image",
			at: at(t, "2019-10-20T00:00:00Z"), pin: tofu,
			tags: map[string][]want{"test": {
				{roleReleases, aliceTest, 1993}, {"targets/phbelitz", aliceTest, 1993}, {"targets/chamsen", aliceTest, 1993},
			}}, tagCount: 1, expiresRole: roleTimestamp, noProblems: true,
		},
		{
			name: "connaisseur sample-image", dir: "connaisseur/sample-image", gun: "docker.io/phbelitz/sample-image",
			at: at(t, "2019-11-01T00:00:00Z"), pin: tofu,
			tags: map[string][]want{
				"sign": {{roleTargets, connaisseurA15, 1994}},
				"v1":   {{roleTargets, connaisseur799, 1994}},
			}, tagCount: 2, expiresRole: roleTimestamp, noProblems: true,
		},
		{
			name: "connaisseur never-expire-image, root pinned by key ID (CN securesystems.de)", dir: "connaisseur/never-expire-image", gun: neverExpireGUN,
			at: at(t, "2024-01-01T00:00:00Z"), pin: pinNE,
			tags: map[string][]want{
				"sign": {{roleTargets, connaisseurA15, 1994}},
				"v1":   {{roleTargets, connaisseur799, 1994}},
			}, tagCount: 2, expiresRole: roleRoot, expires: "2998-04-21T09:47:00Z", noProblems: true,
		},
		{
			name: "connaisseur never-expire-image at the time of writing", dir: "connaisseur/never-expire-image", gun: neverExpireGUN,
			at: now, pin: pinNE, tagCount: 2,
		},
		{
			name: "connaisseur never-expire-image, TOFU does not accept a CN that is not the GUN", dir: "connaisseur/never-expire-image", gun: neverExpireGUN,
			at: at(t, "2024-01-01T00:00:00Z"), pin: tofu,
			wantErr: ErrCertificate, errContains: []string{"only when pinned by key ID"},
		},
		{
			name: "connaisseur never-expire-image, not pinned", dir: "connaisseur/never-expire-image", gun: neverExpireGUN,
			at: at(t, "2024-01-01T00:00:00Z"), pin: Pin{},
			wantErr: ErrNotPinned, errContains: []string{`root_keys = ["` + connaisseurRootKey + `"]`, `CN "securesystems.de"`},
		},
		{
			name: "connaisseur never-expire-with-delegations", dir: "connaisseur/never-expire-with-delegations-image", gun: neverExpireGUN,
			at: at(t, "2024-01-01T00:00:00Z"), pin: pinNE, patched: []string{roleTargets},
			tags: map[string][]want{
				"sign": {{roleReleases, connaisseurA15, 1994}, {"targets/del1", connaisseurA15, 1994}},
				"v1":   {{"targets/del2", connaisseur799, 1994}},
			}, tagCount: 2, expiresRole: roleRoot, noProblems: true,
		},
		{
			name: "connaisseur conflicting delegations: releases first picks a154797b", dir: "connaisseur/never-expire-with-conflicting-delegations-image", gun: neverExpireGUN,
			at: at(t, "2024-01-01T00:00:00Z"), pin: pinNE, patched: []string{roleTargets},
			tags: map[string][]want{
				"sign": {{roleReleases, connaisseurA15, 1994}, {"targets/del1", connaisseurA15, 1994}, {"targets/del2", connaisseur799, 1994}},
			}, tagCount: 1, noProblems: true,
		},
		{
			name: "connaisseur edge-case-image: delegations the snapshot does not list are ignored", dir: "connaisseur/edge-case-image", gun: neverExpireGUN,
			at: at(t, "2024-01-01T00:00:00Z"), pin: pinNE, patched: []string{roleSnapshot, roleTargets},
			tags: map[string][]want{
				"sign": {{roleTargets, connaisseurA15, 1994}},
				"v1":   {{roleTargets, connaisseur799, 1994}},
			}, tagCount: 2,
			problems: []string{
				"targets/del1: ignored: the snapshot (version 4) does not list it",
				"targets/releases: ignored: the snapshot (version 4) does not list it",
				"targets/del2: ignored: the snapshot (version 4) does not list it",
			},
		},
		{
			name: "connaisseur edge-case-err-image: delegations listed but absent", dir: "connaisseur/edge-case-err-image", gun: neverExpireGUN,
			at: at(t, "2024-01-01T00:00:00Z"), pin: pinNE, patched: []string{roleTargets},
			wantErr: ErrMissing, errContains: []string{"targets/del1"},
		},
		{
			name: "connaisseur err-image: files of the wrong role", dir: "connaisseur/err-image", gun: neverExpireGUN,
			at: at(t, "2024-01-01T00:00:00Z"), pin: pinNE,
			wantErr: ErrMalformed, errContains: []string{`root: malformed metadata: signed._type is "Snapshot", expected "Root"`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := loadRepo(t, c.dir)
			o := Options{GUN: c.gun, Now: c.at, Pin: c.pin, Source: "hub", RepoName: c.gun}
			res, patched, err := verifyPatched(t, f, nil, o, nil)
			if !reflect.DeepEqual(patched, c.patched) {
				t.Errorf("lengths corrected for %v, want %v", patched, c.patched)
			}
			if c.patched == nil && err == nil {
				// Without corrections the public entry point gives the same verdict.
				if _, err2 := Verify(f, nil, o); err2 != nil {
					t.Errorf("Verify: %v", err2)
				}
			}
			if c.patched != nil {
				// As served, Notary would refuse the repository: it bounds each
				// download by the signed length.
				if _, err2 := Verify(f, nil, o); !errors.Is(err2, ErrLength) && !errors.Is(err2, c.wantErr) {
					t.Errorf("Verify as served: %v, want ErrLength", err2)
				}
			}
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				for _, s := range c.errContains {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				if !strings.Contains(err.Error(), c.gun) {
					t.Errorf("error %q does not name the GUN", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkTags(t, res, c.tags, c.tagCount)
			if c.expiresRole != "" && res.Repo.ExpiresRole != c.expiresRole {
				t.Errorf("expires role %s (%s), want %s", res.Repo.ExpiresRole, res.Repo.Expires, c.expiresRole)
			}
			if c.expires != "" && !res.Repo.Expires.Equal(at(t, c.expires)) {
				t.Errorf("expires %s, want %s", res.Repo.Expires, c.expires)
			}
			if c.noProblems && len(res.Repo.Problems) != 0 {
				t.Errorf("problems: %q", res.Repo.Problems)
			}
			for _, p := range c.problems {
				found := false
				for _, got := range res.Repo.Problems {
					found = found || strings.Contains(got, p)
				}
				if !found {
					t.Errorf("no problem %q in %q", p, res.Repo.Problems)
				}
			}
			if res.Repo.Source != "hub" || res.Repo.Name != c.gun {
				t.Errorf("source/name %q/%q", res.Repo.Source, res.Repo.Name)
			}
		})
	}
}

func publicKeyIDOf(t *testing.T, dir, id string) string {
	t.Helper()
	_, body, err := parseRoot(readData(t, dir+"/root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return body.keys[id].publicKeyID()
}

// TestRealDataExpired: the same repositories at a later time are refused,
// with an *ExpiredError naming the role that expired first.
func TestRealDataExpired(t *testing.T) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name, dir, gun string
		at             time.Time
		pin            Pin
		role           string
		certificate    bool // the root certificate expired, not metadata
	}{
		{"notary-fixture-0.1 after its root certificate", "notary-fixture-0.1", "docker.com/notary0.1/samplerepo", at(t, "2117-01-01T00:00:00Z"), Pin{TOFU: true}, roleRoot, true},
		{"notary-fixture-0.3 at the time of writing (root certificate expired 2026-07-25)", "notary-fixture-0.3", "docker.com/notary0.3/tst", now, Pin{TOFU: true}, roleRoot, true},
		{"alpine just after its timestamp", "dockerhub-library-alpine", "docker.io/library/alpine", at(t, "2018-08-04T00:00:00Z"), Pin{TOFU: true}, roleTimestamp, false},
		{"alpine at the time of writing (root certificate expired 2025-08-08)", "dockerhub-library-alpine", "docker.io/library/alpine", now, Pin{RootKeys: []string{alpineRootKey}}, roleRoot, true},
		{"alice-image after its timestamp", "connaisseur/alice-image", "docker.io/phbelitz/alice-image", at(t, "2019-10-25T00:00:00Z"), Pin{TOFU: true}, roleTimestamp, false},
		{"sample-image after its timestamp", "connaisseur/sample-image", "docker.io/phbelitz/sample-image", at(t, "2019-11-12T00:00:00Z"), Pin{TOFU: true}, roleTimestamp, false},
		{"never-expire after its root certificate", "connaisseur/never-expire-image", neverExpireGUN, at(t, "2999-01-01T00:00:00Z"), Pin{RootKeys: []string{connaisseurRootKey}}, roleRoot, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Verify(loadRepo(t, c.dir), nil, Options{GUN: c.gun, Now: c.at, Pin: c.pin})
			var exp *ExpiredError
			if !errors.Is(err, ErrExpired) || !errors.As(err, &exp) {
				t.Fatalf("err = %v, want an ExpiredError", err)
			}
			if exp.Role != c.role || exp.GUN != c.gun || !exp.Now.Equal(c.at) || !exp.Expires.Before(c.at) {
				t.Errorf("ExpiredError %+v, want role %s", exp, c.role)
			}
			if c.certificate != (exp.Certificate != "") || c.certificate != errors.Is(err, ErrCertificate) {
				t.Errorf("certificate expiry: %v (%+v)", err, exp)
			}
		})
	}
}

// TestRealDataAsStored: connaisseur's re-indented files are not the bytes
// the snapshot and timestamp signed.
func TestRealDataAsStored(t *testing.T) {
	raw := func(rel string) []byte {
		b, err := os.ReadFile(dataDir + rel)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dir := "connaisseur/sample-image/"
	f := Files{Root: raw(dir + "root.json"), Timestamp: raw(dir + "timestamp.json"), Snapshot: raw(dir + "snapshot.json"), Targets: raw(dir + "targets.json")}
	_, err := Verify(f, nil, Options{GUN: "docker.io/phbelitz/sample-image", Now: at(t, "2019-11-01T00:00:00Z"), Pin: Pin{TOFU: true}})
	if !errors.Is(err, ErrLength) || !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("err = %v, want ErrLength for snapshot", err)
	}
	// Same length, other bytes: a hash mismatch.
	compact := readData(t, dir+"snapshot.json")
	f.Snapshot = bytes.Replace(compact, []byte(`"version":4`), []byte(`"version":5`), 1)
	f.Timestamp = readData(t, dir+"timestamp.json")
	f.Root = readData(t, dir+"root.json")
	_, err = Verify(f, nil, Options{GUN: "docker.io/phbelitz/sample-image", Now: at(t, "2019-11-01T00:00:00Z"), Pin: Pin{TOFU: true}})
	if !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("err = %v, want ErrHashMismatch", err)
	}
}

// TestRealDataSingleFiles judges connaisseur's single bad files against the
// never-expire repositories they were made from.
func TestRealDataSingleFiles(t *testing.T) {
	o := Options{GUN: neverExpireGUN, Now: at(t, "2024-01-01T00:00:00Z"), Pin: Pin{RootKeys: []string{connaisseurRootKey}}}
	single := func(name string) []byte { return readData(t, "connaisseur/single-files/"+name) }
	root, err := VerifyRoot(readData(t, "connaisseur/never-expire-image/root.json"), nil, o)
	if err != nil {
		t.Fatal(err)
	}
	topRole := func(role string, b []byte) error {
		var env *envelope
		var c common
		switch role {
		case roleSnapshot:
			e, s, err := parseSnapshot(b)
			if err != nil {
				return err
			}
			env, c = e, s.common
		default:
			e, tb, err := parseTargets(b, role)
			if err != nil {
				return err
			}
			env, c = e, tb.common
		}
		return root.checkTopRole(role, env, c, nil)
	}
	t.Run("control: the valid targets and snapshot pass", func(t *testing.T) {
		if err := topRole(roleTargets, readData(t, "connaisseur/never-expire-image/targets.json")); err != nil {
			t.Error(err)
		}
		if err := topRole(roleSnapshot, readData(t, "connaisseur/never-expire-image/snapshot.json")); err != nil {
			t.Error(err)
		}
	})
	t.Run("01 expired root", func(t *testing.T) {
		_, err := VerifyRoot(single("01_expired_root.json"), nil, o)
		var exp *ExpiredError
		if !errors.As(err, &exp) || exp.Role != roleRoot || exp.Certificate != "" {
			t.Fatalf("err = %v, want root metadata expired", err)
		}
	})
	t.Run("02 invalid targets signature", func(t *testing.T) {
		err := topRole(roleTargets, single("02_invalid_signature_targets.json"))
		if !errors.Is(err, ErrBadSignature) || !errors.Is(err, ErrThreshold) || !strings.Contains(err.Error(), "d0cef4ea6349fcfbb961a917342a8c218126ebc7eba7ca4351812200207f4f18") {
			t.Fatalf("err = %v, want a bad signature by the targets key", err)
		}
	})
	t.Run("03 expired snapshot", func(t *testing.T) {
		err := topRole(roleSnapshot, single("03_expired_snapshot.json"))
		var exp *ExpiredError
		if !errors.As(err, &exp) || exp.Role != roleSnapshot {
			t.Fatalf("err = %v, want snapshot expired", err)
		}
	})
	t.Run("06 root without signatures", func(t *testing.T) {
		_, err := VerifyRoot(single("06_no_signature_root.json"), nil, o)
		if !errors.Is(err, ErrThreshold) || errors.Is(err, ErrBadSignature) {
			t.Fatalf("err = %v, want ErrThreshold", err)
		}
	})
	t.Run("07 root with several signatures: the unauthorised one is ignored", func(t *testing.T) {
		r, err := VerifyRoot(single("07_root_multiple_signatures.json"), nil, o)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(r.signers, []string{connaisseurRootKey}) {
			t.Errorf("signers %v", r.signers)
		}
	})
	// 04 and 05 replace targets/releases in never-expire-with-delegations,
	// as a server re-signing the snapshot could: the delegation is ignored
	// and the tag falls back to the next role.
	dir := "connaisseur/never-expire-with-delegations-image"
	for _, c := range []struct{ name, file, problem string }{
		{"04 invalid delegation signature", "04_invalid_signature_delegation.json", "targets/releases: ignored: signature threshold not met (bad signature)"},
		{"05 expired delegation", "05_expired_delegation.json", "targets/releases: ignored: expired at 1970-08-26T12:12:13Z"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, _, err := verifyPatched(t, loadRepo(t, dir), nil, o, map[string][]byte{roleReleases: single(c.file)})
			if err != nil {
				t.Fatal(err)
			}
			checkTags(t, res, map[string][]want{"sign": {{"targets/del1", connaisseurA15, 1994}}}, 2)
			if len(res.Repo.Problems) != 1 || !strings.HasPrefix(res.Repo.Problems[0], c.problem) {
				t.Errorf("problems %q, want %q", res.Repo.Problems, c.problem)
			}
			if _, ok := res.State.Versions[roleReleases]; ok {
				t.Errorf("ignored delegation recorded in state: %v", res.State.Versions)
			}
		})
	}
}

// TestRealDataKeys checks the key summary and state of alice-image.
func TestRealDataKeys(t *testing.T) {
	o := Options{GUN: "docker.io/phbelitz/alice-image", Now: at(t, "2019-10-20T00:00:00Z"), Pin: Pin{TOFU: true}}
	res, err := Verify(loadRepo(t, "connaisseur/alice-image"), nil, o)
	if err != nil {
		t.Fatal(err)
	}
	k := res.Keys
	if !reflect.DeepEqual(k.Root.KeyIDs, []string{"a873ab3f157cfd51c9ccdc445caac92e8aef9f57881169d3bc3cc4868a20add2"}) || k.Root.Threshold != 1 {
		t.Errorf("root keys %+v", k.Root)
	}
	if len(k.RootCerts) != 1 || !k.RootCerts[0].Signed || k.RootCerts[0].CommonName != o.GUN || k.RootCerts[0].PublicKeyID == k.RootCerts[0].KeyID {
		t.Errorf("root certs %+v", k.RootCerts)
	}
	if !reflect.DeepEqual(k.Targets.KeyIDs, []string{"811e8c978dfde411ab4c467883f639554f11de18a5ce099e0ef61b6754ee9bb2"}) {
		t.Errorf("targets keys %+v", k.Targets)
	}
	var names []string
	for _, d := range k.Delegations {
		names = append(names, d.Role)
		if d.Ignored != "" || d.Version != 1 || !reflect.DeepEqual(d.Paths, []string{""}) {
			t.Errorf("delegation %+v", d)
		}
	}
	if !reflect.DeepEqual(names, []string{"targets/phbelitz", "targets/releases", "targets/chamsen"}) {
		t.Errorf("delegations %v", names)
	}
	if got := k.Delegations[1].KeyIDs; len(got) != 2 {
		t.Errorf("releases keys %v", got)
	}
	wantVersions := map[string]int{"root": 1, "timestamp": 4, "snapshot": 3, "targets": 3, "targets/phbelitz": 1, "targets/releases": 1, "targets/chamsen": 1}
	if !reflect.DeepEqual(res.State.Versions, wantVersions) {
		t.Errorf("state versions %v, want %v", res.State.Versions, wantVersions)
	}
	if len(res.State.Digests) != len(wantVersions) || !bytes.Equal(res.State.Root, loadRepo(t, "connaisseur/alice-image").Root) {
		t.Errorf("state %v", res.State.Digests)
	}
	// Verifying again against the state it produced changes nothing.
	res2, err := Verify(loadRepo(t, "connaisseur/alice-image"), &res.State, Options{GUN: o.GUN, Now: o.Now})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res2.State, res.State) || !reflect.DeepEqual(res2.Repo, res.Repo) {
		t.Error("second verification differs")
	}
}

// TestRealDataMalformed: damaged real files give ErrMalformed, never a
// panic or a verdict.
func TestRealDataMalformed(t *testing.T) {
	good := loadRepo(t, "dockerhub-library-alpine")
	o := Options{GUN: "docker.io/library/alpine", Now: at(t, "2018-07-25T00:00:00Z"), Pin: Pin{TOFU: true}}
	edits := []struct {
		name     string
		old, new string
		contains string
	}{
		{"wrong _type", `"_type":"Root"`, `"_type":"root"`, `signed._type is "root", expected "Root"`},
		{"unknown signed field", `"consistent_snapshot":false`, `"consistent_snapshot":false,"spec_version":"1.0"`, `unknown field "spec_version"`},
		{"unknown top-level field", `{"signed":`, `{"extra":1,"signed":`, `unknown field "extra"`},
		{"duplicate key", `"version":1}`, `"version":1,"version":1}`, `duplicate object key "version"`},
		{"float version", `"version":1}`, `"version":1.0}`, `1.0`},
		{"zero version", `"version":1}`, `"version":0}`, `signed.version: 0 is outside`},
		{"bad expiry", `"expires":"2025-08-07T20:36:33.117452-07:00"`, `"expires":"soon"`, `invalid time`},
		{"trailing data", `]}`, `]}{}`, `data after the top-level value`},
		{"truncated", `]}`, `]`, `invalid JSON`},
		{"private key present", `"private":null`, `"private":"AAAA"`, `must be null`},
		{"base64", `"sig":"q/KOmzsd`, `"sig":"!!KOmzsd`, `invalid base64`},
		{"missing role", `"snapshot":{"keyids":["0c14a4976e6762dca610cbe3e5ff8e72bafa62853bc1212f71236dccab6b33c7"],"threshold":1},`, ``, `missing the snapshot role`},
		{"threshold zero", `"threshold":1}`, `"threshold":0}`, `threshold: 0 is outside`},
		{"key id without key", `"keyids":["0c14a4976e6762dca610cbe3e5ff8e72bafa62853bc1212f71236dccab6b33c7"]`, `"keyids":["ffff"]`, `key ID ffff has no corresponding key`},
		{"signatures not a list", `"signatures":[`, `"signatures":{"a":[`, `invalid JSON`},
	}
	for _, e := range edits {
		t.Run("root: "+e.name, func(t *testing.T) {
			if !bytes.Contains(good.Root, []byte(e.old)) {
				t.Fatalf("fixture does not contain %s", e.old)
			}
			f := good
			f.Root = bytes.Replace(good.Root, []byte(e.old), []byte(e.new), 1)
			_, err := Verify(f, nil, o)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), e.contains) || !strings.Contains(err.Error(), "root") {
				t.Fatalf("err = %v, want ErrMalformed containing %q", err, e.contains)
			}
		})
	}
	files := map[string][]byte{"targets": good.Targets, "snapshot": good.Snapshot, "timestamp": good.Timestamp, "root": good.Root}
	for role, b := range files {
		for _, garbage := range [][]byte{nil, []byte(`\\\`), []byte(`null`), []byte(`[]`), []byte(`{}`), []byte(`{"signed":{},"signatures":[]}`), b[:len(b)/2]} {
			_, err := parseByRole(role, garbage)
			if err == nil {
				t.Errorf("%s: %q parsed", role, garbage)
			}
		}
	}
	// err-image's invalid.json.
	if _, err := parseByRole(roleTargets, readData(t, "connaisseur/err-image/invalid.json")); err == nil {
		t.Error("invalid.json parsed")
	}
}

func parseByRole(role string, b []byte) (*envelope, error) {
	switch role {
	case roleRoot:
		e, _, err := parseRoot(b)
		return e, err
	case roleTimestamp:
		e, _, err := parseTimestamp(b)
		return e, err
	case roleSnapshot:
		e, _, err := parseSnapshot(b)
		return e, err
	default:
		e, _, err := parseTargets(b, role)
		return e, err
	}
}

// TestKeyIDs: every key ID in the real data is Notary's ID of its key.
func TestKeyIDs(t *testing.T) {
	n := 0
	for _, dir := range []string{"notary-fixture-0.1", "notary-fixture-0.3", "dockerhub-library-alpine", "connaisseur/alice-image", "connaisseur/never-expire-with-delegations-image"} {
		f := loadRepo(t, dir)
		_, root, err := parseRoot(f.Root)
		if err != nil {
			t.Fatal(err)
		}
		keys := []map[string]*key{root.keys}
		for _, b := range append([][]byte{f.Targets}, mapValues(f.Delegations)...) {
			_, tb, err := parseTargets(b, roleTargets)
			if err != nil {
				continue // delegation files parse under their own name
			}
			keys = append(keys, tb.keys)
		}
		for _, ks := range keys {
			for id, k := range ks {
				n++
				if k.id != id || k.pub == nil {
					t.Errorf("%s: key %s: computed ID %s, usable %v (%s)", dir, id, k.id, k.pub != nil, k.bad)
				}
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d keys checked", n)
	}
}

func mapValues(m map[string][]byte) [][]byte {
	var out [][]byte
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
