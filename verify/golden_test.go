package verify_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

var update = flag.Bool("update", false, "rewrite the expected.json files under testdata/decide/")

// The golden scenarios of Decide live in testdata/decide/<scenario>/:
//
//	policy.toml    the host policy (parsed with policy.Load, so rules are
//	               named "rule #N (policy.toml:LINE)")
//	index.json     the verified trust data, as a goldenIndex
//	cases.json     the facts to judge, as a list of goldenCase
//	expected.json  per case, the Decision (its JSON form) and its Message()
//
// Digests may be written as aliases, `<name>` (lowercase letters, digits,
// '.', '_', '-'), anywhere in index.json and cases.json, image references
// included: an alias stands for digest.FromString(name). The same aliases
// are put back in place of those digests in expected.json, so that a person
// can review it. A literal "sha256:<64 hex>" digest is used as written.
//
// Run `go test ./verify/ -run TestDecideGolden -update` to rewrite the
// expected files, then review every change by hand: the goldens must encode
// the right behaviour, not merely the current one.

// goldenIndex is the test-only serialised form of a *verify.Index.
type goldenIndex struct {
	// Sources maps a policy source name to its trust data. A source named
	// by the policy but absent here has never been loaded.
	Sources map[string]goldenSource `json:"sources"`
}

type goldenSource struct {
	Kind string `json:"kind"` // "tuf" or "notary"
	// Error, when set, makes the source unusable (SourceIndex.Err), as when
	// its cached data failed verification.
	Error string `json:"error,omitempty"`
	// Repos maps a normalised repository name to its trust data.
	Repos map[string]goldenRepo `json:"repos,omitempty"`
	// Unreachable says the source's last syncs failed to reach it, since
	// UnreachableSince (offline grace applies only then).
	Unreachable      bool      `json:"unreachable,omitempty"`
	UnreachableSince time.Time `json:"unreachable_since,omitzero"`
}

type goldenRepo struct {
	// Tags maps tag → role → target.
	Tags map[string]map[string]verify.Target `json:"tags"`
	// Order maps a tag to its roles in resolution order (optional).
	Order       map[string][]string `json:"order,omitempty"`
	Expires     time.Time           `json:"expires,omitzero"`
	ExpiresRole string              `json:"expires_role,omitempty"`
	// FreshUntil and FreshRole: the earliest timestamp or snapshot expiry,
	// which offline_grace may extend (optional).
	FreshUntil time.Time `json:"fresh_until,omitzero"`
	FreshRole  string    `json:"fresh_role,omitempty"`
}

// goldenCase is one set of facts to judge.
type goldenCase struct {
	Name         string                            `json:"name"`
	Subject      string                            `json:"subject"` // pull | container | check
	Image        string                            `json:"image"`
	Namespace    string                            `json:"namespace,omitempty"`
	Digest       digest.Digest                     `json:"digest,omitempty"`
	ConfigDigest digest.Digest                     `json:"config_digest,omitempty"`
	Covers       map[digest.Digest][]digest.Digest `json:"covers,omitempty"`
	// Now is the decision time; default goldenNow.
	Now time.Time `json:"now,omitzero"`
}

// goldenNow is the decision time of a case that gives none.
var goldenNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// goldenResult is one entry of expected.json.
type goldenResult struct {
	Name     string          `json:"name"`
	Decision verify.Decision `json:"decision"`
	Message  string          `json:"message"`
}

var aliasRE = regexp.MustCompile(`<([a-z0-9][a-z0-9._-]*)>`)

// aliases replaces every `<name>` in data with digest.FromString(name) and
// records the digests in seen (digest → name).
func aliases(data []byte, seen map[digest.Digest]string) ([]byte, error) {
	var err error
	out := aliasRE.ReplaceAllFunc(data, func(m []byte) []byte {
		name := string(m[1 : len(m)-1])
		d := digest.FromString(name)
		if prev, ok := seen[d]; ok && prev != name {
			err = fmt.Errorf("aliases %q and %q collide", prev, name)
		}
		seen[d] = name
		return []byte(d)
	})
	return out, err
}

