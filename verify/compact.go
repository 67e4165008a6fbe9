package verify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Trust is the verified trust data of a set of repositories in the form
// decisions read: compact, immutable and safe for concurrent readers.
//
// Every string (repository names, tags, roles, digests, problems) lives
// in one arena string, and every table is a slice of pointer-free
// structs, so 100,000 signed tags cost the garbage collector a handful of
// pointers and a few megabytes, and lookups return substrings of the
// arena: a decision reads it without allocating. Repositories are sorted
// by name, each repository's tags by tag, each tag's signatures in
// resolution order (Repo.RolesInOrder), so lookups are binary searches and
// listings need no sort.
//
// A Trust is built from verified Repo values (NewTrust) or decoded from
// its binary form (DecodeTrust, which validates every offset so that a
// damaged file is an error, never a panic or a wrong answer).
type Trust struct {
	arena    string
	repos    []cRepo
	tags     []cTag
	sigs     []cSig
	problems []span
	// denied lists the refused tags (Repo.Denied) of every repository,
	// repository after repository, each repository's sorted by tag.
	denied []cDeny
	// roles are the distinct role names, sorted; a signature refers to
	// its role by index, and Signer returns a one-element sub-slice.
	roles     []string
	roleSpans []span
	// byDigest lists, sorted by digest, every (digest, tag) pair a
	// signature binds: a lookup by digest without scanning every tag.
	byDigest []cDig
}

type span struct{ off, n uint32 }

type cRepo struct {
	name         span
	tag0, ntags  uint32
	prob0, nprob uint32
	den0, nden   uint32
	expires      stamp
	fresh        stamp
	expRole      span
	freshRole    span
}

// stamp is a time.Time as Unix seconds and nanoseconds; zeroStamp is the
// zero time.
type stamp struct {
	sec  int64
	nsec int32
}

var zeroStamp = stamp{sec: math.MinInt64}

func stampOf(t time.Time) stamp {
	if t.IsZero() {
		return zeroStamp
	}
	return stamp{t.Unix(), int32(t.Nanosecond())}
}

func (s stamp) time() time.Time {
	if s == zeroStamp {
		return time.Time{}
	}
	return time.Unix(s.sec, int64(s.nsec)).UTC()
}

type cTag struct {
	name       span
	sig0, nsig uint32
}

type cSig struct {
	role   uint32 // index into roles
	digest span
	length int64
}

type cDeny struct{ tag, reason span }

type cDig struct {
	digest span
	tag    uint32 // index into tags
}

func (t *Trust) str(s span) string { return t.arena[s.off : s.off+s.n] }

// NewTrust freezes verified repositories (keyed by normalised name) into
// a Trust. The Repo values are not kept.
func NewTrust(repos map[string]*Repo) *Trust {
	b := newTrustBuilder()
	names := make([]string, 0, len(repos))
	for n := range repos {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.addRepo(n, repos[n])
	}
	return b.finish()
}

type trustBuilder struct {
	arena    strings.Builder
	interned map[string]span
	roleIdx  map[string]uint32
	t        *Trust
}

func newTrustBuilder() *trustBuilder {
	return &trustBuilder{interned: map[string]span{}, roleIdx: map[string]uint32{}, t: &Trust{}}
}

func (b *trustBuilder) add(s string) span {
	if sp, ok := b.interned[s]; ok {
		return sp
	}
	sp := span{uint32(b.arena.Len()), uint32(len(s))}
	b.arena.WriteString(s)
	b.interned[s] = sp
	return sp
}

func (b *trustBuilder) role(name string) uint32 {
	if i, ok := b.roleIdx[name]; ok {
		return i
	}
	b.add(name)
	i := uint32(len(b.roleIdx))
	b.roleIdx[name] = i
	return i
}

