package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// maxTrustedRootFile bounds a trusted_root.json.
const maxTrustedRootFile = 1 << 20

// Identity is one keyless signer of a rule against a sigstore source: the
// OIDC issuer that vouched for the signer and the certificate's subject
// (its SAN: an email, or a URI such as a CI workflow's), each exact or an
// RE2 regular expression matching the whole value. Exactly one of Issuer
// and IssuerRegexp is set, and one of Subject and SubjectRegexp.
type Identity struct {
	Pos                    Position // of the element in the rule's identities
	Issuer, IssuerRegexp   string
	Subject, SubjectRegexp string
	// ID names the identity in decisions and logs (see IdentityID).
	ID string
}

// IdentityID is the readable, stable ID of an identity: its subject and
// issuer as a keyless signer is named ("<subject> (issuer <issuer>)"), a
// regular expression written between slashes.
func IdentityID(issuer, issuerRegexp, subject, subjectRegexp string) string {
	part := func(exact, re string) string {
		if re != "" {
			return "/" + re + "/"
		}
		return exact
	}
	return part(subject, subjectRegexp) + " (issuer " + part(issuer, issuerRegexp) + ")"
}

// CompileIdentityRegexp compiles an identity's regular expression as it is
// matched: RE2, against the whole value.
func CompileIdentityRegexp(re string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(re); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + re + `)$`)
}

func (d *doc) ruleIdentities(r *Rule, rp string, list []rawIdentity, src *Source) {
	lp := rp + ".identities"
	if len(list) == 0 {
		d.errf(lp, "rule.identities: must not be empty")
		return
	}
	if src.TrustedRoot == "" && src.Root == "" {
		d.errf(lp, "rule.identities: source %q has no Sigstore trusted root to check keyless signatures with (set trusted_root, or url and root, on the source)", src.Name)
	}
	seen := map[string]bool{}
	for j, ri := range list {
		ep := index(lp, j)
		id := &Identity{Pos: d.at(ep)}
		ok := d.identityPart(ep, "issuer", ri.Issuer, ri.IssuerRegexp, &id.Issuer, &id.IssuerRegexp)
		ok = d.identityPart(ep, "subject", ri.Subject, ri.SubjectRegexp, &id.Subject, &id.SubjectRegexp) && ok
		if !ok {
			continue
		}
		id.ID = IdentityID(id.Issuer, id.IssuerRegexp, id.Subject, id.SubjectRegexp)
		if seen[id.ID] {
			d.errf(ep, "rule.identities: duplicate identity %s", id.ID)
			continue
		}
		seen[id.ID] = true
		r.Identities = append(r.Identities, id)
		r.Signers = append(r.Signers, id.ID)
	}
}

// identityPart reads one of issuer/issuer_regexp (or subject/...) into
// exact or re, and reports whether it is valid.
func (d *doc) identityPart(ep, key string, exact, re *string, dstExact, dstRE *string) bool {
	switch {
	case exact != nil && re != nil:
		d.errf(ep+"."+key+"_regexp", "rule.identities: set either %s or %s_regexp, not both", key, key)
	case exact == nil && re == nil:
		d.errf(ep, "rule.identities: missing required key %q or %q", key, key+"_regexp")
	case exact != nil && *exact == "":
		d.errf(ep+"."+key, "rule.identities.%s: must not be empty", key)
	case exact != nil:
		*dstExact = *exact
		return true
	case *re == "":
		d.errf(ep+"."+key+"_regexp", "rule.identities.%s_regexp: must not be empty", key)
	default:
		if _, err := CompileIdentityRegexp(*re); err != nil {
			d.errf(ep+"."+key+"_regexp", "rule.identities.%s_regexp: invalid regular expression (RE2): %v", key, err)
			return false
		}
		*dstRE = *re
		return true
	}
	return false
}

// readTrustedRoots reads the pinned trusted_root.json of every sigstore
// source (bounded; its content is checked where it is used, with
// sigstore-go), and returns an Errors naming each that could not be read.
func (p *Policy) readTrustedRoots() error {
	var errs Errors
	for _, s := range p.Sources {
		if s.TrustedRoot == "" {
			continue
		}
		data, err := readFileLimit(s.TrustedRoot, maxTrustedRootFile)
		if err == nil && !json.Valid(data) {
			err = errors.New("not JSON (want a Sigstore trusted_root.json)")
		}
		if err != nil {
			errs = append(errs, &Error{Pos: s.trustedRootPos, Msg: fmt.Sprintf("source.trusted_root: %s: %v", s.TrustedRoot, err), Err: err})
			continue
		}
		s.TrustedRootData = data
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}
