package notary

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Pin is Docker's trust pinning (Notary's trustpinning.TrustPinConfig) as it
// applies to one GUN. At most one mode is used, in Notary's order of
// precedence: RootKeys, then CA, then TOFU.
type Pin struct {
	// RootKeys pins root certificates by key ID (the IDs listed in
	// root.json, i.e. the hash of the certificate key). The root must be
	// signed by a threshold of pinned certificates. A certificate pinned by
	// ID is accepted whatever its common name, but must be valid at the
	// reference time.
	RootKeys []string
	// CA is a PEM bundle of CA certificates: root certificates must chain
	// to one of them (using intermediates from the root key's bundle) and
	// have the GUN as common name. CA certificates not valid at the
	// reference time are ignored.
	CA []byte
	// TOFU trusts the first root seen for the GUN (its certificates must
	// have the GUN as common name). With a previously trusted root, rotation
	// rules apply instead.
	TOFU bool
}

// Options says what to verify and at which time. The same Options must be
// used for every step of one verification.
type Options struct {
	// GUN is the Notary globally unique name (docker.io/library/alpine).
	GUN string
	// Now is the reference time for every expiry check. Required: nothing
	// in this package reads the clock.
	Now time.Time
	// Pin is the trust pinning that applies to GUN.
	Pin Pin
	// Source and RepoName are copied into the verify.Repo (RepoName
	// defaults to GUN).
	Source   string
	RepoName string
}

func (o Options) validate() error {
	if o.GUN == "" {
		return fmt.Errorf("notary: %w: Options.GUN is empty", ErrMalformed)
	}
	if o.Now.IsZero() {
		return fmt.Errorf("notary %s: %w: Options.Now is zero (no clock is read here)", o.GUN, ErrMalformed)
	}
	return nil
}

// Trusted is the state a caller persists between verifications of one GUN:
// the trusted root and the versions and content digests of every role seen.
// A nil *Trusted (or empty fields) means first use.
type Trusted struct {
	// Root is the bytes of the trusted root.json.
	Root []byte `json:"root,omitempty"`
	// Versions maps a role name to the highest version trusted.
	Versions map[string]int `json:"versions,omitempty"`
	// Digests maps a role name to the hex SHA-256 of the canonical signed
	// bytes of that version, to refuse the same version with other content.
	Digests map[string]string `json:"digests,omitempty"`
}

func (t *Trusted) version(role string) (int, string) {
	if t == nil {
		return 0, ""
	}
	return t.Versions[role], t.Digests[role]
}

// checkVersion refuses a version below the trusted one and the trusted
// version with different signed content.
func checkVersion(gun, role string, version int, digest string, trustedVersion int, trustedDigest string) error {
	if version < trustedVersion {
		return fail(gun, role, ErrRollback, "version %d is lower than the trusted version %d", version, trustedVersion)
	}
	if version == trustedVersion && trustedDigest != "" && digest != trustedDigest {
		return fail(gun, role, ErrRollback, "version %d has different content than the trusted version %d", version, trustedVersion)
	}
	return nil
}

func checkExpiry(gun, role string, expires, now time.Time) error {
	if now.After(expires) {
		return &ExpiredError{GUN: gun, Role: role, Expires: expires, Now: now}
	}
	return nil
}

// chain is an error with a message of its own and several causes, so that
// errors.Is/As see every cause without their texts being repeated.
type chain struct {
	msg    string
	causes []error
}

func (c *chain) Error() string   { return c.msg }
func (c *chain) Unwrap() []error { return c.causes }

