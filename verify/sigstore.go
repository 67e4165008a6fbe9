package verify

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/policy"
)

// SigstoreTag is the name under which a sigstore source's index holds the
// signatures of digest d: cosign's tag for them without ".sig"
// ("sha256-<hex>"). Its roles are the IDs of the keys that signed d (each
// Target's digest is d).
func SigstoreTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded()
}

// decideSigstore judges an image against a sigstore source, which signs
// digests, not tags: the digest being judged (the requested one, the
// image's, or its config through the content of a signed digest) must be
// signed by threshold distinct keys among signers (the rule's key IDs).
// A tag in the reference binds nothing and is ignored.
func decideSigstore(si *SourceIndex, rt RepoView, ref *policy.Ref, f *Facts, d *Decision, signers []string, threshold int) {
	if len(signers) == 0 {
		// Only a policy read by policy.Load has its keys: never "any key".
		d.Reason = "the rule's keys have not been read (the policy was not loaded with its key files)"
		return
	}
	if ref.Digest == "" && f.Digest == "" && f.ConfigDigest == "" {
		d.Reason = fmt.Sprintf("the digest of %s is not known, and cosign signs digests, not tags: judge it by digest", ref.String())
		return
	}
	byDigest := *ref
	byDigest.Tag = ""
	var buf [8]string // the accepted signers, without an allocation for most rules
	if accepted := acceptedSigners(si, signers, buf[:0]); len(accepted) > 0 && decideByDigest(rt, &byDigest, f, d, accepted, threshold) {
		how, _, _ := strings.Cut(d.Reason, ": ")
		one, many := signerWords(d.Signers)
		by := one
		if len(d.Signers) > 1 {
			by = many
		}
		d.Reason = how + ": " + ref.Repo + "@" + string(d.SignedDigest) + " is signed by " + by + " " + strings.Join(d.Signers, ", ")
		return
	}
	sigstoreNotSigned(si, rt, &byDigest, f, d, signers, threshold)
}

// acceptedSigners returns the signers in si whose signatures count for a
// rule naming the keys and identities ids: those that satisfy one of them
// (ids itself when si has no SignerMatches). A signer is one role of the
// index, so threshold counts distinct signers even when one satisfies
// several of the rule's identities. Empty: no signer counts (never "any").
// The signers are appended to out.
func acceptedSigners(si *SourceIndex, ids, out []string) []string {
	if si.SignerMatches == nil {
		return ids
	}
	for signer, m := range si.SignerMatches {
		for _, id := range m {
			if slices.Contains(ids, id) {
				out = append(out, signer)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// sigstoreNotSigned is the reason of a denial by a sigstore source: the
// digest judged, the keys the rule wants, the keys that did sign it, and
// why the signatures found for it were refused.
//
//go:noinline
func sigstoreNotSigned(si *SourceIndex, rt RepoView, ref *policy.Ref, f *Facts, d *Decision, signers []string, threshold int) {
	what, x := "digest", f.Digest
	switch {
	case ref.Digest != "":
		what, x = "requested digest", ref.Digest
	case f.ConfigDigest != "" && f.Digest == "":
		what, x = "image config", f.ConfigDigest
	}
	var by []string
	add := func(tv TagView) bool {
		for _, k := range tv.Roles() {
			if !slices.Contains(by, k) {
				by = append(by, k)
			}
		}
		return true
	}
	rt.TagsSignedAs(x, add)
	for sd, covered := range f.Covers {
		if slices.Contains(covered, x) {
			rt.TagsSignedAs(sd, add)
		}
	}
	d.Reason = fmt.Sprintf("%s %s of %s is not signed by %s", what, x, ref.Repo, describeKeys(signers, threshold))
	switch {
	case len(by) > 0:
		slices.Sort(by)
		d.Reason += fmt.Sprintf(" (signed only by %s)", describeKeyList(by))
	case what == "image config" && len(f.Covers) == 0 && rt.NumTags() > 0:
		d.Reason += " (no signed manifest's content is known to cover it: pull the signed image once)"
	}
	if why := si.Refused[ref.Repo+"@"+string(x)]; len(why) > 0 {
		d.Reason += "; signatures found for it were refused: " + strings.Join(why, "; ")
	}
}

func describeKeys(ids []string, threshold int) string {
	_, many := signerWords(ids)
	if threshold > 1 {
		return fmt.Sprintf("%d of the %s [%s]", threshold, many, strings.Join(ids, ", "))
	}
	return describeKeyList(ids)
}

// describeKeyList names signers: "key ID", "keys ID, ID", or "signer …"
// and "signers …" when some are keyless identities.
func describeKeyList(ids []string) string {
	one, many := signerWords(ids)
	if len(ids) == 1 {
		return one + " " + ids[0]
	}
	return many + " " + strings.Join(ids, ", ")
}

// signerWords returns "key" and "keys" when every ID is a key's (16
// lowercase hex digits), else "signer" and "signers".
func signerWords(ids []string) (string, string) {
	for _, id := range ids {
		if len(id) != policy.KeyIDLen || strings.Trim(id, "0123456789abcdef") != "" {
			return "signer", "signers"
		}
	}
	return "key", "keys"
}
