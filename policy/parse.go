package policy

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// MaxSize is the largest policy file Parse and Load accept, in bytes.
const MaxSize = 1 << 20

// Load reads and parses the policy file at path (see Parse). Errors reading
// the file wrap the *fs.PathError and do not match ErrInvalid; errors in its
// content do, as do unreadable or invalid key files of a rule (keys), which
// Load reads and parses (see Key), and an unreadable trusted_root of a
// sigstore source, which Load reads. Load does not follow the policy's
// other paths (root, ca): it only resolves them.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	p, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	var errs Errors
	for _, read := range []func() error{p.readKeys, p.readTrustedRoots} {
		var e Errors
		if err := read(); errors.As(err, &e) {
			errs = append(errs, e...)
		} else if err != nil {
			return nil, err
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// Parse decodes and validates a policy document; file names it in
// positions and is the base for relative paths in it. It returns a
// complete, valid, immutable *Policy, or an Errors listing every problem it
// found (at least one; more when they are independent), each with a line and
// column, in file order. Parse has no side effects and reads no files.
func Parse(file string, data []byte) (*Policy, error) {
	d := newDoc(file, data)
	if len(data) > MaxSize {
		d.errAt(d.position(0), "policy file is larger than %d bytes", MaxSize)
		return nil, d.result()
	}
	if bytes.HasPrefix(data, []byte("\uFEFF")) {
		d.errAt(d.position(0), "the file starts with a byte order mark (U+FEFF): remove it")
		return nil, d.result()
	}
	d.walk()
	// A file of another version is not read against this version's schema.
	if d.hasVersion {
		if v, err := strconv.ParseInt(strings.ReplaceAll(d.version, "_", ""), 0, 64); err == nil && v != 1 {
			return nil, Errors{{Pos: d.at("version"), Msg: fmt.Sprintf("version: unsupported version %d (this trustd reads version 1)", v)}}
		}
	}
	if len(d.errs) > 0 {
		return nil, d.result()
	}
	// The walk checked structure, key names and types; go-toml decodes the
	// values and catches the rest (duplicate keys and tables, out-of-range
	// integers) and, as a second line of defence, unknown keys.
	var raw rawPolicy
	if err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&raw); err != nil {
		d.decodeError(err)
		return nil, d.result()
	}
	p := d.build(&raw)
	if len(d.errs) > 0 {
		return nil, d.result()
	}
	return p, nil
}

// result returns the errors found, in file order.
func (d *doc) result() error {
	errs := Errors(d.errs)
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
	return errs
}

func (d *doc) decodeError(err error) {
	var sme *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case errors.As(err, &sme):
		for i := range sme.Errors {
			e := &sme.Errors[i]
			line, col := e.Position()
			d.errs = append(d.errs, &Error{
				Pos: Position{File: d.file, Line: line, Col: col},
				Msg: fmt.Sprintf("unknown key %q", strings.Join(e.Key(), ".")),
				Err: e,
			})
		}
	case errors.As(err, &de):
		line, col := de.Position()
		d.errs = append(d.errs, &Error{
			Pos: Position{File: d.file, Line: line, Col: col},
			Msg: strings.TrimPrefix(de.Error(), "toml: "),
			Err: de,
		})
	default:
		d.errs = append(d.errs, &Error{Pos: d.position(0), Msg: err.Error(), Err: err})
	}
	if len(d.errs) == 0 { // a StrictMissingError without errors
		d.errAt(d.position(0), "%v", err)
	}
}