// unalias puts the aliases back in place of their digests.
func unalias(data []byte, seen map[digest.Digest]string) []byte {
	for _, d := range slices.Sorted(maps.Keys(seen)) {
		data = bytes.ReplaceAll(data, []byte(d), []byte("<"+seen[d]+">"))
	}
	return data
}

// decodeStrict decodes one JSON value, refusing unknown fields and
// trailing data: a typo in a golden file must not pass silently.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func loadGoldenIndex(path string, seen map[digest.Digest]string) (*verify.Index, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if data, err = aliases(data, seen); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var gi goldenIndex
	if err := decodeStrict(data, &gi); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var sources []*verify.SourceIndex
	for name, gs := range gi.Sources {
		if gs.Kind != policy.KindTUF && gs.Kind != policy.KindNotary {
			return nil, fmt.Errorf("%s: source %q: unknown kind %q", path, name, gs.Kind)
		}
		repos := map[string]*verify.Repo{}
		for repo, gr := range gs.Repos {
			if n, err := policy.NormalizeRepo(repo); err != nil || n != repo {
				return nil, fmt.Errorf("%s: source %q: repository %q is not a normalised name (%q, %v)", path, name, repo, n, err)
			}
			r := &verify.Repo{
				Source: name, Name: repo,
				Tags:    map[string]verify.RoleTargets{},
				Order:   gr.Order,
				Expires: gr.Expires, ExpiresRole: gr.ExpiresRole,
				FreshUntil: gr.FreshUntil, FreshRole: gr.FreshRole,
			}
			for tag, roles := range gr.Tags {
				r.Tags[tag] = verify.RoleTargets(roles)
				for role, t := range roles {
					if err := t.Digest.Validate(); err != nil {
						return nil, fmt.Errorf("%s: %s:%s role %s: %w", path, repo, tag, role, err)
					}
				}
			}
			repos[repo] = r
		}
		si := verify.NewSourceIndex(name, gs.Kind, repos).WithReachability(gs.Unreachable, gs.UnreachableSince)
		if gs.Error != "" {
			si.Err = errors.New(gs.Error)
		}
		sources = append(sources, si)
	}
	return verify.NewIndex(sources...), nil
}

func loadGoldenCases(path string, seen map[digest.Digest]string) ([]goldenCase, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if data, err = aliases(data, seen); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var cases []goldenCase
	if err := decodeStrict(data, &cases); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	names := map[string]bool{}
	for _, c := range cases {
		if c.Name == "" || names[c.Name] {
			return nil, fmt.Errorf("%s: case names must be unique and non-empty: %q", path, c.Name)
		}
		names[c.Name] = true
		if _, err := c.facts(); err != nil {
			return nil, fmt.Errorf("%s: case %q: %w", path, c.Name, err)
		}
	}
	return cases, nil
}

func (c goldenCase) facts() (verify.Facts, error) {
	f := verify.Facts{Image: c.Image, Namespace: c.Namespace, Digest: c.Digest, ConfigDigest: c.ConfigDigest, Covers: c.Covers}
	switch c.Subject {
	case "pull":
		f.Subject = verify.SubjectPull
	case "container":
		f.Subject = verify.SubjectContainer
	case "check":
		f.Subject = verify.SubjectCheck
	default:
		return f, fmt.Errorf("subject %q (want pull, container or check)", c.Subject)
	}
	if c.Namespace != "" && f.Subject != verify.SubjectContainer {
		return f, errors.New("a namespace is only meaningful for subject container")
	}
	return f, nil
}

func (c goldenCase) now() time.Time {
	if c.Now.IsZero() {
		return goldenNow
	}
	return c.Now
}

func TestDecideGolden(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "decide", "*", "policy.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no scenarios under testdata/decide")
	}
	for _, pf := range dirs {
		dir := filepath.Dir(pf)
		t.Run(filepath.Base(dir), func(t *testing.T) { runGolden(t, dir) })
	}
}