func (b *trustBuilder) addRepo(name string, r *Repo) {
	t := b.t
	cr := cRepo{
		name: b.add(name), tag0: uint32(len(t.tags)), prob0: uint32(len(t.problems)), den0: uint32(len(t.denied)),
		expires: stampOf(r.Expires), fresh: stampOf(r.FreshUntil),
		expRole: b.add(r.ExpiresRole), freshRole: b.add(r.FreshRole),
	}
	for _, p := range r.Problems {
		t.problems = append(t.problems, b.add(p))
	}
	cr.nprob = uint32(len(r.Problems))
	denied := make([]string, 0, len(r.Denied))
	for tag := range r.Denied {
		if _, signed := r.Tags[tag]; !signed {
			denied = append(denied, tag)
		}
	}
	sort.Strings(denied)
	for _, tag := range denied {
		t.denied = append(t.denied, cDeny{b.add(tag), b.add(r.Denied[tag])})
	}
	cr.nden = uint32(len(denied))
	for _, tag := range r.SortedTags() {
		roles := r.RolesInOrder(tag)
		if len(roles) == 0 {
			continue
		}
		ct := cTag{name: b.add(tag), sig0: uint32(len(t.sigs)), nsig: uint32(len(roles))}
		for _, role := range roles {
			tg := r.Tags[tag][role]
			t.sigs = append(t.sigs, cSig{role: b.role(role), digest: b.add(string(tg.Digest)), length: tg.Length})
		}
		t.tags = append(t.tags, ct)
	}
	cr.ntags = uint32(len(t.tags)) - cr.tag0
	t.repos = append(t.repos, cr)
}

// finish sorts the role table (renumbering the signatures) and builds the
// digest index.
func (b *trustBuilder) finish() *Trust {
	t := b.t
	t.arena = b.arena.String()
	names := make([]string, 0, len(b.roleIdx))
	for n := range b.roleIdx {
		names = append(names, n)
	}
	sort.Strings(names)
	renum := make([]uint32, len(names))
	t.roles, t.roleSpans = make([]string, len(names)), make([]span, len(names))
	for i, n := range names {
		renum[b.roleIdx[n]] = uint32(i)
		t.roleSpans[i] = b.interned[n]
		t.roles[i] = t.str(t.roleSpans[i])
	}
	for i := range t.sigs {
		t.sigs[i].role = renum[t.sigs[i].role]
	}
	t.buildDigestIndex()
	return t
}

func (t *Trust) buildDigestIndex() {
	t.byDigest = t.byDigest[:0]
	for ti, tag := range t.tags {
		for s := tag.sig0; s < tag.sig0+tag.nsig; s++ {
			if t.firstInTag(tag, s) { // one entry per (digest, tag), however many roles signed it
				t.byDigest = append(t.byDigest, cDig{digest: t.sigs[s].digest, tag: uint32(ti)})
			}
		}
	}
	sort.Slice(t.byDigest, func(i, j int) bool {
		a, b := t.str(t.byDigest[i].digest), t.str(t.byDigest[j].digest)
		if a != b {
			return a < b
		}
		return t.byDigest[i].tag < t.byDigest[j].tag
	})
}

// firstInTag reports whether signature s of tag binds a digest that no
// earlier signature of the tag binds.
func (t *Trust) firstInTag(tag cTag, s uint32) bool {
	for p := tag.sig0; p < s; p++ {
		if t.str(t.sigs[p].digest) == t.str(t.sigs[s].digest) {
			return false
		}
	}
	return true
}

// Len returns the number of repositories.
func (t *Trust) Len() int {
	if t == nil {
		return 0
	}
	return len(t.repos)
}

// NumTags returns the number of signed tags over all repositories.
func (t *Trust) NumTags() int {
	if t == nil {
		return 0
	}
	return len(t.tags)
}

// RepoAt returns the i-th repository in name order.
func (t *Trust) RepoAt(i int) RepoView { return RepoView{t, uint32(i)} }

// Repo returns the named repository's view.
func (t *Trust) Repo(name string) (RepoView, bool) {
	if t == nil {
		return RepoView{}, false
	}
	lo, hi := 0, len(t.repos)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.str(t.repos[m].name) < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(t.repos) && t.str(t.repos[lo].name) == name {
		return RepoView{t, uint32(lo)}, true
	}
	return RepoView{}, false
}

// RepoView is one repository of a Trust. It is a small value; its methods
// do not allocate unless they say so.
type RepoView struct {
	t *Trust
	i uint32
}

func (r RepoView) c() *cRepo { return &r.t.repos[r.i] }

// Valid reports whether r refers to a repository.
func (r RepoView) Valid() bool { return r.t != nil }

// Name is the normalised repository name.
func (r RepoView) Name() string { return r.t.str(r.c().name) }