// build validates the decoded document and returns the policy.
func (d *doc) build(raw *rawPolicy) *Policy {
	p := &Policy{
		File:    d.file,
		Version: 1,
		Mode:    ModeEnforce,
		sources: map[string]*Source{},
		modePos: d.at("mode"),
	}
	switch {
	case raw.Version == nil:
		d.errAt(d.position(0), "missing required key %q", "version")
	case *raw.Version != 1:
		d.errf("version", "version: unsupported version %d (this trustd reads version 1)", *raw.Version)
	}
	if raw.Mode != nil {
		p.Mode = d.mode("mode", "mode", *raw.Mode)
	}
	d.daemon(&p.Daemon, raw.Daemon)
	for i := range raw.Source {
		if s := d.source(p, &raw.Source[i], index("source", i)); s != nil {
			p.Sources = append(p.Sources, s)
		}
	}
	for i := range raw.Rule {
		r := d.rule(p, &raw.Rule[i], i)
		for j := range r.Images {
			if s := r.Images[j].score(); j == 0 || s > r.maxScore {
				r.maxScore = s
			}
		}
		r.name = r.describe()
		for j, a := range r.Also {
			a.name = fmt.Sprintf("%s, also #%d", r.name, j+1)
		}
		r.alone = []*Rule{r}
		p.Rules = append(p.Rules, r)
	}
	p.byScore = slices.Clone(p.Rules)
	slices.SortStableFunc(p.byScore, func(a, b *Rule) int { return cmp.Compare(b.maxScore, a.maxScore) })
	d.mirrors(p, raw.Mirror)
	return p
}

func (d *doc) mode(path, dotted, s string) Mode {
	switch m := Mode(s); m {
	case ModeEnforce, ModeAudit, ModeOff:
		return m
	}
	d.errf(path, "%s: unknown mode %q (want %q, %q or %q)", dotted, s, ModeEnforce, ModeAudit, ModeOff)
	return ""
}

func (d *doc) missing(tablePath, table, key string) {
	d.errf(tablePath, "%s: missing required key %q", table, key)
}

// duration parses a duration value; it must not be negative.
func (d *doc) duration(path string, s durationString) (time.Duration, bool) {
	v, err := time.ParseDuration(string(s))
	if err != nil {
		d.errf(path, "%s: invalid duration %q (examples: \"30s\", \"5m\", \"1h30m\")", dotted(path), s)
		return 0, false
	}
	if v < 0 {
		d.errf(path, "%s: must not be negative", dotted(path))
		return 0, false
	}
	return v, true
}

// dotted turns a path ("rule[2].images[1]") into the name of its key
// ("rule.images").
func dotted(path string) string {
	var b strings.Builder
	skip := false
	for _, c := range path {
		switch {
		case c == '[':
			skip = true
		case c == ']':
			skip = false
		case !skip:
			b.WriteRune(c)
		}
	}
	return b.String()
}

func (d *doc) absPath(path string, v *string, dst *string) {
	if v == nil {
		return
	}
	switch {
	case *v == "":
		d.errf(path, "%s: must not be empty", dotted(path))
	case !filepath.IsAbs(strings.TrimPrefix(*v, "unix://")) ||
		(strings.HasPrefix(*v, "unix://") && path != "daemon.containerd_address" && path != "daemon.docker_address"):
		d.errf(path, "%s: must be an absolute path, not %q", dotted(path), *v)
	default:
		*dst = *v
	}
}

func (d *doc) daemon(dm *Daemon, raw *rawDaemon) {
	*dm = Daemon{
		CacheDir:            DefaultCacheDir,
		Refresh:             DefaultRefresh,
		NRISocket:           DefaultNRISocket,
		ContainerdAddress:   DefaultContainerdAddress,
		ContainerdNamespace: DefaultContainerdNamespace,
		ControlSocket:       DefaultControlSocket,
		DockerAuthzSocket:   DefaultDockerAuthzSocket,
		DockerAddress:       DefaultDockerAddress,
	}
	if raw == nil {
		return
	}
	d.absPath("daemon.cache_dir", raw.CacheDir, &dm.CacheDir)
	if raw.NRISocket != nil && *raw.NRISocket == "" {
		dm.NRISocket = "" // no NRI: a Docker-only node (checked below)
	} else {
		d.absPath("daemon.nri_socket", raw.NRISocket, &dm.NRISocket)
	}
	d.absPath("daemon.containerd_address", raw.ContainerdAddress, &dm.ContainerdAddress)
	d.absPath("daemon.control_socket", raw.ControlSocket, &dm.ControlSocket)
	if raw.Refresh != nil {
		if v, ok := d.duration("daemon.refresh", *raw.Refresh); ok {
			if v == 0 {
				d.errf("daemon.refresh", "daemon.refresh: must be positive")
			}
			dm.Refresh = v
		}
	}
	if raw.OfflineGrace != nil {
		dm.OfflineGrace, _ = d.duration("daemon.offline_grace", *raw.OfflineGrace)
	}
	if raw.ContainerdNamespace != nil {
		if ns := *raw.ContainerdNamespace; !containerdNamespaceRE.MatchString(ns) || len(ns) > 76 {
			d.errf("daemon.containerd_namespace", "daemon.containerd_namespace: invalid namespace %q", ns)
		} else {
			dm.ContainerdNamespace = ns
		}
	}
	if raw.MetricsAddress != nil {
		if a := *raw.MetricsAddress; a != "" && !validHostPort(a) {
			d.errf("daemon.metrics_address", "daemon.metrics_address: invalid address %q (want host:port, e.g. \"127.0.0.1:9109\")", a)
		} else {
			dm.MetricsAddress = a
		}
	}
	d.docker(dm, raw)
}

