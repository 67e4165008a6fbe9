package harness

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustd/trustd/internal/testnotary"
)

// notaryMeta is the part of a Notary metadata file the harness test reads.
type notaryMeta struct {
	Signed struct {
		Type    string `json:"_type"`
		Version int    `json:"version"`
		Expires string `json:"expires"`
		Keys    map[string]struct {
			KeyType string `json:"keytype"`
			KeyVal  struct {
				Public []byte `json:"public"` // base64
			} `json:"keyval"`
		} `json:"keys"`
		Roles map[string]struct {
			KeyIDs []string `json:"keyids"`
		} `json:"roles"`
		Meta map[string]struct {
			Length int64             `json:"length"`
			Hashes map[string][]byte `json:"hashes"` // base64
		} `json:"meta"`
		Targets map[string]struct {
			Length int64             `json:"length"`
			Hashes map[string][]byte `json:"hashes"`
		} `json:"targets"`
		Delegations struct {
			Keys map[string]struct {
				KeyType string `json:"keytype"`
			} `json:"keys"`
			Roles []struct {
				Name   string   `json:"name"`
				KeyIDs []string `json:"keyids"`
				Paths  []string `json:"paths"`
			} `json:"roles"`
		} `json:"delegations"`
	} `json:"signed"`
	Signatures []struct {
		KeyID  string `json:"keyid"`
		Method string `json:"method"`
	} `json:"signatures"`
}

// fetchNotary fetches and decodes role's metadata of gun from srv, and
// checks its type and that it is signed.
func fetchNotary(t *testing.T, srv *NotaryServer, gun, role, typ string) (notaryMeta, []byte) {
	t.Helper()
	b := fetch(t, NotaryMetadataURL(srv.URL(), gun, role))
	var m notaryMeta
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s.json: %v\n%s", role, err, b)
	}
	if m.Signed.Type != typ || m.Signed.Version < 1 || len(m.Signatures) == 0 {
		t.Fatalf("%s.json: _type %q version %d, %d signatures; want %s, signed", role, m.Signed.Type, m.Signed.Version, len(m.Signatures), typ)
	}
	if _, err := time.Parse(time.RFC3339Nano, m.Signed.Expires); err != nil {
		t.Errorf("%s.json: expires: %v", role, err)
	}
	return m, b
}

// assertNotaryTarget checks that tag is signed in m with manifest's length
// and sha256.
func assertNotaryTarget(t *testing.T, m notaryMeta, tag string, manifest []byte) {
	t.Helper()
	tf, ok := m.Signed.Targets[tag]
	sum := sha256.Sum256(manifest)
	if !ok || tf.Length != int64(len(manifest)) || string(tf.Hashes["sha256"]) != string(sum[:]) {
		t.Errorf("target %s = %+v (present %v), want length %d sha256 %x", tag, tf, ok, len(manifest), sum)
	}
}

// assertMetaHash checks that a snapshot or timestamp entry names b.
func assertMetaHash(t *testing.T, m notaryMeta, name string, b []byte) {
	t.Helper()
	sum := sha256.Sum256(b)
	e, ok := m.Signed.Meta[name]
	if !ok || e.Length != int64(len(b)) || string(e.Hashes["sha256"]) != string(sum[:]) {
		t.Errorf("%s meta %s = length %d sha256 %x (present %v), want the served file's %d %x", m.Signed.Type, name, e.Length, e.Hashes["sha256"], ok, len(b), sum)
	}
}