// Expires, ExpiresRole, FreshUntil and FreshRole are as in Repo.
func (r RepoView) Expires() time.Time  { return r.c().expires.time() }
func (r RepoView) ExpiresRole() string { return r.t.str(r.c().expRole) }
func (r RepoView) FreshUntil() time.Time {
	return r.c().fresh.time()
}
func (r RepoView) FreshRole() string { return r.t.str(r.c().freshRole) }

// Problems returns the non-fatal findings of the verification (allocates).
func (r RepoView) Problems() []string {
	c := r.c()
	if c.nprob == 0 {
		return nil
	}
	out := make([]string, c.nprob)
	for i := range out {
		out[i] = r.t.str(r.t.problems[c.prob0+uint32(i)])
	}
	return out
}

// NumDenied returns how many tags are refused (Repo.Denied).
func (r RepoView) NumDenied() int { return int(r.c().nden) }

// DeniedAt returns the i-th refused tag, in lexical order, and why.
func (r RepoView) DeniedAt(i int) (tag, reason string) {
	d := &r.t.denied[r.c().den0+uint32(i)]
	return r.t.str(d.tag), r.t.str(d.reason)
}

// Denied returns why tag is refused, if it is (Repo.Denied).
func (r RepoView) Denied(tag string) (string, bool) {
	c := r.c()
	ds := r.t.denied[c.den0 : c.den0+c.nden]
	i := sort.Search(len(ds), func(i int) bool { return r.t.str(ds[i].tag) >= tag })
	if i < len(ds) && r.t.str(ds[i].tag) == tag {
		return r.t.str(ds[i].reason), true
	}
	return "", false
}

// NumTags returns how many tags are signed.
func (r RepoView) NumTags() int { return int(r.c().ntags) }

// TagAt returns the i-th signed tag in lexical order.
func (r RepoView) TagAt(i int) TagView { return TagView{r.t, r.c().tag0 + uint32(i)} }

