package policy

import (
	"cmp"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Mode says what trustd does with a denial.
type Mode string

// The modes. The zero Mode ("") on a Rule means "the global mode".
const (
	// ModeEnforce blocks what the policy denies.
	ModeEnforce Mode = "enforce"
	// ModeAudit logs what the policy denies and lets it run.
	ModeAudit Mode = "audit"
	// ModeOff does not check images at all.
	ModeOff Mode = "off"
)

// Action is what a rule does with the images it matches.
type Action string

// The actions.
const (
	// ActionVerify allows an image only if its source's trust data signs
	// it (see Rule.Signers and Rule.Threshold).
	ActionVerify Action = "verify"
	// ActionAllow allows the image without any check.
	ActionAllow Action = "allow"
	// ActionDeny denies the image.
	ActionDeny Action = "deny"
)

// Policy is a parsed and validated host policy file. Every field is set
// (defaults applied). A *Policy returned by Parse or Load is immutable and
// safe for concurrent use; callers must not modify it.
type Policy struct {
	File    string // the file name given to Parse, used in positions
	Version int    // always 1
	Mode    Mode   // global mode; default "enforce"
	Daemon  Daemon
	Sources []*Source // in file order
	Rules   []*Rule   // in file order; Rules[i].Index == i
	Mirrors []*Mirror // in file order

	sources map[string]*Source
	origins []*Mirror // Mirrors, longest From first
	byScore []*Rule   // Rules, highest maxScore first, then file order
	modePos Position
}

// Daemon holds the [daemon] settings, with defaults applied.
type Daemon struct {
	CacheDir            string        // default "/var/lib/trustd"
	Refresh             time.Duration // default 5m; always > 0
	OfflineGrace        time.Duration // default 0; always >= 0
	NRISocket           string        // default "/var/run/nri/nri.sock"
	ContainerdAddress   string        // default "/run/containerd/containerd.sock"
	ContainerdNamespace string        // default "k8s.io"
	ControlSocket       string        // default "/run/trustd/trustd.sock"
	MetricsAddress      string        // default "": no metrics
	// DockerAuthz: serve Docker's authorization plugin protocol on
	// DockerAuthzSocket (default false). NRISocket is "" only when this
	// is true: a Docker-only node.
	DockerAuthz       bool
	DockerAuthzSocket string   // default "/run/docker/plugins/trustd.sock"
	DockerAddress     string   // dockerd's API socket; default "/run/docker.sock"
	DockerAllow       []string // endpoint groups let through (DockerAllowGroups); default none; sorted, unique
}

// DockerAllowGroups are the Docker API endpoint groups that trustd refuses
// by default, because containers they start never pass through
// `containers/create` and `start`, and that docker_allow may let through.
var DockerAllowGroups = []string{
	"build",    // POST /build: the classic builder runs RUN steps in containers of its FROM image
	"buildkit", // POST /grpc and /session: BuildKit
	"plugins",  // managed plugins: pull, create, enable, disable, upgrade, set, remove
	"swarm",    // swarm init and join, services create and update, nodes update
}

// Default values of the [daemon] settings.
const (
	DefaultCacheDir            = "/var/lib/trustd"
	DefaultRefresh             = 5 * time.Minute
	DefaultNRISocket           = "/var/run/nri/nri.sock"
	DefaultContainerdAddress   = "/run/containerd/containerd.sock"
	DefaultContainerdNamespace = "k8s.io"
	DefaultControlSocket       = "/run/trustd/trustd.sock"
	DefaultDockerAuthzSocket   = "/run/docker/plugins/trustd.sock"
	DefaultDockerAddress       = "/run/docker.sock"
)

// Source kinds.
const (
	KindNotary = "notary" // a Notary v1 server (Docker Content Trust)
	KindTUF    = "tuf"    // a standard TUF repository
	// KindSigstore is cosign signatures kept in the registry next to the
	// images, checked with the public keys a rule names, or keyless with
	// the identities a rule names against a Sigstore trusted root (pinned
	// as trusted_root, or distributed by a TUF repository: url and root).
	KindSigstore = "sigstore"
)

// Source is a [[source]]: a server holding trust data for some
// repositories.
type Source struct {
	Pos  Position // of the [[source]] header
	Name string   // unique, matches ^[a-z0-9][a-z0-9._-]*$
	Kind string   // KindNotary, KindTUF or KindSigstore
	// URL is https, or http for a loopback host. For a sigstore source it
	// is optional: the TUF repository that distributes its trusted root
	// (with Root).
	URL string
	// Root is the initial trusted root.json of a tuf source, or of a
	// sigstore source's TUF repository (relative paths are resolved
	// against the policy file's directory); "" for notary.
	Root string
	// TrustedRoot is a sigstore source's pinned trusted_root.json (path
	// resolved like Root; "" when none, or when URL and Root distribute
	// it). Load reads it into TrustedRootData.
	TrustedRoot     string
	TrustedRootData []byte
	trustedRootPos  Position
	// Repositories are the repositories the source has trust data for
	// (never empty).
	Repositories []Pattern
	// TrustOnFirstUse: without a pin, trust the first root seen (notary
	// only; always false for tuf).
	TrustOnFirstUse bool
	// OfflineGrace overrides Daemon.OfflineGrace for this source when
	// non-nil (always >= 0).
	OfflineGrace *time.Duration
	// Pins are the [[source.pin]] tables (notary only), in file order.
	Pins []*Pin
}

// Pin is a [[source.pin]]: Docker trust pinning for some repositories.
// Exactly one of RootKeys and CA is set.
type Pin struct {
	Pos          Position // of the [[source.pin]] header
	Repositories []Pattern
	RootKeys     []string // root key IDs (64 lowercase hex digits); the root must be signed by one
	CA           string   // CA file the root certificates must chain to (relative paths resolved against the policy file's directory)
}

// Rule is a [[rule]].
type Rule struct {
	Pos        Position // of the [[rule]] header
	Index      int      // 0-based order in the file
	Images     []Pattern
	Namespaces []string // path.Match globs; default ["*"]
	Action     Action
	Source     string // the source name; set iff Action == ActionVerify
	// Signers are the roles whose signatures count. For notary sources the
	// default is ["targets/releases", "targets"]; for tuf sources nil means
	// any role that TUF delegation authorises. Always nil unless verify.
	Signers []string
	// Threshold is how many distinct signers must sign the same digest
	// (default 1; 1..len(Signers) when Signers is non-empty; 0 unless
	// verify).
	Threshold int
	// Keys are the public keys of a rule against a sigstore source (never
	// empty for one, nil otherwise), in file order and distinct. Parse
	// resolves their paths; Load reads them and then sets Signers to their
	// IDs, so that a digest is signed when Threshold distinct keys signed it.
	Keys []*Key
	// Identities are the keyless signers of a rule against a sigstore
	// source, in file order and distinct (at least one of Keys and
	// Identities for one, nil otherwise). Their IDs follow the key IDs in
	// Signers.
	Identities []*Identity
	Mode       Mode // "" = the global mode
	// Also are the [[rule.also]] tables of a verify rule: what it requires
	// of the same image from other sources, each a Rule with only Pos,
	// Index, Action (verify), Source, Signers, Threshold, Keys and
	// Identities set. An image the rule verifies must satisfy the rule's
	// own source and every one of them: for example a TUF or Notary source
	// that binds the tag to a digest, and a sigstore source whose cosign
	// signatures the digest must carry.
	Also []*Rule

	anyNS    bool    // Namespaces contains "*"
	maxScore int     // score of the most specific pattern in Images
	name     string  // String(), computed by Parse
	alone    []*Rule // {the rule}: Candidates' answer when it decides alone
}

// Mirror is a [[mirror]]: repositories under From are judged as the same
// path under To. Both are normalised (a registry host alone, or a
// normalised repository name).
type Mirror struct {
	Pos  Position // of the [[mirror]] header
	From string
	To   string
}

// Source returns the source with the given name, or nil.
func (p *Policy) Source(name string) *Source { return p.sources[name] }

// Requirements returns the rule and its Also: every source a verify rule
// requires, each with its signers (a new slice).
func (r *Rule) Requirements() []*Rule {
	return append([]*Rule{r}, r.Also...)
}

// EffectiveMode returns the rule's mode, or global if the rule has none.
func (r *Rule) EffectiveMode(global Mode) Mode {
	if r.Mode != "" {
		return r.Mode
	}
	return global
}

// String names the rule for people: "rule #N (file:line)", where N is
// 1-based (rule #1 is Rules[0]) and file is the policy file's base name.
// It does not allocate for a rule of a parsed policy.
func (r *Rule) String() string {
	if r.name != "" {
		return r.name
	}
	return r.describe()
}

func (r *Rule) describe() string {
	return "rule #" + strconv.Itoa(r.Index+1) + " (" + filepath.Base(r.Pos.File) + ":" + strconv.Itoa(r.Pos.Line) + ")"
}

// appliesTo reports whether the rule applies to pods in namespace ns ("":
// not a CRI pod, only rules for every namespace apply).
func (r *Rule) appliesTo(ns string) bool {
	if r.anyNS {
		return true
	}
	if ns == "" {
		return false
	}
	for _, pat := range r.Namespaces {
		if ok, _ := path.Match(pat, ns); ok {
			return true
		}
	}
	return false
}

// score returns the specificity of the rule for repo: that of its most
// specific matching pattern; ok is false if no pattern matches.
func (r *Rule) score(repo string) (score int, ok bool) {
	for i := range r.Images {
		im := &r.Images[i]
		if s := im.score(); (!ok || s > score) && im.match(repo) {
			score, ok = s, true
		}
	}
	return score, ok
}

// Match returns the rule that decides repo (a normalised repository name
// as ParseRef or NormalizeRepo gives it, registry host in canonical form,
// without tag or digest, after Origin) for a pod in namespace ("" when the
// image is not used by a CRI pod: only rules whose namespaces include "*"
// apply). The most specific matching rule wins: more literal path segments
// first, then more fixed characters in the segments holding a '*', then
// fewer wildcards, then the first in the file. nil means no rule
// matches, and the caller must deny. Match does not allocate.
func (p *Policy) Match(repo, namespace string) *Rule {
	return p.best(repo, namespace, false)
}

// best is Match; anyNS ignores the namespaces of the rules.
func (p *Policy) best(repo, namespace string, anyNS bool) *Rule {
	var best *Rule
	bestScore := 0
	// Rules come most specific first: once a rule cannot reach the best
	// score so far, no later one can.
	for _, r := range p.byScore {
		if best != nil && (r.maxScore < bestScore || (r.maxScore == bestScore && r.Index > best.Index)) {
			if r.maxScore < bestScore {
				break
			}
			continue
		}
		s, ok := r.score(repo)
		if !ok || !anyNS && !r.appliesTo(namespace) {
			continue
		}
		if best == nil || s > bestScore || (s == bestScore && r.Index < best.Index) {
			best, bestScore = r, s
		}
	}
	return best
}

// Candidates returns, most specific first, every rule that may decide repo
// for some namespace: the rules matching repo in Match's order, up to and
// including the first one that applies to every namespace. It is for pulls,
// where the namespace is not known. An empty result means every namespace
// is denied. The result is shared: callers must not modify it. Candidates
// does not allocate when the most specific matching rule applies to every
// namespace, as it then decides alone.
func (p *Policy) Candidates(repo string) []*Rule {
	// The first candidate is the rule Match would pick in a namespace that
	// every rule names: the most specific, then the first in the file.
	first := p.best(repo, "", true)
	if first == nil {
		return nil
	}
	if first.anyNS && first.alone != nil {
		return first.alone
	}
	return p.allCandidates(repo)
}

// allCandidates is Candidates the long way, for every case.
func (p *Policy) allCandidates(repo string) []*Rule {
	type cand struct {
		r     *Rule
		score int
	}
	var cs []cand
	for _, r := range p.Rules {
		if s, ok := r.score(repo); ok {
			cs = append(cs, cand{r, s})
		}
	}
	slices.SortStableFunc(cs, func(a, b cand) int { return cmp.Compare(b.score, a.score) })
	var out []*Rule
	for i, c := range cs {
		if shadowedNS(c.r, cs[:i], func(x cand) *Rule { return x.r }) {
			continue // every namespace it names is decided by a rule before it
		}
		out = append(out, c.r)
		if c.r.anyNS {
			break
		}
	}
	return out
}

// shadowedNS reports whether every namespace r applies to is decided by one
// of the earlier (more specific, or equally specific and earlier in the
// file) rules. It is exact for literal namespaces and "*"; a glob is
// covered only by an identical glob or "*".
func shadowedNS[T any](r *Rule, earlier []T, rule func(T) *Rule) bool {
	if len(earlier) == 0 {
		return false
	}
	for _, ns := range r.Namespaces {
		covered := false
		for _, e := range earlier {
			for _, q := range rule(e).Namespaces {
				if q == "*" || q == ns {
					covered = true
				} else if !strings.ContainsAny(ns, "*?[\\") {
					if ok, _ := path.Match(q, ns); ok {
						covered = true
					}
				}
				if covered {
					break
				}
			}
			if covered {
				break
			}
		}
		if !covered {
			return false
		}
	}
	return true
}

// Origin applies the [[mirror]] rewriting to a normalised repository name:
// when repo is a mirror's From or lies under it (From + "/..."), that prefix
// is replaced with To and the result normalised; the longest From wins.
// Otherwise, or if the result is not a valid name, repo is returned
// unchanged. Rewriting is applied once, not repeatedly. Origin does not
// allocate when no mirror applies.
func (p *Policy) Origin(repo string) string {
	for _, m := range p.origins {
		if rest, ok := strings.CutPrefix(repo, m.From); ok && (rest == "" || rest[0] == '/') {
			origin := m.To + rest
			if !strings.Contains(origin, "/") {
				return repo // a registry host alone is not a repository
			}
			n, err := normalizeRepo(origin)
			if err != nil {
				return repo
			}
			return n
		}
	}
	return repo
}

// OfflineGraceFor is how long expired timestamp or snapshot data of the
// named source may still be used while it is unreachable: the source's own
// offline_grace, else the daemon's.
func (p *Policy) OfflineGraceFor(source string) time.Duration {
	if src := p.Source(source); src != nil && src.OfflineGrace != nil {
		return *src.OfflineGrace
	}
	return p.Daemon.OfflineGrace
}