func runGolden(t *testing.T, dir string) {
	p, err := policy.Load(filepath.Join(dir, "policy.toml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[digest.Digest]string{}
	ix, err := loadGoldenIndex(filepath.Join(dir, "index.json"), seen)
	if err != nil {
		t.Fatal(err)
	}
	cases, err := loadGoldenCases(filepath.Join(dir, "cases.json"), seen)
	if err != nil {
		t.Fatal(err)
	}

	results := make([]goldenResult, 0, len(cases))
	for _, c := range cases {
		f, _ := c.facts()
		d := verify.Decide(p, ix, f, c.now())
		checkInvariants(t, c.Name, p, ix, f, c.now(), d)
		results = append(results, goldenResult{Name: c.Name, Decision: d, Message: d.Message()})
	}
	got, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(unalias(got, seen), '\n')

	path := filepath.Join(dir, "expected.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	// Say which cases differ, then the whole file.
	var wantRes []json.RawMessage
	var gotRes []json.RawMessage
	if json.Unmarshal(want, &wantRes) == nil && json.Unmarshal(got, &gotRes) == nil {
		for i := range max(len(wantRes), len(gotRes)) {
			var w, g []byte
			if i < len(wantRes) {
				w = compact(wantRes[i])
			}
			if i < len(gotRes) {
				g = compact(gotRes[i])
			}
			if !bytes.Equal(w, g) {
				t.Errorf("case %d differs:\n got: %s\nwant: %s", i, g, w)
			}
		}
	}
	t.Errorf("%s is out of date (review, then run with -update):\n%s", path, got)
}

func compact(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

// checkInvariants checks what every decision must satisfy, whatever the
// golden file says.
func checkInvariants(t *testing.T, name string, p *policy.Policy, ix *verify.Index, f verify.Facts, now time.Time, d verify.Decision) {
	t.Helper()
	if d.Reason == "" {
		t.Errorf("%s: empty reason: %s", name, d.Message())
	}
	if d.Audit && !d.Allowed {
		t.Errorf("%s: an audit decision must allow", name)
	}
	if err := d.Err(); d.Allowed != (err == nil) {
		t.Errorf("%s: Allowed=%v but Err()=%v", name, d.Allowed, err)
	} else if err != nil && (!errors.Is(err, verify.ErrDenied) || err.Error() != d.Message()) {
		t.Errorf("%s: the error of a denial must match ErrDenied and read as its message: %v", name, err)
	}
	if !d.Allowed && !strings.HasPrefix(d.Message(), "trustd: denied "+d.Image) {
		t.Errorf("%s: a denial must name the image first: %s", name, d.Message())
	}
	if d.Requested != f.Image {
		t.Errorf("%s: Requested = %q, want %q", name, d.Requested, f.Image)
	}
	// Decide is pure: the same inputs give the same decision.
	if again := verify.Decide(p, ix, f, now); !reflect.DeepEqual(again, d) {
		t.Errorf("%s: not deterministic:\n%+v\n%+v", name, d, again)
	}
	// Needed names every signed digest whose coverage can matter: keeping
	// only those entries of Covers must not change the decision.
	if len(f.Covers) > 0 {
		need := verify.Needed(p, ix, f)
		g := f
		g.Covers = map[digest.Digest][]digest.Digest{}
		for _, dg := range need {
			if c, ok := f.Covers[dg]; ok {
				g.Covers[dg] = c
			}
		}
		if d2 := verify.Decide(p, ix, g, now); !reflect.DeepEqual(d2, d) {
			t.Errorf("%s: Needed %v misses a digest the decision depends on:\nwith all covers: %s\nwith the needed: %s", name, need, d.Message(), d2.Message())
		}
		// The engine's way, in one pass: the same content as a lookup
		// Decide asks only when digests do not decide.
		h := f
		h.Covers, h.Content = nil, mapLookup(f.Covers)
		if d3 := verify.Decide(p, ix, h, now); !reflect.DeepEqual(d3, d) {
			t.Errorf("%s: with a content lookup:\n%s\nwith Covers:\n%s", name, d3.Message(), d.Message())
		}
	}
}

// mapLookup is a verify.ContentLookup over a map.
type mapLookup map[digest.Digest][]digest.Digest

func (m mapLookup) Covered(d digest.Digest) ([]digest.Digest, bool) {
	v, ok := m[d]
	return v, ok
}