// docker reads the Docker authorization plugin's settings.
func (d *doc) docker(dm *Daemon, raw *rawDaemon) {
	if raw.DockerAuthz != nil {
		dm.DockerAuthz = *raw.DockerAuthz
	}
	d.absPath("daemon.docker_authz_socket", raw.DockerAuthzSocket, &dm.DockerAuthzSocket)
	d.absPath("daemon.docker_address", raw.DockerAddress, &dm.DockerAddress)
	if raw.DockerAllow != nil {
		for j, g := range *raw.DockerAllow {
			switch {
			case !slices.Contains(DockerAllowGroups, g):
				d.errf(index("daemon.docker_allow", j), "daemon.docker_allow: unknown endpoint group %q (known: %s)", g, strings.Join(DockerAllowGroups, ", "))
			case slices.Contains(dm.DockerAllow, g):
				d.errf(index("daemon.docker_allow", j), "daemon.docker_allow: %q is listed twice", g)
			default:
				dm.DockerAllow = append(dm.DockerAllow, g)
			}
		}
		slices.Sort(dm.DockerAllow)
	}
	if dm.NRISocket == "" && !dm.DockerAuthz {
		d.errf("daemon.nri_socket", "daemon.nri_socket: empty (no NRI) while docker_authz is off: trustd would enforce nothing on this node (set docker_authz = true for a Docker-only node)")
	}
}

// containerdNamespaceRE is containerd's identifier syntax (pkg/identifiers).
var containerdNamespaceRE = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

func validHostPort(a string) bool {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	_, err = strconv.ParseUint(port, 10, 16)
	return err == nil
}

var (
	sourceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	rootKeyIDRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// patterns compiles a required list of repository patterns.
func (d *doc) patterns(tablePath, table, key string, list *[]string) []Pattern {
	path := tablePath + "." + key
	if list == nil {
		d.missing(tablePath, table, key)
		return nil
	}
	if len(*list) == 0 {
		d.errf(path, "%s.%s: must not be empty", table, key)
		return nil
	}
	out := make([]Pattern, 0, len(*list))
	for i, s := range *list {
		ep := index(path, i)
		pat, err := ParsePattern(s)
		if err != nil {
			d.errf(ep, "%s.%s: invalid pattern %q: %v", table, key, s, err)
			continue
		}
		pat.pos = d.at(ep)
		out = append(out, pat)
	}
	return out
}

// resolve makes a relative path relative to the policy file's directory.
func (d *doc) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(filepath.Dir(d.file), p)
}

