package verify

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/policy"
)

// defaultNotarySigners are the roles whose signatures count for a Notary
// source when a rule names none: Docker's order, delegation first. (An
// array: no caller can change what Decide reads.)
var defaultNotarySigners = [...]string{"targets/releases", "targets"}

// DefaultNotarySigners returns the roles whose signatures count for a
// Notary source when a rule names none, in Docker's order.
func DefaultNotarySigners() []string { return slices.Clone(defaultNotarySigners[:]) }

// ErrDenied is matched (errors.Is) by every *DeniedError.
var ErrDenied = errors.New("trustd: image denied")

// DeniedError carries the Decision that denied an image. Its text is the
// decision's full, human-readable message.
type DeniedError struct{ Decision Decision }

func (e *DeniedError) Error() string { return e.Decision.Message() }

// Is reports whether target is ErrDenied.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// Subject says what kind of event is being judged; it decides how the
// namespace is used.
type Subject int

const (
	// SubjectCheck is a check with no pod (a CLI `verify` without
	// --namespace, an archive, an image event): like a pull, the image is
	// allowed when some namespace would allow it.
	SubjectCheck Subject = iota
	// SubjectPull is an image pull: the namespace that will run it is not
	// known yet, so the image is allowed when some namespace would allow it.
	// Creation (SubjectContainer) is the guarantee.
	SubjectPull
	// SubjectContainer is a container being created in a pod of Namespace.
	SubjectContainer
)

// String names the subject as logs, metrics and the control socket do:
// "pull", "container" or "check".
func (s Subject) String() string {
	switch s {
	case SubjectPull:
		return "pull"
	case SubjectContainer:
		return "container"
	}
	return "check"
}

// Facts are what is known about the image being judged. They are gathered
// (from NRI, containerd's store, an archive or the command line) before
// Decide is called; Decide itself does no I/O.
type Facts struct {
	Subject Subject
	// Image is the reference that was asked for: name[:tag][@digest].
	Image string
	// Namespace is the pod's Kubernetes namespace (SubjectContainer only).
	Namespace string
	// Digest is the manifest or index digest of the image being judged
	// (the digest pulled, or the runtime's image digest); may be empty.
	Digest digest.Digest
	// ConfigDigest is the image's config digest (its image ID); when set it
	// is the identity that is judged, since equal configs are equal images.
	ConfigDigest digest.Digest
	// Covers maps a signed manifest or index digest to the digests its
	// content covers (platform manifests and config digests), resolved from
	// content-addressed data. A missing entry means "not known".
	Covers map[digest.Digest][]digest.Digest
	// Content, if set, answers for the signed digests Covers has no entry
	// for. Decide asks it only when digests alone do not decide, and only
	// about signed digests of the rule's trust data, so that one pass of
	// Decide is the whole decision. Its answers come from content-addressed
	// data: they never change, whatever is asked when.
	Content ContentLookup

	// missed remembers, for one decision, signed digests Content could not
	// resolve, so that a denial asks once rather than once per check.
	missed  [2]digest.Digest
	nmissed int
}

// ContentLookup says what a signed manifest or index digest covers: the
// digest itself, its platform manifests and their config digests; ok is
// false when its content is not available. An implementation may read
// content (containerd's store, a manifest cache): Decide itself does no
// I/O, and reaches content only through it.
type ContentLookup interface {
	Covered(d digest.Digest) (covered []digest.Digest, ok bool)
}

// coverage is what the signed digest sd covers: from Covers, else from
// Content.
func (f *Facts) coverage(sd digest.Digest) ([]digest.Digest, bool) {
	if c, ok := f.Covers[sd]; ok {
		return c, true
	}
	if f.Content == nil {
		return nil, false
	}
	for _, m := range f.missed {
		if m == sd {
			return nil, false
		}
	}
	c, ok := f.Content.Covered(sd)
	if !ok {
		f.missed[f.nmissed%len(f.missed)] = sd
		f.nmissed++
	}
	return c, ok
}

