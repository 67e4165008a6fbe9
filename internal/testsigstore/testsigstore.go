// Package testsigstore is the one builder of keyless Sigstore signatures
// for trustd's tests: a virtual Sigstore deployment (sigstore-go's
// pkg/testing/ca: a Fulcio CA, a Rekor log and a timestamp authority made
// in memory), its trusted_root.json, and the bundles and tag-scheme
// signatures cosign makes with it. cache/cosign's unit tests and the e2e
// tests (test/e2e) share it; only tests import it.
package testsigstore

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Bundle media types: cosign v3's, and the oldest sigstore-go reads.
const (
	MediaTypeV3 = "application/vnd.dev.sigstore.bundle.v0.3+json"
	MediaTypeV1 = "application/vnd.dev.sigstore.bundle+json;version=0.1"
)

// New returns a new virtual Sigstore deployment. Its leaf certificates are
// valid for ten minutes from when they are made: sign "soon" (a minute
// ahead) for a valid signature, half an hour ahead for one whose
// certificate had expired at the logged time.
func New(t testing.TB) *ca.VirtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// TrustedRoot is the trusted_root.json of a deployment made of fulcio's CA
// and logs' Rekor log and timestamp authority.
func TrustedRoot(t testing.TB, fulcio, logs *ca.VirtualSigstore) []byte {
	t.Helper()
	// The virtual Rekor's ID is its hex log ID; a trusted_root.json holds
	// the raw bytes.
	rekor := map[string]*root.TransparencyLog{}
	for id, tl := range logs.RekorLogs() {
		c := *tl
		c.ID, _ = hex.DecodeString(id)
		rekor[id] = &c
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, fulcio.FulcioCertificateAuthorities(), nil, logs.TimestampingAuthorities(), rekor)
	if err != nil {
		t.Fatal(err)
	}
	data, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// SignStatement is the in-toto statement cosign v3 `sign` writes for
// digest d (protojson of an intotov1.Statement: no subject name, an empty
// predicate).
func SignStatement(d digest.Digest, predicateType string) []byte {
	return fmt.Appendf(nil, `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{%q:%q}}],"predicateType":%q,"predicate":{}}`, d.Algorithm(), d.Encoded(), predicateType)
}

// SimpleSigningPayload is the payload of cosign's tag-scheme signature of
// digest d of repo.
func SimpleSigningPayload(repo string, d digest.Digest) []byte {
	return fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, repo, d)
}

// Attest signs the in-toto statement body as subject of issuer, logged at
// time at (with an inclusion proof and an RFC 3161 timestamp).
func Attest(t testing.TB, vs *ca.VirtualSigstore, subject, issuer string, body []byte, at time.Time) *ca.TestEntity {
	t.Helper()
	te, err := vs.AttestAtTime(subject, issuer, body, at, true)
	if err != nil {
		t.Fatal(err)
	}
	return te
}

// Entry is log entry e as a bundle holds it, with the signed entry
// timestamp the virtual Rekor signs.
func Entry(t testing.TB, vs *ca.VirtualSigstore, e *tlog.Entry) *protorekor.TransparencyLogEntry {
	t.Helper()
	tle := proto.Clone(e.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
	var kv struct{ Kind, APIVersion string }
	if err := json.Unmarshal(tle.CanonicalizedBody, &kv); err != nil {
		t.Fatal(err)
	}
	tle.KindVersion = &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion}
	set, err := vs.RekorSignPayload(tlog.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
		IntegratedTime: tle.IntegratedTime,
		LogIndex:       tle.LogIndex,
		LogID:          hex.EncodeToString(tle.LogId.KeyId),
	})
	if err != nil {
		t.Fatal(err)
	}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	return tle
}

// FirstEntry is te's log entry, as a bundle holds it.
func FirstEntry(t testing.TB, vs *ca.VirtualSigstore, te *ca.TestEntity) *protorekor.TransparencyLogEntry {
	t.Helper()
	entries, err := te.TlogEntries()
	if err != nil || len(entries) == 0 {
		t.Fatalf("log entries: %v (%d)", err, len(entries))
	}
	return Entry(t, vs, entries[0])
}

// Bundle is what te signs, as a bundle of mediaType; entry replaces the
// log entry when set; the RFC 3161 timestamps are kept when ts.
func Bundle(t testing.TB, vs *ca.VirtualSigstore, te *ca.TestEntity, mediaType string, entry *protorekor.TransparencyLogEntry, ts bool) []byte {
	t.Helper()
	vc, _ := te.VerificationContent()
	sc, _ := te.SignatureContent()
	env := sc.EnvelopeContent().RawEnvelope()
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if entry == nil {
		entry = FirstEntry(t, vs, te)
	}
	vm := &protobundle.VerificationMaterial{TlogEntries: []*protorekor.TransparencyLogEntry{entry}}
	if mediaType == MediaTypeV1 {
		entry.InclusionProof = nil
		vm.Content = &protobundle.VerificationMaterial_X509CertificateChain{X509CertificateChain: &protocommon.X509CertificateChain{
			Certificates: []*protocommon.X509Certificate{{RawBytes: vc.Certificate().Raw}},
		}}
	} else {
		vm.Content = &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}}
	}
	if ts {
		tss, _ := te.Timestamps()
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{}
		for _, t := range tss {
			vm.TimestampVerificationData.Rfc3161Timestamps = append(vm.TimestampVerificationData.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: t})
		}
	}
	b := &protobundle.Bundle{
		MediaType:            mediaType,
		VerificationMaterial: vm,
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: payload, PayloadType: env.PayloadType,
			Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TagSignature is a keyless signature in cosign's tag scheme: what one
// layer of a signature manifest holds (the payload) and its annotations
// carry (the others; empty when absent).
type TagSignature struct {
	Payload     []byte
	Signature   []byte // raw; the annotation holds it in base64
	Certificate []byte // PEM
	RekorBundle []byte // JSON, as cosign's bundle annotation
	Timestamp   []byte // JSON, as cosign's RFC 3161 timestamp annotation
}

// SignTag is vs's keyless signature of payload in cosign's tag scheme,
// logged at time at, with the Rekor bundle and RFC 3161 timestamp when
// asked for.
func SignTag(t testing.TB, vs *ca.VirtualSigstore, subject, issuer string, payload []byte, at time.Time, rekor, ts bool) TagSignature {
	t.Helper()
	te, err := vs.SignAtTime(subject, issuer, payload, at)
	if err != nil {
		t.Fatal(err)
	}
	vc, _ := te.VerificationContent()
	sc, _ := te.SignatureContent()
	s := TagSignature{
		Payload: payload, Signature: sc.Signature(),
		Certificate: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: vc.Certificate().Raw}),
	}
	if rekor {
		tle := FirstEntry(t, vs, te)
		s.RekorBundle, err = json.Marshal(map[string]any{
			"SignedEntryTimestamp": tle.InclusionPromise.SignedEntryTimestamp,
			"Payload": map[string]any{
				"body": base64.StdEncoding.EncodeToString(tle.CanonicalizedBody), "integratedTime": tle.IntegratedTime,
				"logIndex": tle.LogIndex, "logID": hex.EncodeToString(tle.LogId.KeyId),
			},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if ts {
		tss, _ := te.Timestamps()
		s.Timestamp, _ = json.Marshal(map[string][]byte{"SignedRFC3161Timestamp": tss[0]})
	}
	return s
}