func (d *doc) source(p *Policy, rs *rawSource, sp string) *Source {
	s := &Source{Pos: d.at(sp)}
	if rs.Name == nil {
		d.missing(sp, "source", "name")
	} else if s.Name = *rs.Name; p.sources[s.Name] != nil {
		d.errf(sp+".name", "source.name: duplicate source name %q (first defined at %s)", s.Name, p.sources[s.Name].Pos)
	} else {
		// Registered even when invalid, so that rules naming it do not
		// also report an unknown source.
		p.sources[s.Name] = s
		if !sourceNameRE.MatchString(s.Name) {
			d.errf(sp+".name", "source.name: invalid name %q (want lowercase letters, digits, '.', '_' or '-', starting with a letter or digit)", s.Name)
		}
	}
	if rs.Kind == nil {
		d.missing(sp, "source", "kind")
	} else if s.Kind = *rs.Kind; s.Kind != KindNotary && s.Kind != KindTUF && s.Kind != KindSigstore {
		d.errf(sp+".kind", "source.kind: unknown kind %q (want %q, %q or %q)", s.Kind, KindNotary, KindTUF, KindSigstore)
	}
	if s.Kind == KindSigstore {
		// The signatures are in the registries, the keys and identities
		// in the rules; a trusted root for keyless signatures is pinned
		// (trusted_root) or distributed by a TUF repository (url, root).
		for _, k := range []struct {
			key string
			set bool
		}{{"trust_on_first_use", rs.TrustOnFirstUse != nil}, {"pin", len(rs.Pin) > 0}} {
			if k.set {
				d.errf(sp+"."+k.key, "source.%s: not valid for kind %q", k.key, KindSigstore)
			}
		}
		d.sigstoreRoot(s, rs, sp)
		s.Repositories = d.patterns(sp, "source", "repositories", rs.Repositories)
		if rs.OfflineGrace != nil {
			d.errf(sp+".offline_grace", "source.offline_grace: not valid for kind %q (signatures do not expire)", KindSigstore)
		}
		return s
	}
	if rs.TrustedRoot != nil {
		d.errf(sp+".trusted_root", "source.trusted_root: only valid for kind %q", KindSigstore)
	}
	if rs.URL == nil {
		d.missing(sp, "source", "url")
	} else if msg := checkURL(*rs.URL); msg != "" {
		d.errf(sp+".url", "source.url: %s", msg)
	} else {
		s.URL = *rs.URL
	}
	switch {
	case s.Kind == KindTUF && rs.Root == nil:
		d.errf(sp, "source: missing required key %q (a tuf source starts from its initial root.json)", "root")
	case s.Kind == KindNotary && rs.Root != nil:
		d.errf(sp+".root", "source.root: only valid for kind %q", KindTUF)
	case rs.Root != nil && *rs.Root == "":
		d.errf(sp+".root", "source.root: must not be empty")
	case rs.Root != nil:
		s.Root = d.resolve(*rs.Root)
	}
	s.Repositories = d.patterns(sp, "source", "repositories", rs.Repositories)
	if rs.TrustOnFirstUse != nil {
		if *rs.TrustOnFirstUse && s.Kind == KindTUF {
			d.errf(sp+".trust_on_first_use", "source.trust_on_first_use: only valid for kind %q (a tuf source starts from its root)", KindNotary)
		}
		s.TrustOnFirstUse = *rs.TrustOnFirstUse
	}
	if rs.OfflineGrace != nil {
		if v, ok := d.duration(sp+".offline_grace", *rs.OfflineGrace); ok {
			s.OfflineGrace = &v
		}
	}
	for j := range rs.Pin {
		pp := index(sp+".pin", j)
		if s.Kind == KindTUF {
			d.errf(pp, "source.pin: only valid for kind %q", KindNotary)
			continue
		}
		s.Pins = append(s.Pins, d.pin(&rs.Pin[j], pp))
	}
	return s
}

// sigstoreRoot reads a sigstore source's trust root settings: none (keyed
// verification only), trusted_root, or url and root.
func (d *doc) sigstoreRoot(s *Source, rs *rawSource, sp string) {
	switch {
	case rs.TrustedRoot != nil && (rs.URL != nil || rs.Root != nil):
		d.errf(sp+".trusted_root", "source.trusted_root: set either trusted_root (a pinned trusted_root.json) or url and root (a TUF repository distributing it), not both")
	case rs.TrustedRoot != nil && *rs.TrustedRoot == "":
		d.errf(sp+".trusted_root", "source.trusted_root: must not be empty")
	case rs.TrustedRoot != nil:
		s.TrustedRoot = d.resolve(*rs.TrustedRoot)
		s.trustedRootPos = d.at(sp + ".trusted_root")
	case rs.URL == nil && rs.Root != nil:
		d.errf(sp, "source: missing required key %q (the TUF repository that distributes the trusted root named by root)", "url")
	case rs.URL != nil && rs.Root == nil:
		d.errf(sp, "source: missing required key %q (the initial root.json of the TUF repository at url)", "root")
	case rs.URL != nil:
		if msg := checkURL(*rs.URL); msg != "" {
			d.errf(sp+".url", "source.url: %s", msg)
		} else {
			s.URL = *rs.URL
		}
		if *rs.Root == "" {
			d.errf(sp+".root", "source.root: must not be empty")
		} else {
			s.Root = d.resolve(*rs.Root)
		}
	}
}

