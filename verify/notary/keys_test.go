package notary

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"
)

func TestKeyTypes(t *testing.T) {
	ec := newECDSAKey(t)
	ed := newEd25519Key(t)
	cert := newCertKey(t, certOpts{cn: "x", notBefore: testNow.AddDate(-1, 0, 0), notAfter: testNow.AddDate(1, 0, 0)})
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	cases := []struct {
		name   string
		typ    string
		public []byte
		bad    string // "" = usable
	}{
		{"ecdsa", keyECDSA, ec.public, ""},
		{"ecdsa P-384", keyECDSA, p384DER, ""},
		{"ed25519", keyEd25519, ed.public, ""},
		{"ecdsa-x509", keyECDSAX509, cert.public, ""},
		{"ECDSA key typed rsa", keyRSA, ec.public, "rsa key holds an ECDSA public key"},
		{"Ed25519 bytes typed ecdsa", keyECDSA, ed.public, "asn1"},
		{"ECDSA certificate typed rsa-x509", keyRSAX509, cert.public, "rsa-x509 key holds an ECDSA public key"},
		{"ed25519 of 31 bytes", keyEd25519, ed.public[:31], "ed25519 public key of 31 bytes"},
		{"RSA of 1024 bits", keyRSA, smallDER, "RSA key of 1024 bits"},
		{"unknown type", "gpg", ec.public, `unsupported key type "gpg"`},
		{"certificate garbage", keyECDSAX509, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "certificate"},
		{"not PEM", keyECDSAX509, []byte("hello"), "no PEM certificate"},
		{"PEM of a key", keyECDSAX509, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), `PEM block of type "PUBLIC KEY"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, err := parseKey(map[string]any{"keytype": c.typ, "keyval": map[string]any{"private": nil, "public": base64.StdEncoding.EncodeToString(c.public)}}, "k")
			if err != nil {
				t.Fatal(err)
			}
			if c.bad == "" {
				if k.pub == nil {
					t.Fatalf("unusable: %s", k.bad)
				}
				return
			}
			if k.pub != nil || !strings.Contains(k.bad, c.bad) {
				t.Fatalf("usable=%v bad=%q, want %q", k.pub != nil, k.bad, c.bad)
			}
			if err := k.verify(methodECDSA, []byte("m"), make([]byte, 64)); err == nil {
				t.Fatal("unusable key verified")
			}
		})
	}
}

func TestSignatureMethods(t *testing.T) {
	msg := []byte(`{"a":1}`)
	for _, k := range []*tkey{newECDSAKey(t), newEd25519Key(t), newRSAKey(t)} {
		pk, err := parseKey(k.json(), "k")
		if err != nil || pk.pub == nil {
			t.Fatalf("%s: %v %s", k.typ, err, pk.bad)
		}
		method, sig := k.sign(t, msg)
		if err := pk.verify(method, msg, sig); err != nil {
			t.Errorf("%s/%s: %v", k.typ, method, err)
		}
		for _, other := range []string{methodECDSA, methodEdDSA, methodRSAPSS, methodRSAPKCS15, "ECDSA", "pycrypto-pkcs#1 pss"} {
			if other != method && pk.verify(other, msg, sig) == nil {
				t.Errorf("%s: %s signature accepted as %s", k.typ, method, other)
			}
		}
		if err := pk.verify(method, []byte(`{"a":2}`), sig); err == nil {
			t.Errorf("%s: signature over other bytes accepted", k.typ)
		}
	}
}

func TestDelegationKeyIDMismatch(t *testing.T) {
	r := newTestRepo(t, testGUN, testNow)
	k := newECDSAKey(t)
	fake := strings.Repeat("12", 32)
	r.top.children = []*testRole{{name: roleReleases, threshold: 1, paths: []string{""}, version: 1, expires: testNow.AddDate(1, 0, 0),
		keyIDs: []string{fake}, keysJSON: map[string]any{fake: k.json()}, sigs: []sigSpec{{key: k, keyID: fake}},
		targets: map[string][]byte{"v1": []byte("evil")}}}
	res := mustVerify(t, r.build(t), nil, r.opts())
	if !hasProblem(res, "targets/releases: ignored: signature threshold not met: 0 of 1 required signatures by keys ["+fake+"]") ||
		!hasProblem(res, "key listed as "+fake+" has ID "+k.id+" and is not authorised") {
		t.Error(res.Repo.Problems)
	}
	checkTags(t, res, map[string][]want{"v1": {{roleTargets, digestOf([]byte("manifest v1")), 11}}}, 1)
}