// TestNotary publishes a repository and a targets/releases delegation
// through the real notary CLI to the real notary-server, and reads the
// metadata back over HTTP as trustd does, without trustd.
func TestNotary(t *testing.T) {
	start := time.Now()
	srv := StartNotaryServer(t)
	if !strings.HasPrefix(srv.URL(), "http://127.0.0.1:") || strings.HasSuffix(srv.URL(), "/") {
		t.Fatalf("URL() = %q, want http://127.0.0.1:PORT", srv.URL())
	}
	c := srv.Client(t)
	const gun = "127.0.0.1:5000/demo/notary"
	top := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","n":1}`)
	released := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","n":2}`)

	if err := c.Init(gun); err != nil {
		t.Fatal(err)
	}
	if err := c.AddManifest(gun, "1.0", top); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(gun); err != nil {
		t.Fatal(err)
	}
	t.Logf("server up, repository initialised and a tag published in %v", time.Since(start).Round(time.Millisecond))

	t.Run("top-level metadata served", func(t *testing.T) {
		root, rootB := fetchNotary(t, srv, gun, "root", "Root")
		targets, targetsB := fetchNotary(t, srv, gun, "targets", "Targets")
		snapshot, snapshotB := fetchNotary(t, srv, gun, "snapshot", "Snapshot")
		timestamp, _ := fetchNotary(t, srv, gun, "timestamp", "Timestamp")
		assertNotaryTarget(t, targets, "1.0", top)
		assertMetaHash(t, snapshot, "root", rootB)
		assertMetaHash(t, snapshot, "targets", targetsB)
		assertMetaHash(t, timestamp, "snapshot", snapshotB)

		// The root key is an ecdsa-x509 certificate for the GUN, listed
		// under the ID RootKeyIDs returns; `notary key list` shows the
		// canonical ID of its public key instead.
		ids, err := c.RootKeyIDs(gun)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != 1 || !slices.Equal(root.Signed.Roles["root"].KeyIDs, ids) {
			t.Fatalf("RootKeyIDs = %v, root.json lists %v", ids, root.Signed.Roles["root"].KeyIDs)
		}
		rk := root.Signed.Keys[ids[0]]
		if rk.KeyType != "ecdsa-x509" {
			t.Errorf("root key type %q, want ecdsa-x509", rk.KeyType)
		}
		block, _ := pem.Decode(rk.KeyVal.Public)
		if block == nil {
			t.Fatalf("root key: no PEM certificate: %q", rk.KeyVal.Public)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != gun {
			t.Errorf("root certificate CN %q, want the GUN %q", cert.Subject.CommonName, gun)
		}
		if got := testnotary.KeyID(testnotary.KeyECDSAX509, rk.KeyVal.Public); got != ids[0] {
			t.Errorf("KeyID(root certificate) = %s, root.json says %s", got, ids[0])
		}
		canonical, err := NotaryPublicKeyID(cert.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := c.Keys()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(keys, NotaryKey{Role: "root", ID: canonical}) {
			t.Errorf("notary key list has no root key %s (the certificate's public key):\n%+v", canonical, keys)
		}

		// The server signs snapshots (Init rotated the key to it) and
		// timestamps.
		snapKeys, tsKeys := root.Signed.Roles["snapshot"].KeyIDs, root.Signed.Roles["timestamp"].KeyIDs
		for _, k := range keys {
			if k.Role == "snapshot" || k.Role == "timestamp" {
				t.Errorf("the client holds a %s key %s: Init should leave it to the server", k.Role, k.ID)
			}
		}
		if len(snapKeys) != 1 || len(tsKeys) != 1 {
			t.Errorf("snapshot keys %v, timestamp keys %v: want one each", snapKeys, tsKeys)
		}

		list, err := c.List(gun)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(top)
		if want := []NotaryTarget{{Name: "1.0", Digest: hex.EncodeToString(sum[:]), Size: int64(len(top)), Role: "targets"}}; !slices.Equal(list, want) {
			t.Errorf("List = %+v, want %+v", list, want)
		}
		if code := httpStatus(t, NotaryMetadataURL(srv.URL(), gun, "targets/releases")); code != http.StatusNotFound {
			t.Errorf("targets/releases.json before any delegation: status %d, want 404", code)
		}
	})

	t.Run("targets/releases delegation served", func(t *testing.T) {
		k, err := NewDelegationKey(t.TempDir(), "releases")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ImportKey(k.KeyPath, "targets/releases"); err != nil {
			t.Fatal(err)
		}
		if err := c.AddDelegation(gun, "targets/releases", k.CertPath); err != nil {
			t.Fatal(err)
		}
		if err := c.AddManifest(gun, "1.0", released, "targets/releases"); err != nil {
			t.Fatal(err)
		}
		if err := c.Publish(gun); err != nil {
			t.Fatal(err)
		}

		targets, targetsB := fetchNotary(t, srv, gun, "targets", "Targets")
		rel, relB := fetchNotary(t, srv, gun, "targets/releases", "Targets")
		snapshot, _ := fetchNotary(t, srv, gun, "snapshot", "Snapshot")
		assertNotaryTarget(t, targets, "1.0", top)
		assertNotaryTarget(t, rel, "1.0", released)
		assertMetaHash(t, snapshot, "targets", targetsB)
		assertMetaHash(t, snapshot, "targets/releases", relB)
		roles := targets.Signed.Delegations.Roles
		if len(roles) != 1 || roles[0].Name != "targets/releases" || !slices.Equal(roles[0].KeyIDs, []string{k.CertID}) || !slices.Equal(roles[0].Paths, []string{""}) {
			t.Errorf("delegations %+v, want targets/releases with key %s and all paths", roles, k.CertID)
		}
		if kt := targets.Signed.Delegations.Keys[k.CertID].KeyType; kt != "ecdsa-x509" {
			t.Errorf("delegation key %s: type %q, want ecdsa-x509", k.CertID, kt)
		}
		if len(rel.Signatures) != 1 || rel.Signatures[0].KeyID != k.CertID || rel.Signatures[0].Method != "ecdsa" {
			t.Errorf("targets/releases signatures %+v, want one ecdsa by %s", rel.Signatures, k.CertID)
		}

		// notary list answers from targets first; the delegation's tag is
		// there when asked for.
		sum := sha256.Sum256(released)
		list, err := c.List(gun, "targets/releases")
		if err != nil {
			t.Fatal(err)
		}
		if want := []NotaryTarget{{Name: "1.0", Digest: hex.EncodeToString(sum[:]), Size: int64(len(released)), Role: "targets/releases"}}; !slices.Equal(list, want) {
			t.Errorf("List(targets/releases) = %+v, want %+v", list, want)
		}
		if list, err := c.List(gun); err != nil || len(list) != 1 || list[0].Role != "targets" {
			t.Errorf("List = %+v, %v: want 1.0 from targets, as notary resolves it", list, err)
		}
	})

	t.Run("ImportKey PEM forms", func(t *testing.T) {
		dir := t.TempDir()
		k, err := NewDelegationKey(dir, "qa")
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(k.KeyPath)
		if err != nil {
			t.Fatal(err)
		}
		priv, err := parsePrivateKeyPEM(b)
		if err != nil {
			t.Fatal(err)
		}
		sec1, err := x509.MarshalECPrivateKey(priv.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		ecPath := filepath.Join(dir, "qa-ec.pem")
		junkPath := filepath.Join(dir, "junk.pem")
		if err := os.WriteFile(ecPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(junkPath, []byte("not a key\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name, path, role string
			ok               bool
		}{
			{"PKCS#8", k.KeyPath, "targets/qa", true},
			{"SEC 1", ecPath, "targets/ops", true},
			{"not a key", junkPath, "targets/junk", false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := c.ImportKey(tc.path, tc.role)
				if (err == nil) != tc.ok {
					t.Fatalf("ImportKey(%s, %s) = %v, want success %v", tc.name, tc.role, err, tc.ok)
				}
			})
		}
	})

	t.Run("RotateKey", func(t *testing.T) {
		before, err := c.RootKeyIDs(gun)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RotateKey(gun, "root", false); err != nil {
			t.Fatal(err)
		}
		after, err := c.RootKeyIDs(gun)
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != 1 || slices.Equal(before, after) {
			t.Fatalf("root keys %v after rotation, were %v: want one new key", after, before)
		}
		root, _ := fetchNotary(t, srv, gun, "root", "Root")
		var signers []string
		for _, s := range root.Signatures {
			signers = append(signers, s.KeyID)
		}
		if !slices.Contains(signers, before[0]) || !slices.Contains(signers, after[0]) {
			t.Errorf("rotated root signed by %v, want the old %s and the new %s", signers, before[0], after[0])
		}
		if err := c.RotateKey(gun, "targets", false); err != nil {
			t.Fatal(err)
		}
		if err := c.RotateKey(gun, "timestamp", true); err != nil {
			t.Fatal(err)
		}
		if err := c.AddManifest(gun, "2.0", top); err != nil {
			t.Fatal(err)
		}
		if err := c.Publish(gun); err != nil {
			t.Fatal(err)
		}
		targets, _ := fetchNotary(t, srv, gun, "targets", "Targets")
		assertNotaryTarget(t, targets, "2.0", top)
	})

	t.Run("Stop", func(t *testing.T) {
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Metadata(gun, "root"); err == nil {
			t.Errorf("notary-server still serving after Stop")
		}
		if err := srv.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		if err := c.AddManifest(gun, "3.0", top); err != nil {
			t.Fatal(err)
		}
		if err := c.Publish(gun); err == nil {
			t.Errorf("Publish with the server stopped succeeded")
		}
	})

	if t.Failed() {
		return
	}
	var n int
	var took time.Duration
	for _, cmd := range c.Commands() {
		n++
		took += cmd.Took
	}
	t.Logf("%d notary commands in %v; whole test %v", n, took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