func (d *doc) pin(rp *rawPin, pp string) *Pin {
	pin := &Pin{Pos: d.at(pp)}
	pin.Repositories = d.patterns(pp, "source.pin", "repositories", rp.Repositories)
	switch {
	case rp.RootKeys != nil && rp.CA != nil:
		d.errf(pp, "source.pin: set either %q or %q, not both", "root_keys", "ca")
	case rp.RootKeys == nil && rp.CA == nil:
		d.errf(pp, "source.pin: missing required key %q or %q", "root_keys", "ca")
	case rp.RootKeys != nil:
		if len(*rp.RootKeys) == 0 {
			d.errf(pp+".root_keys", "source.pin.root_keys: must not be empty")
		}
		seen := map[string]bool{}
		for i, k := range *rp.RootKeys {
			ep := index(pp+".root_keys", i)
			switch {
			case !rootKeyIDRE.MatchString(k):
				d.errf(ep, "source.pin.root_keys: invalid root key ID %q (want 64 lowercase hex digits)", k)
			case seen[k]:
				d.errf(ep, "source.pin.root_keys: duplicate root key ID %q", k)
			default:
				seen[k] = true
				pin.RootKeys = append(pin.RootKeys, k)
			}
		}
	default:
		if *rp.CA == "" {
			d.errf(pp+".ca", "source.pin.ca: must not be empty")
		} else {
			pin.CA = d.resolve(*rp.CA)
		}
	}
	return pin
}