// Cert describes a root certificate, for `trustd inspect` and diagnostics.
type Cert struct {
	KeyID       string    `json:"key_id"`        // ID in root.json; what root_keys pins
	PublicKeyID string    `json:"public_key_id"` // ID of the public key alone (docker trust inspect)
	CommonName  string    `json:"common_name"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	// Signed: this certificate's signature on the root verified and it
	// satisfied the trust pin.
	Signed bool `json:"signed"`
	// Problem says why the certificate is not acceptable, if it is not.
	Problem string `json:"problem,omitempty"`
}

// Root is a verified root.json. It is immutable and safe for concurrent use.
type Root struct {
	opts    Options
	raw     []byte
	env     *envelope
	body    *rootBody
	certs   []Cert
	signers []string
	// certExpires is when fewer than threshold of the signing certificates
	// remain valid.
	certExpires time.Time
}

// Version is the root's version.
func (r *Root) Version() int { return r.body.version }

// Expires is the earliest of the root metadata's expiry and the time its
// signing certificates stop meeting the threshold.
func (r *Root) Expires() time.Time {
	if !r.certExpires.IsZero() && r.certExpires.Before(r.body.expires) {
		return r.certExpires
	}
	return r.body.expires
}

// Certs describes the certificates of the root role.
func (r *Root) Certs() []Cert { return append([]Cert(nil), r.certs...) }

// rootCand is one key of the root role, evaluated as a certificate.
type rootCand struct {
	id      string
	k       *key
	leaf    *x509.Certificate
	ints    []*x509.Certificate
	problem string
	expired bool
	cnOK    bool
	// byIDOnly is why the certificate is acceptable only when pinned by
	// key ID (Notary would refuse it in every mode; see evalRootKeys).
	byIDOnly string
}

// acceptable reports whether the certificate may sign the root when it is
// not pinned by key ID: no problem, a leaf, common name = GUN.
func (c *rootCand) acceptable() bool { return c.problem == "" && c.byIDOnly == "" && c.cnOK }

// evalRootKeys checks each root role key as Notary's parseAllCerts and
// validRootLeafCerts do: an x509 key listed under its real ID, exactly one
// leaf certificate (plus CA intermediates) in Notary's PEM encoding, an
// acceptable certificate, valid at now when checkValidity.
func evalRootKeys(body *rootBody, gun string, now time.Time, checkValidity bool) []*rootCand {
	var out []*rootCand
	for _, id := range body.roles[roleRoot].keyIDs {
		c := &rootCand{id: id, k: body.keys[id]}
		out = append(out, c)
		switch {
		case c.k.id != id:
			c.problem = fmt.Sprintf("listed under ID %s but its ID is %s", id, c.k.id)
			continue
		case c.k.typ != keyECDSAX509 && c.k.typ != keyRSAX509:
			c.problem = fmt.Sprintf("key type %s is not a certificate (Notary root keys are x509 certificates)", c.k.typ)
			continue
		case c.k.pub == nil:
			c.problem = c.k.bad
			continue
		}
		var leafs []*x509.Certificate
		for _, cert := range c.k.certs {
			if cert.IsCA {
				c.ints = append(c.ints, cert)
			} else {
				leafs = append(leafs, cert)
			}
		}
		switch {
		case len(leafs) == 1:
			c.leaf = leafs[0]
		case len(leafs) == 0 && len(c.k.certs) == 1:
			// A lone self-signed certificate marked CA (openssl req -x509
			// makes them). Notary finds no leaf and refuses it; a pin on
			// this exact certificate's key ID is explicit enough to accept it.
			c.leaf, c.ints = c.k.certs[0], nil
			c.byIDOnly = "the certificate is a CA certificate, not a leaf (accepted only when pinned by key ID)"
		default:
			c.problem = fmt.Sprintf("%d leaf certificates in the key's bundle, expected 1", len(leafs))
			continue
		}
		c.cnOK = c.leaf.Subject.CommonName == gun
		var pemBundle bytes.Buffer
		for _, cert := range append([]*x509.Certificate{c.leaf}, c.ints...) {
			_ = pem.Encode(&pemBundle, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
		}
		if !bytes.Equal(pemBundle.Bytes(), c.k.public) {
			c.problem = "certificate PEM is not in Notary's encoding (leaf first, then intermediates)"
			continue
		}
		if err := validateCert(c.leaf, now, checkValidity); err != nil {
			c.problem = err.Error()
			c.expired = checkValidity && now.After(c.leaf.NotAfter)
		}
	}
	return out
}

// validateCert is Notary's utils.ValidateCertificate: a sane validity
// window, no MD2/MD5/SHA-1 (or unknown) signature algorithm, RSA keys of at
// least 2048 bits and, with checkValidity, valid at now with a day's leeway
// on NotBefore.
func validateCert(c *x509.Certificate, now time.Time, checkValidity bool) error {
	if c.NotBefore.After(c.NotAfter) {
		return errors.New("certificate validity window is invalid")
	}
	switch c.SignatureAlgorithm {
	case x509.UnknownSignatureAlgorithm, x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA,
		x509.DSAWithSHA1, x509.DSAWithSHA256, x509.ECDSAWithSHA1:
		return fmt.Errorf("certificate with CN %q uses the unacceptable signature algorithm %v", c.Subject.CommonName, c.SignatureAlgorithm)
	}
	if pub, ok := c.PublicKey.(*rsa.PublicKey); ok && pub.N.BitLen() < minRSABits {
		return fmt.Errorf("certificate with CN %q has an RSA key of %d bits", c.Subject.CommonName, pub.N.BitLen())
	}
	if checkValidity {
		if now.AddDate(0, 0, 1).Before(c.NotBefore) {
			return fmt.Errorf("certificate with CN %q is not valid before %s", c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339))
		}
		if now.After(c.NotAfter) {
			return fmt.Errorf("certificate with CN %q expired at %s", c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

func parseCAPool(b []byte, now time.Time) (*x509.CertPool, error) {
	var certs []*x509.Certificate
	for len(b) > 0 {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block of type %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
		if len(certs) > maxKeys {
			return nil, errors.New("too many certificates")
		}
	}
	pool := x509.NewCertPool()
	n := 0
	for _, c := range certs {
		if validateCert(c, now, true) == nil {
			pool.AddCert(c)
			n++
		}
	}
	if n == 0 {
		return nil, errors.New("no CA certificate valid at the reference time")
	}
	return pool, nil
}

func (c *rootCand) chainsTo(pool *x509.CertPool, now time.Time) error {
	ints := x509.NewCertPool()
	for _, i := range c.ints {
		ints.AddCert(i)
	}
	_, err := c.leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: ints,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

func candIDs(cands []*rootCand) []string {
	ids := make([]string, 0, len(cands))
	for _, c := range cands {
		ids = append(ids, c.id)
	}
	return ids
}

func quoted(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// certError reports that no root certificate is acceptable. When one was
// refused for having expired, the error is also an *ExpiredError.
func certError(gun string, cands []*rootCand, now time.Time, why string) error {
	var parts []string
	var causes []error
	for _, c := range cands {
		p := c.problem
		if p == "" {
			p = "acceptable"
		}
		parts = append(parts, fmt.Sprintf("key %s: %s", c.id, p))
		if c.expired && len(causes) == 0 {
			causes = append(causes, &ExpiredError{GUN: gun, Role: roleRoot, Expires: c.leaf.NotAfter, Now: now, Certificate: c.id})
		}
	}
	msg := fmt.Sprintf("notary %s: root: %s: %s (%s)", gun, ErrCertificate, why, strings.Join(parts, "; "))
	return &chain{msg: msg, causes: append([]error{ErrCertificate}, causes...)}
}

// VerifyRoot verifies root.json for o.GUN at o.Now, as Notary's
// trustpinning.ValidateRoot and the client's root update do:
//
//   - with a previously trusted root (prev.Root), a different root must have
//     a higher version and be signed by a threshold of the trusted root's
//     root keys (with the trusted threshold); the same version with other
//     content is ErrRollback;
//   - the root certificates must satisfy o.Pin (see Pin); without any pin,
//     without TOFU and without a trusted root the result is ErrNotPinned,
//     whose message lists the root key IDs to pin;
//   - the root must be signed by a threshold of its own acceptable root
//     certificates, and not be expired.
//
// It is pure and safe for concurrent use.
func VerifyRoot(b []byte, prev *Trusted, o Options) (*Root, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	gun, now := o.GUN, o.Now
	env, body, err := parseRoot(b)
	if err != nil {
		return nil, malformed(gun, roleRoot, err)
	}
	rootRole := body.roles[roleRoot]

	trustedVersion, trustedDigest := prev.version(roleRoot)
	var prevEnv *envelope
	var prevBody *rootBody
	if prev != nil && len(prev.Root) > 0 {
		if prevEnv, prevBody, err = parseRoot(prev.Root); err != nil {
			return nil, fmt.Errorf("notary %s: trusted root: %w: %v", gun, ErrMalformed, err)
		}
		if prevBody.version >= trustedVersion {
			trustedVersion, trustedDigest = prevBody.version, prevEnv.digest
		}
	}
	if err := checkVersion(gun, roleRoot, body.version, env.digest, trustedVersion, trustedDigest); err != nil {
		return nil, err
	}
	if prevBody != nil && env.digest != prevEnv.digest {
		// Rotation: the trusted root's root keys vouch for the new root.
		// They were trusted already, so neither their common name nor their
		// validity period is checked again (Notary skips the latter too).
		old := prevBody.roles[roleRoot]
		cands := evalRootKeys(prevBody, gun, now, false)
		auth, notes := authorised{}, []string(nil)
		for _, c := range cands {
			if c.problem != "" {
				notes = append(notes, fmt.Sprintf("trusted key %s: %s", c.id, c.problem))
				continue
			}
			auth[c.id] = c.k
		}
		c := checkSigs(env, roleRoot, old.keyIDs, old.threshold, auth, notes)
		if !c.ok() {
			return nil, c.errf(gun, "root rotation from trusted version %d to version %d is not signed by the trusted root keys", prevBody.version, body.version)
		}
	}

	cands := evalRootKeys(body, gun, now, true)
	var selected []*rootCand
	pin := o.Pin
	switch {
	case len(pin.RootKeys) > 0:
		pinned := map[string]bool{}
		for _, id := range pin.RootKeys {
			pinned[strings.ToLower(strings.TrimSpace(id))] = true
		}
		var pinnedBad []*rootCand
		for _, c := range cands {
			if !pinned[c.id] {
				continue
			}
			if c.problem != "" {
				pinnedBad = append(pinnedBad, c)
				continue
			}
			selected = append(selected, c) // pinned by ID: no common name check
		}
		if len(selected) == 0 {
			if len(pinnedBad) > 0 {
				return nil, certError(gun, pinnedBad, now, "the pinned root certificates are not acceptable")
			}
			msg := fmt.Sprintf("root keys %s, pinned root_keys %s", quoted(candIDs(cands)), quoted(pin.RootKeys))
			for _, c := range cands {
				if pid := c.k.publicKeyID(); pinned[pid] && pid != c.id {
					msg += fmt.Sprintf("; %s is the public key ID of certificate %s: pin the certificate's key ID %q", pid, c.id, c.id)
				}
			}
			return nil, fail(gun, roleRoot, ErrPinMismatch, "%s", msg)
		}
	case len(pin.CA) > 0:
		pool, err := parseCAPool(pin.CA, now)
		if err != nil {
			return nil, fail(gun, roleRoot, ErrCertificate, "trust pin CA bundle: %v", err)
		}
		var chainErrs []string
		anyValid := false
		for _, c := range cands {
			if !c.acceptable() {
				continue
			}
			anyValid = true
			if err := c.chainsTo(pool, now); err != nil {
				chainErrs = append(chainErrs, fmt.Sprintf("key %s: %v", c.id, err))
				continue
			}
			selected = append(selected, c)
		}
		if len(selected) == 0 {
			if !anyValid {
				return nil, certError(gun, annotateCN(cands, gun), now, "no acceptable root certificate for the GUN")
			}
			return nil, fail(gun, roleRoot, ErrPinMismatch, "no root certificate chains to the pinned CA (%s)", strings.Join(chainErrs, "; "))
		}
	case prevBody != nil || pin.TOFU:
		for _, c := range cands {
			if c.acceptable() {
				selected = append(selected, c)
			}
		}
		if len(selected) == 0 {
			return nil, certError(gun, annotateCN(cands, gun), now, "no acceptable root certificate for the GUN")
		}
	default:
		// Not pinned. Check the root is at least self-consistent, so that
		// the key IDs offered for pinning are the ones that signed it.
		auth := authorised{}
		var notes []string
		for _, c := range cands {
			if c.problem != "" {
				notes = append(notes, fmt.Sprintf("key %s: %s", c.id, c.problem))
				continue
			}
			auth[c.id] = c.k
		}
		if len(auth) == 0 {
			return nil, certError(gun, cands, now, "no acceptable root certificate")
		}
		c := checkSigs(env, roleRoot, rootRole.keyIDs, rootRole.threshold, auth, notes)
		if !c.ok() {
			return nil, c.errf(gun, "")
		}
		msg := fmt.Sprintf("no trust pin applies to %s, trust_on_first_use is off and no root is trusted yet; after checking them out of band, pin the root keys that signed it: root_keys = %s", gun, quoted(c.valid))
		for _, cd := range cands {
			if !contains(c.valid, cd.id) {
				continue
			}
			if !cd.cnOK {
				msg += fmt.Sprintf(" (certificate %s has CN %q, not the GUN: only a root_keys pin accepts it)", cd.id, cd.leaf.Subject.CommonName)
			}
			if cd.byIDOnly != "" {
				msg += fmt.Sprintf(" (certificate %s: %s)", cd.id, cd.byIDOnly)
			}
		}
		return nil, fail(gun, roleRoot, ErrNotPinned, "%s", msg)
	}

	auth := authorised{}
	var notes []string
	sel := map[string]bool{}
	for _, c := range selected {
		auth[c.id] = c.k
		sel[c.id] = true
	}
	for _, c := range cands {
		if !sel[c.id] {
			p := c.problem
			switch {
			case p != "":
			case c.byIDOnly != "":
				p = c.byIDOnly
			case !c.cnOK:
				p = fmt.Sprintf("CN %q is not the GUN", c.leaf.Subject.CommonName)
			default:
				p = "does not satisfy the trust pin"
			}
			notes = append(notes, fmt.Sprintf("key %s: %s", c.id, p))
		}
	}
	c := checkSigs(env, roleRoot, rootRole.keyIDs, rootRole.threshold, auth, notes)
	if !c.ok() {
		return nil, c.errf(gun, "")
	}
	if err := checkExpiry(gun, roleRoot, body.expires, now); err != nil {
		return nil, err
	}

	r := &Root{opts: o, raw: append([]byte(nil), b...), env: env, body: body, signers: c.valid}
	var notAfter []time.Time
	for _, cd := range cands {
		ci := Cert{KeyID: cd.id, PublicKeyID: cd.k.publicKeyID(), Problem: cd.problem}
		if cd.leaf != nil {
			ci.CommonName, ci.NotBefore, ci.NotAfter = cd.leaf.Subject.CommonName, cd.leaf.NotBefore, cd.leaf.NotAfter
		}
		if sel[cd.id] && contains(c.valid, cd.id) {
			ci.Signed = true
			notAfter = append(notAfter, cd.leaf.NotAfter)
		}
		r.certs = append(r.certs, ci)
	}
	sort.Slice(notAfter, func(i, j int) bool { return notAfter[i].After(notAfter[j]) })
	if len(notAfter) >= rootRole.threshold {
		r.certExpires = notAfter[rootRole.threshold-1]
	}
	return r, nil
}

func annotateCN(cands []*rootCand, gun string) []*rootCand {
	for _, c := range cands {
		switch {
		case c.problem != "":
		case c.byIDOnly != "":
			c.problem = c.byIDOnly
		case !c.cnOK:
			c.problem = fmt.Sprintf("CN %q is not the GUN %q (pin the key by ID to accept it)", c.leaf.Subject.CommonName, gun)
		}
	}
	return cands
}