// Tag returns the signed tag named tag.
func (r RepoView) Tag(tag string) (TagView, bool) {
	c := r.c()
	lo, hi := int(c.tag0), int(c.tag0+c.ntags)
	end := hi
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.t.str(r.t.tags[m].name) < tag {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < end && r.t.str(r.t.tags[lo].name) == tag {
		return TagView{r.t, uint32(lo)}, true
	}
	return TagView{}, false
}

// TagsSignedAs calls fn, in tag order, for each tag of r that some role
// signed as d, until fn returns false. It does not scan every tag.
func (r RepoView) TagsSignedAs(d digest.Digest, fn func(TagView) bool) {
	t, c := r.t, r.c()
	s := string(d)
	lo := sort.Search(len(t.byDigest), func(i int) bool { return t.str(t.byDigest[i].digest) >= s })
	for i := lo; i < len(t.byDigest) && t.str(t.byDigest[i].digest) == s; i++ {
		ti := t.byDigest[i].tag
		if ti >= c.tag0 && ti < c.tag0+c.ntags && !fn(TagView{t, ti}) {
			return
		}
	}
}

// Targets yields what every signature of the repository binds, tag by tag
// in lexical order, each tag's in resolution order (no allocation).
func (r RepoView) Targets() iter.Seq[Target] {
	return func(yield func(Target) bool) {
		c := r.c()
		for _, tg := range r.t.tags[c.tag0 : c.tag0+c.ntags] {
			for _, s := range r.t.sigs[tg.sig0 : tg.sig0+tg.nsig] {
				if !yield(Target{Digest: digest.Digest(r.t.str(s.digest)), Length: s.length}) {
					return
				}
			}
		}
	}
}

// Materialize returns the repository as a Repo (allocates; for tools and
// tests, not for decisions).
func (r RepoView) Materialize(source string) *Repo {
	c := r.c()
	out := &Repo{
		Source: source, Name: r.Name(),
		Tags: make(map[string]RoleTargets, c.ntags), Order: make(map[string][]string, c.ntags),
		Expires: r.Expires(), ExpiresRole: r.ExpiresRole(), FreshUntil: r.FreshUntil(), FreshRole: r.FreshRole(),
		Problems: r.Problems(),
	}
	for i := 0; i < r.NumTags(); i++ {
		tv := r.TagAt(i)
		rt := make(RoleTargets, tv.NumSigs())
		order := make([]string, tv.NumSigs())
		for j := range order {
			role, tg := tv.Sig(j)
			rt[role] = tg
			order[j] = role
		}
		out.Tags[tv.Name()] = rt
		out.Order[tv.Name()] = order
	}
	for i := 0; i < r.NumDenied(); i++ {
		tag, why := r.DeniedAt(i)
		out.deny(tag, why)
	}
	return out
}

// TagView is one signed tag of a repository.
type TagView struct {
	t *Trust
	i uint32
}

func (tv TagView) c() *cTag { return &tv.t.tags[tv.i] }

// Name is the tag.
func (tv TagView) Name() string { return tv.t.str(tv.c().name) }

// NumSigs returns how many roles signed the tag.
func (tv TagView) NumSigs() int { return int(tv.c().nsig) }

// Sig returns the i-th role that signed the tag, in resolution order, and
// what it signed.
func (tv TagView) Sig(i int) (string, Target) {
	s := &tv.t.sigs[tv.c().sig0+uint32(i)]
	return tv.t.roles[s.role], Target{Digest: digest.Digest(tv.t.str(s.digest)), Length: s.length}
}

// Signer returns the i-th signing role as a one-element slice shared with
// the Trust (no allocation): callers must not modify it. Its capacity is
// one, so an append copies.
func (tv TagView) Signer(i int) []string {
	r := tv.t.sigs[tv.c().sig0+uint32(i)].role
	return tv.t.roles[r : r+1 : r+1]
}

// Find returns the index of role among the tag's signatures, or -1.
func (tv TagView) Find(role string) int {
	c := tv.c()
	for i := uint32(0); i < c.nsig; i++ {
		if tv.t.roles[tv.t.sigs[c.sig0+i].role] == role {
			return int(i)
		}
	}
	return -1
}

// Roles returns the signing roles in resolution order (allocates).
func (tv TagView) Roles() []string {
	out := make([]string, tv.NumSigs())
	for i := range out {
		out[i], _ = tv.Sig(i)
	}
	return out
}

// Binary form: a header, then the arena and the tables, little-endian.
const (
	trustMagic   = "trustd-trust\n"
	trustVersion = 2
	maxTrustSize = 1 << 31
)

// ErrCorruptTrust is matched by every error DecodeTrust returns for a
// malformed encoding.
var ErrCorruptTrust = errors.New("malformed trust index")

// AppendBinary appends the binary form of t to b.
func (t *Trust) AppendBinary(b []byte) ([]byte, error) {
	if len(t.arena) >= maxTrustSize {
		return nil, fmt.Errorf("trust index too large")
	}
	le := binary.LittleEndian
	u32 := func(v uint32) { b = le.AppendUint32(b, v) }
	i64 := func(v int64) { b = le.AppendUint64(b, uint64(v)) }
	sp := func(s span) { u32(s.off); u32(s.n) }
	st := func(s stamp) { i64(s.sec); u32(uint32(s.nsec)) }
	b = append(b, trustMagic...)
	u32(trustVersion)
	u32(uint32(len(t.arena)))
	u32(uint32(len(t.roles)))
	u32(uint32(len(t.repos)))
	u32(uint32(len(t.tags)))
	u32(uint32(len(t.sigs)))
	u32(uint32(len(t.problems)))
	u32(uint32(len(t.byDigest)))
	u32(uint32(len(t.denied)))
	b = append(b, t.arena...)
	for _, r := range t.roleSpans {
		sp(r)
	}
	for _, r := range t.repos {
		sp(r.name)
		u32(r.tag0)
		u32(r.ntags)
		u32(r.prob0)
		u32(r.nprob)
		u32(r.den0)
		u32(r.nden)
		st(r.expires)
		st(r.fresh)
		sp(r.expRole)
		sp(r.freshRole)
	}
	for _, tg := range t.tags {
		sp(tg.name)
		u32(tg.sig0)
		u32(tg.nsig)
	}
	for _, s := range t.sigs {
		u32(s.role)
		sp(s.digest)
		i64(s.length)
	}
	for _, p := range t.problems {
		sp(p)
	}
	for _, d := range t.byDigest {
		sp(d.digest)
		u32(d.tag)
	}
	for _, d := range t.denied {
		sp(d.tag)
		sp(d.reason)
	}
	return b, nil
}

// maxSigsPerTag bounds the roles that sign one tag in a decoded Trust
// (the checks below are quadratic in it). NewTrust never writes more: a
// tag's signatures are distinct roles, and the verifiers accept at most
// 16,384 delegated roles (TUF) or 4096 (Notary).
const maxSigsPerTag = 1 << 15

// Sizes of the encoded records.
const (
	spanSize  = 8
	stampSize = 12
	repoSize  = spanSize + 24 + 2*stampSize + 2*spanSize
	tagSize   = spanSize + 8
	sigSize   = 4 + spanSize + 8
	digSize   = spanSize + 4
	denySize  = 2 * spanSize
)

// DecodeTrust reads the binary form written by AppendBinary and checks it
// whole: every offset in bounds, repositories and tags sorted and
// distinct, every tag's signatures within its repository's range, the
// digest index consistent. A malformed input is an error wrapping
// ErrCorruptTrust.
func DecodeTrust(b []byte) (*Trust, error) {
	bad := func(f string, a ...any) (*Trust, error) {
		return nil, fmt.Errorf("%w: %s", ErrCorruptTrust, fmt.Sprintf(f, a...))
	}
	if len(b) < len(trustMagic)+9*4 || string(b[:len(trustMagic)]) != trustMagic {
		return bad("not a trust index")
	}
	le := binary.LittleEndian
	b = b[len(trustMagic):]
	u32 := func() uint32 { v := le.Uint32(b); b = b[4:]; return v }
	if v := u32(); v != trustVersion {
		return bad("format %d, want %d", v, trustVersion)
	}
	var n [8]uint64
	for i := range n {
		n[i] = uint64(u32())
	}
	nArena, nRoles, nRepos, nTags, nSigs, nProb, nDig, nDeny := n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]
	want := nArena + nRoles*spanSize + nRepos*repoSize + nTags*tagSize + nSigs*sigSize + nProb*spanSize + nDig*digSize + nDeny*denySize
	if uint64(len(b)) != want {
		return bad("%d bytes of tables, want %d", len(b), want)
	}
	t := &Trust{arena: string(b[:nArena])}
	b = b[nArena:]
	i64 := func() int64 { v := int64(le.Uint64(b)); b = b[8:]; return v }
	var err error
	sp := func() span {
		s := span{u32(), u32()}
		if uint64(s.off)+uint64(s.n) > nArena && err == nil {
			err = fmt.Errorf("%w: string out of bounds", ErrCorruptTrust)
		}
		return s
	}
	st := func() stamp { return stamp{i64(), int32(u32())} }
	t.roles, t.roleSpans = make([]string, nRoles), make([]span, nRoles)
	for i := range t.roles {
		s := sp()
		if err != nil {
			return nil, err
		}
		t.roles[i], t.roleSpans[i] = t.str(s), s
		if i > 0 && t.roles[i-1] >= t.roles[i] {
			return bad("roles not sorted")
		}
	}
	t.repos = make([]cRepo, nRepos)
	for i := range t.repos {
		t.repos[i] = cRepo{name: sp(), tag0: u32(), ntags: u32(), prob0: u32(), nprob: u32(), den0: u32(), nden: u32(), expires: st(), fresh: st(), expRole: sp(), freshRole: sp()}
	}
	t.tags = make([]cTag, nTags)
	for i := range t.tags {
		t.tags[i] = cTag{name: sp(), sig0: u32(), nsig: u32()}
	}
	t.sigs = make([]cSig, nSigs)
	for i := range t.sigs {
		t.sigs[i] = cSig{role: u32(), digest: sp(), length: i64()}
	}
	t.problems = make([]span, nProb)
	for i := range t.problems {
		t.problems[i] = sp()
	}
	t.byDigest = make([]cDig, nDig)
	for i := range t.byDigest {
		t.byDigest[i] = cDig{digest: sp(), tag: u32()}
	}
	t.denied = make([]cDeny, nDeny)
	for i := range t.denied {
		t.denied[i] = cDeny{tag: sp(), reason: sp()}
	}
	if err != nil {
		return nil, err
	}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptTrust, err)
	}
	return t, nil
}