// checkURL returns what is wrong with a source URL, or "".
func checkURL(s string) string {
	if s == "" {
		return "must not be empty"
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Sprintf("invalid URL %q: %v", s, err)
	}
	switch {
	case u.Scheme == "" || u.Opaque != "":
		return fmt.Sprintf("%q is not an absolute URL (want https://host/...)", s)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Sprintf("scheme %q is not allowed (want https, or http for a loopback host)", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("missing host in %q", s)
	case u.User != nil:
		return "must not contain credentials"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return "must not contain a query or fragment"
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return fmt.Sprintf("http is only allowed for loopback hosts, not %q (use https)", u.Hostname())
	}
	if port := u.Port(); port != "" {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Sprintf("invalid port %q", port)
		}
	}
	return ""
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (d *doc) rule(p *Policy, rr *rawRule, i int) *Rule {
	rp := index("rule", i)
	r := &Rule{Pos: d.at(rp), Index: i}
	r.Images = d.patterns(rp, "rule", "images", rr.Images)
	if rr.Namespaces == nil {
		r.Namespaces = []string{"*"}
		r.anyNS = true
	} else if len(*rr.Namespaces) == 0 {
		d.errf(rp+".namespaces", "rule.namespaces: must not be empty (omit it for every namespace)")
	} else {
		for j, ns := range *rr.Namespaces {
			if msg := checkNamespace(ns); msg != "" {
				d.errf(index(rp+".namespaces", j), "rule.namespaces: invalid namespace pattern %q: %s", ns, msg)
				continue
			}
			r.Namespaces = append(r.Namespaces, ns)
			if ns == "*" {
				r.anyNS = true
			}
		}
	}
	if rr.Action == nil {
		d.missing(rp, "rule", "action")
	} else {
		switch a := Action(*rr.Action); a {
		case ActionVerify, ActionAllow, ActionDeny:
			r.Action = a
		default:
			d.errf(rp+".action", "rule.action: unknown action %q (want %q, %q or %q)", *rr.Action, ActionVerify, ActionAllow, ActionDeny)
		}
	}
	if rr.Mode != nil {
		r.Mode = d.mode(rp+".mode", "rule.mode", *rr.Mode)
	}
	if r.Action != ActionVerify {
		if r.Action == "" {
			return r // unknown action: the rest cannot be judged
		}
		for _, k := range []struct {
			key string
			set bool
		}{{"source", rr.Source != nil}, {"signers", rr.Signers != nil}, {"threshold", rr.Threshold != nil}, {"keys", rr.Keys != nil}, {"identities", rr.Identities != nil}, {"also", len(rr.Also) > 0}} {
			if k.set {
				d.errf(rp+"."+k.key, "rule.%s: only valid with action %q", k.key, ActionVerify)
			}
		}
		return r
	}
	d.requirement(p, r, rp, rawAlso{Source: rr.Source, Signers: rr.Signers, Threshold: rr.Threshold, Keys: rr.Keys, Identities: rr.Identities})
	d.also(p, r, rp, rr.Also)
	return r
}

// maxAlso bounds the [[rule.also]] tables of one rule.
const maxAlso = 4

// also parses a verify rule's [[rule.also]] tables: each a requirement of
// another source, on the same image.
func (d *doc) also(p *Policy, r *Rule, rp string, list []rawAlso) {
	if len(list) > maxAlso {
		d.errf(index(rp+".also", maxAlso), "rule.also: at most %d per rule", maxAlso)
		return
	}
	seen := map[string]bool{r.Source: true}
	for j := range list {
		ap := index(rp+".also", j)
		a := &Rule{Pos: d.at(ap), Index: r.Index, Action: ActionVerify}
		n := len(d.errs)
		d.requirement(p, a, ap, list[j])
		for _, e := range d.errs[n:] {
			// The checks are the rule's: name the table they are about.
			if rest, ok := strings.CutPrefix(e.Msg, "rule"); ok && (strings.HasPrefix(rest, ".") || strings.HasPrefix(rest, ":")) {
				e.Msg = "rule.also" + rest
			}
		}
		if a.Source != "" && seen[a.Source] {
			d.errf(ap+".source", "rule.also.source: source %q is already required by this rule (one requirement per source: use its threshold)", a.Source)
			continue
		}
		seen[a.Source] = true
		r.Also = append(r.Also, a)
	}
}

// requirement parses what a verify rule (or one of its [[rule.also]]
// tables, at path rp) requires: a source, with its signers, threshold,
// keys or identities.
func (d *doc) requirement(p *Policy, r *Rule, rp string, rr rawAlso) {
	var src *Source
	if rr.Source == nil {
		d.errf(rp, "rule: missing required key %q (required with action %q)", "source", ActionVerify)
	} else if r.Source = *rr.Source; p.sources[r.Source] == nil {
		d.errf(rp+".source", "rule.source: unknown source %q", r.Source)
	} else {
		src = p.sources[r.Source]
	}
	sigstore := src != nil && src.Kind == KindSigstore
	switch {
	case sigstore && rr.Signers != nil:
		d.errf(rp+".signers", "rule.signers: not valid against a %s source (the signers are the rule's keys and identities)", KindSigstore)
	case sigstore && rr.Keys == nil && rr.Identities == nil:
		d.errf(rp, "rule: missing required key %q or %q (required against a %s source: the public keys, or the keyless identities, whose signatures count)", "keys", "identities", KindSigstore)
	case sigstore:
		if rr.Keys != nil {
			d.ruleKeys(r, rp, *rr.Keys)
		}
		if rr.Identities != nil {
			d.ruleIdentities(r, rp, *rr.Identities, src)
		}
	case rr.Keys != nil:
		d.errf(rp+".keys", "rule.keys: only valid against a %s source", KindSigstore)
	case rr.Identities != nil:
		d.errf(rp+".identities", "rule.identities: only valid against a %s source", KindSigstore)
	case rr.Signers != nil:
		d.signers(r, rp, *rr.Signers, src)
	case src != nil && src.Kind == KindNotary:
		r.Signers = []string{"targets/releases", "targets"}
	}
	nkeyed := len(r.Keys) + len(r.Identities)
	nsigners := max(len(r.Signers), nkeyed)
	r.Threshold = 1
	if rr.Threshold != nil {
		t := *rr.Threshold
		switch {
		case t < 1:
			d.errf(rp+".threshold", "rule.threshold: must be at least 1")
		case len(r.Identities) == 0 && len(r.Keys) > 0 && t > int64(len(r.Keys)):
			d.errf(rp+".threshold", "rule.threshold: %d is more than the number of keys (%d)", t, len(r.Keys))
		case nkeyed > 0 && t > int64(nkeyed):
			d.errf(rp+".threshold", "rule.threshold: %d is more than the number of keys and identities (%d)", t, nkeyed)
		case nsigners > 0 && t > int64(nsigners):
			d.errf(rp+".threshold", "rule.threshold: %d is more than the number of signers (%d)", t, len(r.Signers))
		case t > 1<<16:
			d.errf(rp+".threshold", "rule.threshold: %d is too large", t)
		default:
			r.Threshold = int(t)
		}
	}
}

func (d *doc) signers(r *Rule, rp string, list []string, src *Source) {
	if len(list) == 0 {
		d.errf(rp+".signers", "rule.signers: must not be empty (omit it for the default)")
		return
	}
	seen := map[string]bool{}
	for j, s := range list {
		ep := index(rp+".signers", j)
		switch {
		case s == "":
			d.errf(ep, "rule.signers: empty signer")
		case strings.TrimSpace(s) != s:
			d.errf(ep, "rule.signers: signer %q has leading or trailing white space", s)
		case seen[s]:
			d.errf(ep, "rule.signers: duplicate signer %q", s)
		case src != nil && src.Kind == KindNotary && s != "targets" &&
			(!strings.HasPrefix(s, "targets/") || s == "targets/" || strings.HasSuffix(s, "/")):
			d.errf(ep, "rule.signers: %q is not a Notary role (want \"targets\" or \"targets/<name>\")", s)
		default:
			seen[s] = true
		}
		r.Signers = append(r.Signers, s)
	}
}

func (d *doc) ruleKeys(r *Rule, rp string, list []string) {
	if len(list) == 0 {
		d.errf(rp+".keys", "rule.keys: must not be empty")
		return
	}
	seen := map[string]bool{}
	for j, k := range list {
		ep := index(rp+".keys", j)
		switch {
		case k == "":
			d.errf(ep, "rule.keys: empty path")
		case seen[d.resolve(k)]:
			d.errf(ep, "rule.keys: duplicate key file %q", k)
		default:
			seen[d.resolve(k)] = true
			r.Keys = append(r.Keys, &Key{Pos: d.at(ep), Path: d.resolve(k)})
		}
	}
}

// checkNamespace returns what is wrong with a namespace pattern, or "".
func checkNamespace(ns string) string {
	if ns == "" {
		return "empty pattern"
	}
	for _, c := range ns {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.ContainsRune("-*?[]^!", c)) {
			return "Kubernetes namespaces have lowercase letters, digits and '-' only (use *, ? and [...] to match several)"
		}
	}
	if strings.Contains(ns, "**") {
		return `use "*"`
	}
	if _, err := path.Match(ns, ""); err != nil {
		return "syntax error in pattern"
	}
	return ""
}