// Decision is the verdict on one image, with everything needed to explain it.
type Decision struct {
	// Image is the normalised reference judged (after mirror rewriting).
	Image string `json:"image"`
	// Requested is the reference as it was asked for.
	Requested string `json:"requested,omitempty"`
	// Digest is the digest judged, or the signed digest when only a tag was
	// asked about.
	Digest digest.Digest `json:"digest"`
	// ConfigDigest is the config digest judged, if any.
	ConfigDigest digest.Digest `json:"config_digest,omitempty"`
	// SignedDigest is the digest the trust data binds the tag to, if any.
	SignedDigest digest.Digest `json:"signed_digest,omitempty"`
	Allowed      bool          `json:"allowed"`
	// Audit is true when the image would have been denied but the rule's
	// mode is audit: Allowed is then true.
	Audit bool `json:"audit,omitempty"`
	// Rule describes the rule that decided ("" when none matched).
	Rule      string   `json:"rule"`
	Source    string   `json:"source"`
	Signers   []string `json:"signers"`
	Threshold int      `json:"threshold,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
	Reason    string   `json:"reason"`
	// Volume is the mount point of the image volume judged, when the image
	// is mounted into a container as a volume rather than run as its image.
	Volume string `json:"volume,omitempty"`
	// Grace is set when the decision rests on expired timestamp or
	// snapshot data used under offline_grace; it says so and until when.
	Grace string `json:"grace,omitempty"`
}

// Verdict is a decision in one word, as logged and counted.
type Verdict string

// The verdicts.
const (
	Allow Verdict = "allow"
	Deny  Verdict = "deny"
	Audit Verdict = "audit" // allowed, but would be denied
)

// Verdict is the decision in one word.
func (d Decision) Verdict() Verdict {
	switch {
	case d.Audit:
		return Audit
	case d.Allowed:
		return Allow
	}
	return Deny
}

// Message is the decision as one line for a person: for a denial it names
// the image, the digest, the rule and why.
func (d Decision) Message() string {
	var b strings.Builder
	switch {
	case d.Audit:
		b.WriteString("trustd: audit: would deny ")
	case d.Allowed:
		b.WriteString("trustd: allowed ")
	default:
		b.WriteString("trustd: denied ")
	}
	if d.Volume != "" {
		b.WriteString("image volume ")
		b.WriteString(d.Volume)
		if d.Image != "" {
			b.WriteString(" from ")
		}
	}
	b.WriteString(d.Image)
	switch {
	case d.ConfigDigest != "":
		fmt.Fprintf(&b, " (config %s)", d.ConfigDigest)
	case d.Digest != "":
		fmt.Fprintf(&b, " (%s)", d.Digest)
	}
	if d.Namespace != "" {
		fmt.Fprintf(&b, " in namespace %s", d.Namespace)
	}
	if d.Rule != "" {
		fmt.Fprintf(&b, " by %s", d.Rule)
	}
	if d.Source != "" {
		fmt.Fprintf(&b, ", source %q", d.Source)
	}
	b.WriteString(": ")
	b.WriteString(d.Reason)
	if d.Grace != "" {
		b.WriteString(" (")
		b.WriteString(d.Grace)
		b.WriteString(")")
	}
	return b.String()
}

// Err returns nil for an allowed image and a *DeniedError otherwise.
func (d Decision) Err() error {
	if d.Allowed {
		return nil
	}
	return &DeniedError{Decision: d}
}

// Decide judges one image: it matches the policy's rules on the normalised
// (mirror-rewritten) name and checks the trust data of the rule's source.
// It is pure: no I/O, no clock (now is passed in), no globals; it is safe
// for concurrent use on shared immutable inputs. A nil policy or index
// denies.
func Decide(p *policy.Policy, ix *Index, f Facts, now time.Time) Decision {
	// The decision is built in place through pointers: the frames stay
	// small, so that a fresh goroutine (each NRI request runs in one)
	// does not have to grow and copy its stack to decide.
	d := Decision{Requested: f.Image, Image: f.Image, Digest: f.Digest, ConfigDigest: f.ConfigDigest, Signers: []string{}}
	if f.Subject == SubjectContainer {
		d.Namespace = f.Namespace
	}
	if p == nil {
		d.Reason = "no policy loaded"
		return d
	}
	ref, err := policy.ParseRef(f.Image)
	if err != nil {
		d.Reason = err.Error()
		applyMode(&d, p.Mode)
		return d
	}
	repo := p.Origin(ref.Repo)
	ref.Repo = repo
	if ref.IsString(f.Image) {
		d.Image = f.Image // already normalised: no copy
	} else {
		d.Image = ref.String()
	}
	if f.Subject == SubjectContainer {
		r := p.Match(repo, f.Namespace)
		if r == nil {
			noRule(&d, repo, f.Namespace, true)
			applyMode(&d, p.Mode)
			return d
		}
		decideRule(p, r, ix, &ref, &f, &d, now)
		return d
	}
	cands := p.Candidates(repo)
	if len(cands) == 0 {
		noRule(&d, repo, "", false)
		applyMode(&d, p.Mode)
		return d
	}
	base := d
	for i, r := range cands {
		v := base
		decideRule(p, r, ix, &ref, &f, &v, now)
		if v.Allowed {
			return v
		}
		if i == 0 {
			d = v
		}
	}
	return d
}

// noRule says that no rule matches (in namespace ns, for a container).
//
//go:noinline
func noRule(d *Decision, repo, ns string, container bool) {
	if container {
		d.Reason = fmt.Sprintf("no policy rule matches %s in namespace %s", repo, ns)
		return
	}
	d.Reason = fmt.Sprintf("no policy rule matches %s", repo)
}

func decideRule(p *policy.Policy, r *policy.Rule, ix *Index, ref *policy.Ref, f *Facts, d *Decision, now time.Time) {
	d.Rule = r.String()
	judge(p, r, ix, ref, f, d, now)
	applyMode(d, r.EffectiveMode(p.Mode))
}

// applyMode turns a denial into an allowed would-be denial in audit mode,
// and into an allowed decision that says so in off mode.
func applyMode(d *Decision, m policy.Mode) {
	if d.Allowed {
		return
	}
	switch m {
	case policy.ModeAudit:
		d.Allowed, d.Audit = true, true
	case policy.ModeOff:
		d.Allowed = true
		d.Reason = "mode is off; would deny: " + d.Reason
	}
}

func judge(p *policy.Policy, r *policy.Rule, ix *Index, ref *policy.Ref, f *Facts, d *Decision, now time.Time) {
	switch r.Action {
	case policy.ActionAllow:
		d.Allowed = true
		d.Reason = "allowed without signature check by the rule"
		return
	case policy.ActionVerify:
	default:
		ruleDenies(d, r, ref.Repo)
		return
	}
	requirement(p, r, ix, ref, f, d, now)
	if d.Allowed && len(r.Also) > 0 {
		also(p, r, ix, ref, f, d, now)
	}
}

// also judges the image against each [[rule.also]] of r, once r's own
// source allowed it: every one must allow it too. A denial is the first
// requirement's that denies, with its source, signers and threshold (so
// that a pull fetches from that source), after what r's source said.
//
//go:noinline
func also(p *policy.Policy, r *policy.Rule, ix *Index, ref *policy.Ref, f *Facts, d *Decision, now time.Time) {
	for i, a := range r.Also {
		ad := Decision{Image: d.Image, Requested: d.Requested, Digest: d.Digest, ConfigDigest: d.ConfigDigest}
		requirement(p, a, ix, ref, f, &ad, now)
		if !ad.Allowed {
			d.Allowed = false
			d.Source, d.Signers, d.Threshold = ad.Source, ad.Signers, ad.Threshold
			d.Reason = fmt.Sprintf("%s; but also #%d, source %q: %s", d.Reason, i+1, a.Source, ad.Reason)
			return
		}
		d.Reason = fmt.Sprintf("%s; and also #%d, source %q: %s", d.Reason, i+1, a.Source, ad.Reason)
		d.Signers = append(d.Signers, ad.Signers...)
		if ad.Grace != "" {
			d.Grace = strings.TrimPrefix(d.Grace+"; "+ad.Grace, "; ")
		}
	}
}

// requirement judges the image against one source a verify rule requires
// (the rule's own, or one of its Also), with that requirement's signers
// and threshold.
func requirement(p *policy.Policy, r *policy.Rule, ix *Index, ref *policy.Ref, f *Facts, d *Decision, now time.Time) {
	d.Source = r.Source
	si := ix.Source(r.Source)
	if si == nil || si.Err != nil {
		noTrustData(d, si, r.Source)
		return
	}
	rt, ok := si.Lookup(ref.Repo)
	if !ok || rt.NumTags() == 0 && rt.NumDenied() == 0 {
		notSigned(d, si, ref, r.Source)
		return
	}
	if !fresh(p, r, si, rt, ref.Repo, d, now) {
		return
	}
	signers := r.Signers
	if len(signers) == 0 && si.Kind == "notary" {
		signers = defaultNotarySigners[:]
	}
	threshold := r.Threshold
	if threshold < 1 {
		threshold = 1
	}
	d.Threshold = threshold

	if si.Kind == policy.KindSigstore {
		decideSigstore(si, rt, ref, f, d, signers, threshold)
		return
	}
	if ref.Tag != "" {
		tv, ok := rt.Tag(ref.Tag)
		if !ok {
			tagNotSigned(d, si, rt, ref.Tag, ref.Repo)
			return
		}
		sd, roles, why := signedDigest(tv, ref.Repo, signers, threshold, true)
		if sd == "" {
			d.Reason = why
			return
		}
		d.SignedDigest = sd
		d.Signers = slices.Clone(roles) // the caller's own: roles is the index's
		one := [1]tagDigest{{ref.Tag, sd, roles}}
		match(d, ref, f, one[:])
		return
	}
	// A reference by digest only must be signed under some tag. The tags
	// signed as a digest the facts can match are found through the
	// digest index; only when none matches (a denial) is every tag read,
	// for the reason.
	if decideByDigest(rt, ref, f, d, signers, threshold) {
		return
	}
	allTags(rt, ref, f, d, signers, threshold)
}

// ruleDenies is the denial of a deny rule (or of an unknown action).
//
//go:noinline
func ruleDenies(d *Decision, r *policy.Rule, repo string) {
	if r.Action == policy.ActionDeny {
		d.Reason = fmt.Sprintf("the rule denies %s", repo)
		return
	}
	d.Reason = fmt.Sprintf("unknown rule action %q", r.Action)
}

// noTrustData is the denial for a source without usable trust data.
//
//go:noinline
func noTrustData(d *Decision, si *SourceIndex, source string) {
	if si == nil {
		d.Reason = fmt.Sprintf("no trust data from source %q has been loaded", source)
		return
	}
	d.Reason = fmt.Sprintf("no verified trust data: %v", si.Err)
}

//go:noinline
func notSigned(d *Decision, si *SourceIndex, ref *policy.Ref, source string) {
	d.Reason = fmt.Sprintf("%s is not signed: source %q has no trust data for it", ref.Repo, source)
	inFailedRole(d, si, ref.Repo, ref.Tag)
}

//go:noinline
func tagNotSigned(d *Decision, si *SourceIndex, rt RepoView, tag, repo string) {
	if why, ok := rt.Denied(tag); ok {
		d.Reason = fmt.Sprintf("tag %q of %s is refused: %s", tag, repo, why)
		return
	}
	d.Reason = fmt.Sprintf("tag %q of %s is not signed", tag, repo)
	inFailedRole(d, si, repo, tag)
}

// inFailedRole adds to an unsigned tag's reason the delegated role that
// could not be used and whose paths cover it: the role may sign it.
func inFailedRole(d *Decision, si *SourceIndex, repo, tag string) {
	if f := failedRoleCovering(si, repo, tag); f != nil {
		d.Reason += fmt.Sprintf(" by any role trustd could use: it is in the paths of delegated role %s (delegated by %s), which could not be used: %s", f.Role, f.Delegator, f.Why)
	}
}

// fresh checks the expiry of the repository's trust data at now: false
// (with the reason in d) when it has expired and offline grace does not
// cover it; true otherwise, with d.Grace set when grace is in use.
//
//go:noinline
func fresh(p *policy.Policy, r *policy.Rule, si *SourceIndex, rt RepoView, repo string, d *Decision, now time.Time) bool {
	if exp := rt.Expires(); !exp.IsZero() && now.After(exp) {
		d.Reason = fmt.Sprintf("trust data for %s expired at %s (role %s); refusing expired trust data", repo, exp.UTC().Format(time.RFC3339), rt.ExpiresRole())
		return false
	}
	until := rt.FreshUntil()
	if until.IsZero() || !now.After(until) {
		return true
	}
	grace := p.OfflineGraceFor(r.Source)
	exp := fmt.Sprintf("the %s of %s's trust data expired at %s", rt.FreshRole(), repo, until.UTC().Format(time.RFC3339))
	switch {
	case grace <= 0:
		d.Reason = exp + "; refusing expired trust data (offline_grace is 0)"
		return false
	case !si.Unreachable:
		d.Reason = exp + fmt.Sprintf("; source %q is reachable, so offline grace does not apply: it must serve fresh data", r.Source)
		return false
	case now.After(until.Add(grace)):
		d.Reason = exp + fmt.Sprintf("; the offline grace of %s ended at %s", grace, until.Add(grace).UTC().Format(time.RFC3339))
		return false
	}
	d.Grace = fmt.Sprintf("on offline grace: %s, source %q unreachable since %s, grace ends %s", exp, r.Source, si.UnreachableSince.UTC().Format(time.RFC3339), until.Add(grace).UTC().Format(time.RFC3339))
	return true
}

// allTags judges a reference without a tag against every tag the signer
// rule accepts, in tag order: the way to the reason of a denial.
//
//go:noinline
func allTags(rt RepoView, ref *policy.Ref, f *Facts, d *Decision, signers []string, threshold int) {
	var cands []tagDigest
	for i := 0; i < rt.NumTags(); i++ {
		tv := rt.TagAt(i)
		if sd, roles, _ := signedDigest(tv, ref.Repo, signers, threshold, false); sd != "" {
			cands = append(cands, tagDigest{tv.Name(), sd, roles})
		}
	}
	if len(cands) == 0 {
		d.Reason = fmt.Sprintf("no tag of %s is signed by %s", ref.Repo, describeSigners(signers, threshold))
		if n := rt.NumDenied(); n > 0 {
			tag, why := rt.DeniedAt(0)
			d.Reason += fmt.Sprintf("; %d tags are refused (tag %q: %s)", n, tag, why)
		}
		return
	}
	match(d, ref, f, cands)
}

// decideByDigest judges a reference without a tag from the tags signed as
// a digest the facts could match: the requested digest, the image digest,
// the config digest, or a signed digest whose content (Facts.Covers)
// covers one of them. It reports true, with d decided, only for an allowed
// decision, which is then the one the full scan would reach: match takes
// the first candidate in tag order, and tags outside this set match
// nothing. Otherwise d is left as it was.
func decideByDigest(rt RepoView, ref *policy.Ref, f *Facts, d *Decision, signers []string, threshold int) bool {
	var wanted [3]digest.Digest
	n := 0
	for _, x := range []digest.Digest{ref.Digest, f.Digest, f.ConfigDigest} {
		if x != "" {
			wanted[n] = x
			n++
		}
	}
	if n == 0 {
		return false
	}
	var buf [2]tagDigest // most digests are signed under a tag or two
	cands := buf[:0]
	seen := func(tag string) bool {
		for _, c := range cands {
			if c.tag == tag {
				return true
			}
		}
		return false
	}
	collect := func(sd digest.Digest) {
		rt.TagsSignedAs(sd, func(tv TagView) bool {
			if got, roles, _ := signedDigest(tv, ref.Repo, signers, threshold, false); got == sd && !seen(tv.Name()) {
				cands = append(cands, tagDigest{tv.Name(), got, roles})
			}
			return len(cands) < maxDigestCandidates
		})
	}
	for _, x := range wanted[:n] {
		collect(x)
	}
	coversWanted := func(covered []digest.Digest) bool {
		for _, c := range covered {
			if slices.Contains(wanted[:n], c) {
				return true
			}
		}
		return false
	}
	for sd, covered := range f.Covers {
		if coversWanted(covered) {
			collect(sd)
		}
	}
	if len(cands) == 0 && f.Content != nil {
		// The signed digests whose content may cover the image: every
		// tag's, at most maxNeeded of them (as Needed bounds them).
		asked := make(map[digest.Digest]bool, min(rt.NumTags(), maxNeeded))
		for i := 0; i < rt.NumTags() && len(asked) < maxNeeded; i++ {
			eachNewSignedDigest(rt.TagAt(i), asked, func(sd digest.Digest) {
				if _, inMap := f.Covers[sd]; inMap {
					return // judged above
				}
				if covered, ok := f.coverage(sd); ok && coversWanted(covered) {
					collect(sd)
				}
			})
		}
	}
	if len(cands) == 0 {
		return false
	}
	slices.SortFunc(cands, func(a, b tagDigest) int { return strings.Compare(a.tag, b.tag) })
	v := *d
	match(&v, ref, f, cands)
	if v.Allowed {
		*d = v
	}
	return v.Allowed
}

// maxDigestCandidates bounds the tags one digest-only decision collects
// through the digest index before it falls back to the full scan.
const maxDigestCandidates = 64

type tagDigest struct {
	tag   string
	dgst  digest.Digest
	roles []string
}

// signedDigest applies the signer rule to one tag: with threshold 1 the
// first role in signers (or in resolution order when signers is empty) that
// signed the tag decides its digest, as docker does; with threshold N, N
// distinct roles among signers must sign the same digest. With threshold
// 1 it does not allocate unless the tag is not signed by those roles and
// explain asks why (the reason, else "").
func signedDigest(tv TagView, repo string, signers []string, threshold int, explain bool) (digest.Digest, []string, string) {
	if threshold > 1 {
		return signedDigestThreshold(tv, repo, signers, threshold, explain)
	}
	if len(signers) == 0 {
		_, t := tv.Sig(0)
		return t.Digest, tv.Signer(0), ""
	}
	for _, role := range signers {
		if i := tv.Find(role); i >= 0 {
			_, t := tv.Sig(i)
			return t.Digest, tv.Signer(i), ""
		}
	}
	if !explain {
		return "", nil, ""
	}
	return "", nil, notSignedBy(tv, repo, signers, threshold)
}

//go:noinline
func notSignedBy(tv TagView, repo string, signers []string, threshold int) string {
	return fmt.Sprintf("tag %q of %s is not signed by %s (signed only by %s)", tv.Name(), repo, describeSigners(signers, threshold), strings.Join(tv.Roles(), ", "))
}

// signedDigestThreshold is signedDigest with a threshold of 2 or more.
//
//go:noinline
func signedDigestThreshold(tv TagView, repo string, signers []string, threshold int, explain bool) (digest.Digest, []string, string) {
	order := signers
	if len(order) == 0 {
		order = tv.Roles()
	}
	byDigest := map[digest.Digest][]string{}
	var digests []digest.Digest
	for _, role := range order {
		i := tv.Find(role)
		if i < 0 {
			continue
		}
		_, t := tv.Sig(i)
		if _, seen := byDigest[t.Digest]; !seen {
			digests = append(digests, t.Digest)
		}
		byDigest[t.Digest] = append(byDigest[t.Digest], role)
	}
	for _, dg := range digests {
		if len(byDigest[dg]) >= threshold {
			return dg, byDigest[dg], ""
		}
	}
	if !explain {
		return "", nil, ""
	}
	var found []string
	for _, dg := range digests {
		found = append(found, fmt.Sprintf("%s by %s", dg, strings.Join(byDigest[dg], "+")))
	}
	if len(found) == 0 {
		found = append(found, "no signature from those roles")
	}
	return "", nil, fmt.Sprintf("tag %q of %s is not signed by %s with the same digest (found: %s)", tv.Name(), repo, describeSigners(signers, threshold), strings.Join(found, "; "))
}

func describeSigners(signers []string, threshold int) string {
	if len(signers) == 0 {
		if threshold > 1 {
			return fmt.Sprintf("%d roles", threshold)
		}
		return "any authorised role"
	}
	if threshold > 1 {
		return fmt.Sprintf("%d of [%s]", threshold, strings.Join(signers, ", "))
	}
	return fmt.Sprintf("any of [%s]", strings.Join(signers, ", "))
}

// covers reports whether the signed digest sd is x or covers it (a
// platform manifest or config of sd's content).
func covers(f *Facts, sd, x digest.Digest) bool {
	if sd == x {
		return true
	}
	covered, _ := f.coverage(sd)
	return slices.Contains(covered, x)
}

// firstCovering returns the index of the first candidate whose signed
// digest is x, else of the first whose content covers x, or -1: digests
// alone decide before any content is looked up.
func firstCovering(f *Facts, cands []tagDigest, x digest.Digest) int {
	for i := range cands {
		if cands[i].dgst == x {
			return i
		}
	}
	for i := range cands {
		if covers(f, cands[i].dgst, x) {
			return i
		}
	}
	return -1
}

// allow makes d an allowed decision resting on candidate c. The reason is
// built with one allocation.
func allow(d *Decision, ref *policy.Ref, c *tagDigest, how string) {
	d.Allowed = true
	d.SignedDigest = c.dgst
	if !slices.Equal(d.Signers, c.roles) { // already the caller's own copy when equal
		d.Signers = slices.Clone(c.roles) // the caller's own: roles may be the index's
	}
	if d.Digest == "" {
		d.Digest = c.dgst
	}
	by := ""
	if len(c.roles) == 1 {
		by = c.roles[0]
	} else {
		by = strings.Join(c.roles, ", ")
	}
	d.Reason = how + ": " + ref.Repo + ":" + c.tag + " is signed as " + string(c.dgst) + " by " + by
}

// match compares the subject of the facts with the signed digests.
func match(d *Decision, ref *policy.Ref, f *Facts, cands []tagDigest) {
	// A digest in the reference itself must be the signed one (or a
	// platform manifest of it); only the tags it is signed under count.
	if ref.Digest != "" {
		n := 0
		for _, c := range cands {
			if covers(f, c.dgst, ref.Digest) {
				n++
			}
		}
		if n == 0 {
			d.Digest = ref.Digest
			mismatch(d, ref, f, cands, "requested")
			return
		}
		if n < len(cands) {
			keep := make([]tagDigest, 0, n)
			for _, c := range cands {
				if covers(f, c.dgst, ref.Digest) {
					keep = append(keep, c)
				}
			}
			cands = keep
		}
	}
	switch {
	case f.ConfigDigest != "":
		if f.Digest != "" {
			if i := firstCovering(f, cands, f.Digest); i >= 0 {
				allow(d, ref, &cands[i], "image digest matches")
				return
			}
		}
		if i := firstCovering(f, cands, f.ConfigDigest); i >= 0 {
			allow(d, ref, &cands[i], "image config "+string(f.ConfigDigest)+" matches")
			return
		}
		mismatch(d, ref, f, cands, "config")
	case f.Digest != "":
		if i := firstCovering(f, cands, f.Digest); i >= 0 {
			allow(d, ref, &cands[i], "digest matches")
			return
		}
		mismatch(d, ref, f, cands, "digest")
	case ref.Digest != "":
		d.Digest = ref.Digest
		allow(d, ref, &cands[0], "requested digest matches")
	default:
		// Only a tag was asked about: report what it is signed as.
		allow(d, ref, &cands[0], "signed")
	}
}

// mismatch is the reason of a denial by match: what did not match
// (the requested digest, the config digest, the image digest) and what
// was signed.
//
//go:noinline
func mismatch(d *Decision, ref *policy.Ref, f *Facts, cands []tagDigest, what string) {
	where := fmt.Sprintf("the signed digest of any of the %d signed tags of %s", len(cands), ref.Repo)
	if len(cands) == 1 {
		where = fmt.Sprintf("the signed digest %s of %s:%s (signed by %s)", cands[0].dgst, ref.Repo, cands[0].tag, strings.Join(cands[0].roles, ", "))
	}
	switch what {
	case "requested":
		d.Reason = fmt.Sprintf("requested digest %s is not %s", ref.Digest, where)
	case "digest":
		d.Reason = fmt.Sprintf("digest %s is not %s", f.Digest, where)
	default:
		unknown := 0
		for _, c := range cands {
			if _, ok := f.coverage(c.dgst); !ok {
				unknown++
			}
		}
		if unknown == len(cands) {
			d.Reason = fmt.Sprintf("image config %s cannot be matched to %s: that manifest is not in containerd's content store or trustd's manifest cache (pull the signed image once)", f.ConfigDigest, where)
			return
		}
		d.Reason = fmt.Sprintf("image config %s is not the signed image's config: it matches none of %s", f.ConfigDigest, where)
	}
}

// SortDigests sorts and de-duplicates ds in place and returns it.
func SortDigests(ds []digest.Digest) []digest.Digest {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	out := ds[:0]
	for i, x := range ds {
		if i == 0 || x != ds[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// maxNeeded bounds how many signed digests one decision resolves.
const maxNeeded = 256

// eachNewSignedDigest calls fn with each digest signed under tv that seen
// does not hold yet, adding it to seen, while seen holds fewer than
// maxNeeded: the bounded walk of a repository's signed digests that
// Needed and a digest-only decision's content lookups share.
func eachNewSignedDigest(tv TagView, seen map[digest.Digest]bool, fn func(digest.Digest)) {
	for i := 0; i < tv.NumSigs() && len(seen) < maxNeeded; i++ {
		if _, t := tv.Sig(i); !seen[t.Digest] {
			seen[t.Digest] = true
			fn(t.Digest)
		}
	}
}

// Needed returns the signed digests whose coverage (Facts.Covers) Decide
// may consult for these facts (for a caller that resolves content before
// deciding instead of giving Decide a Facts.Content): the digests signed for the requested tag,
// or for every tag when the reference has none, in the sources of the
// rules that can decide. It is pure, like Decide, and lets a caller do the
// content lookups (I/O) before the decision.
func Needed(p *policy.Policy, ix *Index, f Facts) []digest.Digest {
	if p == nil || ix == nil {
		return nil
	}
	ref, err := policy.ParseRef(f.Image)
	if err != nil || f.ConfigDigest == "" && f.Digest == "" && ref.Digest == "" {
		return nil
	}
	repo := p.Origin(ref.Repo)
	var rules []*policy.Rule
	if f.Subject == SubjectContainer {
		if r := p.Match(repo, f.Namespace); r != nil {
			rules = append(rules, r)
		}
	} else {
		rules = p.Candidates(repo)
	}
	seen := map[digest.Digest]bool{}
	var out []digest.Digest
	add := func(tv TagView) {
		eachNewSignedDigest(tv, seen, func(d digest.Digest) { out = append(out, d) })
	}
	for _, r := range rules {
		if r.Action != policy.ActionVerify {
			continue
		}
		rt, ok := ix.Source(r.Source).Lookup(repo)
		if !ok {
			continue
		}
		// A sigstore source signs digests, not tags: every signed digest
		// of the repository may be the one the facts match.
		if ref.Tag != "" && ix.Source(r.Source).Kind != policy.KindSigstore {
			if tv, ok := rt.Tag(ref.Tag); ok {
				add(tv)
			}
			continue
		}
		for i := 0; i < rt.NumTags() && len(seen) < maxNeeded; i++ {
			add(rt.TagAt(i))
		}
	}
	return SortDigests(out)
}