// check verifies the invariants lookups rely on.
func (t *Trust) check() error {
	var next, nextDeny uint32 // tags and denials are laid out repository after repository
	for i, r := range t.repos {
		if r.den0 != nextDeny || uint64(r.den0)+uint64(r.nden) > uint64(len(t.denied)) {
			return fmt.Errorf("repository %d: denied tags out of range", i)
		}
		nextDeny = r.den0 + r.nden
		for j := r.den0; j < r.den0+r.nden; j++ {
			if j > r.den0 && t.str(t.denied[j-1].tag) >= t.str(t.denied[j].tag) {
				return fmt.Errorf("repository %d: denied tag %d out of order", i, j)
			}
		}
		if i > 0 && t.str(t.repos[i-1].name) >= t.str(r.name) {
			return fmt.Errorf("repository %d out of order", i)
		}
		if r.tag0 != next || uint64(r.tag0)+uint64(r.ntags) > uint64(len(t.tags)) {
			return fmt.Errorf("repository %d: tags out of range", i)
		}
		next = r.tag0 + r.ntags
		if uint64(r.prob0)+uint64(r.nprob) > uint64(len(t.problems)) {
			return fmt.Errorf("repository %d: problems out of range", i)
		}
		if r.expires != zeroStamp && (r.expires.nsec < 0 || r.expires.nsec >= 1e9) || r.fresh != zeroStamp && (r.fresh.nsec < 0 || r.fresh.nsec >= 1e9) {
			return fmt.Errorf("repository %d: bad time", i)
		}
		for j := r.tag0; j < r.tag0+r.ntags; j++ {
			if j > r.tag0 && t.str(t.tags[j-1].name) >= t.str(t.tags[j].name) {
				return fmt.Errorf("repository %d: tag %d out of order", i, j)
			}
		}
	}
	if nextDeny != uint32(len(t.denied)) {
		return errors.New("denied tags outside every repository")
	}
	if next != uint32(len(t.tags)) {
		return errors.New("tags outside every repository")
	}
	var sig uint32
	for j, tg := range t.tags {
		if tg.nsig == 0 || tg.nsig > maxSigsPerTag || tg.sig0 != sig || uint64(tg.sig0)+uint64(tg.nsig) > uint64(len(t.sigs)) {
			return fmt.Errorf("tag %d: signatures out of range", j)
		}
		sig = tg.sig0 + tg.nsig
	}
	if sig != uint32(len(t.sigs)) {
		return errors.New("signatures outside every tag")
	}
	for k, s := range t.sigs {
		if uint64(s.role) >= uint64(len(t.roles)) {
			return fmt.Errorf("signature %d: unknown role", k)
		}
		if !wellFormedDigest(t.str(s.digest)) {
			return fmt.Errorf("signature %d: malformed digest", k)
		}
	}
	// The digest index must list exactly the distinct (digest, tag) pairs
	// the signatures bind: sorted and distinct (so no pair twice), each
	// pair real, and as many as there are.
	pairs := 0
	for _, tg := range t.tags {
		for s := tg.sig0; s < tg.sig0+tg.nsig; s++ {
			if t.firstInTag(tg, s) {
				pairs++
			}
		}
	}
	if pairs != len(t.byDigest) {
		return errors.New("digest index incomplete")
	}
	for k, d := range t.byDigest {
		if uint64(d.tag) >= uint64(len(t.tags)) {
			return fmt.Errorf("digest entry %d: tag out of range", k)
		}
		if k > 0 {
			p := t.byDigest[k-1]
			if c := strings.Compare(t.str(p.digest), t.str(d.digest)); c > 0 || c == 0 && p.tag >= d.tag {
				return fmt.Errorf("digest entry %d out of order", k)
			}
		}
		tg, ok := t.tags[d.tag], false
		for s := tg.sig0; s < tg.sig0+tg.nsig && !ok; s++ {
			ok = t.str(t.sigs[s].digest) == t.str(d.digest)
		}
		if !ok {
			return fmt.Errorf("digest entry %d: no such signature", k)
		}
	}
	return nil
}

// wellFormedDigest is a fast check of "sha256:<64 hex>" or
// "sha512:<128 hex>" (lower-case), the digests trust data binds.
func wellFormedDigest(s string) bool {
	var hexLen int
	switch {
	case strings.HasPrefix(s, "sha256:"):
		hexLen = 64
	case strings.HasPrefix(s, "sha512:"):
		hexLen = 128
	default:
		return false
	}
	if len(s) != 7+hexLen {
		return false
	}
	for i := 7; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