func (d *doc) mirrors(p *Policy, raw []rawMirror) {
	seen := map[string]*Mirror{}
	for i, rm := range raw {
		mp := index("mirror", i)
		m := &Mirror{Pos: d.at(mp)}
		ok := true
		for _, f := range []struct {
			key string
			v   *string
			dst *string
		}{{"from", rm.From, &m.From}, {"to", rm.To, &m.To}} {
			if f.v == nil {
				d.missing(mp, "mirror", f.key)
				ok = false
				continue
			}
			n, err := normalizePrefix(*f.v)
			if err != nil {
				d.errf(mp+"."+f.key, "mirror.%s: %v", f.key, err)
				ok = false
				continue
			}
			*f.dst = n
		}
		if !ok {
			continue
		}
		if prev := seen[m.From]; prev != nil {
			d.errf(mp+".from", "mirror.from: duplicate mirror for %q (first defined at %s)", m.From, prev.Pos)
			continue
		}
		if m.From == m.To {
			d.errf(mp+".to", "mirror.to: same as from (%q)", m.From)
			continue
		}
		seen[m.From] = m
		p.Mirrors = append(p.Mirrors, m)
	}
	p.origins = slices.Clone(p.Mirrors)
	slices.SortStableFunc(p.origins, func(a, b *Mirror) int { return cmp.Compare(len(b.From), len(a.From)) })
}
