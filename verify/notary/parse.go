package notary

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
)

// Bounds on what is accepted as input. The caller bounds downloads by the
// lengths the parent role signed; these refuse absurd files and counts on
// their own.
const (
	// MaxFileSize is the largest metadata file accepted (Notary's own
	// download limit, notary.MaxDownloadSize).
	MaxFileSize = 100 << 20

	maxDepth          = 32      // JSON nesting
	maxSignatures     = 256     // signatures on one file
	maxKeys           = 4096    // keys in a root or a delegations object
	maxKeyIDs         = 256     // key IDs of one role
	maxThreshold      = 256     // threshold of one role
	maxDelegations    = 4096    // delegated roles declared in one file
	maxPaths          = 4096    // paths or path hash prefixes of one role
	maxTargets        = 1 << 20 // targets in one file
	maxMetaEntries    = 1 << 16 // entries in a snapshot
	maxWalked         = 10000   // delegations walked for one repository
	maxRoleNameLength = 255     // Notary's limit
)

// Role type names as Notary writes them in "_type".
const (
	typeRoot      = "Root"
	typeTargets   = "Targets"
	typeSnapshot  = "Snapshot"
	typeTimestamp = "Timestamp"
)

// Canonical role names.
const (
	roleRoot      = "root"
	roleTargets   = "targets"
	roleSnapshot  = "snapshot"
	roleTimestamp = "timestamp"
	roleReleases  = "targets/releases"
)

// Supported hash algorithms and their sizes.
var hashSizes = map[string]int{"sha256": sha256.Size, "sha512": sha512.Size}

// decodeJSON decodes one JSON value with numbers kept as json.Number,
// rejecting duplicate object keys, nesting deeper than maxDepth and trailing
// data.
func decodeJSON(b []byte) (any, error) {
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("file of %d bytes exceeds the limit of %d", len(b), MaxFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the top-level value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if depth >= maxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	switch d {
	case '{':
		m := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, ok := kt.(string)
			if !ok {
				return nil, fmt.Errorf("object key is %T", kt)
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("duplicate object key %q", k)
			}
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		if _, err := dec.Token(); err != nil { // '}'
			return nil, err
		}
		return m, nil
	case '[':
		a := []any{}
		for dec.More() {
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, err
		}
		return a, nil
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

// object checks that v is a JSON object whose keys are all in required or
// optional and that every required key is present.
func object(v any, where string, required, optional []string) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: expected an object, got %s", where, kind(v))
	}
	for k := range m {
		if !contains(required, k) && !contains(optional, k) {
			return nil, fmt.Errorf("%s: unknown field %q", where, k)
		}
	}
	for _, k := range required {
		if _, ok := m[k]; !ok {
			return nil, fmt.Errorf("%s: missing field %q", where, k)
		}
	}
	return m, nil
}

// mapOf checks that v is an object (or null, read as empty) of at most max
// entries.
func mapOf(v any, where string, max int) (map[string]any, error) {
	if v == nil {
		return map[string]any{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: expected an object, got %s", where, kind(v))
	}
	if len(m) > max {
		return nil, fmt.Errorf("%s: %d entries exceed the limit of %d", where, len(m), max)
	}
	return m, nil
}

// arrayOf checks that v is an array (or null, read as empty) of at most max
// elements.
func arrayOf(v any, where string, max int) ([]any, error) {
	if v == nil {
		return nil, nil
	}
	a, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: expected an array, got %s", where, kind(v))
	}
	if len(a) > max {
		return nil, fmt.Errorf("%s: %d elements exceed the limit of %d", where, len(a), max)
	}
	return a, nil
}

func str(v any, where string) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%s: expected a string, got %s", where, kind(v))
	}
	return s, nil
}

func strings_(v any, where string, max int) ([]string, error) {
	a, err := arrayOf(v, where, max)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(a))
	for i, e := range a {
		s, err := str(e, fmt.Sprintf("%s[%d]", where, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func integer(v any, where string, min, max int64) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%s: expected an integer, got %s", where, kind(v))
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not an integer", where, n)
	}
	if i < min || i > max {
		return 0, fmt.Errorf("%s: %d is outside [%d, %d]", where, i, min, max)
	}
	return i, nil
}

func boolean(v any, where string) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%s: expected a boolean, got %s", where, kind(v))
	}
	return b, nil
}

// b64 decodes standard base64 as Go's encoding/json does for []byte, which
// is how Notary writes keys, hashes and signatures.
func b64(v any, where string) ([]byte, error) {
	s, err := str(v, where)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid base64: %v", where, err)
	}
	return b, nil
}

func timestamp(v any, where string) (time.Time, error) {
	s, err := str(v, where)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: invalid time %q", where, s)
	}
	return t, nil
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// signature is one entry of "signatures".
type signature struct {
	keyID  string
	method string
	sig    []byte
}

// envelope is a parsed {"signed": ..., "signatures": [...]} file.
type envelope struct {
	signed    map[string]any
	canonical []byte // the bytes the signatures are over
	digest    string // hex SHA-256 of canonical, to compare content across versions
	sigs      []signature
}

// parseEnvelope parses the outer shape and computes the canonical bytes of
// the signed object: the signed JSON decoded generically (numbers as
// json.Number, so nothing is dropped, added or rounded) and re-encoded as
// OLPC canonical JSON, which is what Notary signs.
func parseEnvelope(b []byte) (*envelope, error) {
	v, err := decodeJSON(b)
	if err != nil {
		return nil, err
	}
	top, err := object(v, "file", []string{"signed", "signatures"}, nil)
	if err != nil {
		return nil, err
	}
	signed, ok := top["signed"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("signed: expected an object, got %s", kind(top["signed"]))
	}
	sigs, err := arrayOf(top["signatures"], "signatures", maxSignatures)
	if err != nil {
		return nil, err
	}
	e := &envelope{signed: signed, sigs: make([]signature, 0, len(sigs))}
	for i, s := range sigs {
		where := fmt.Sprintf("signatures[%d]", i)
		m, err := object(s, where, []string{"keyid", "method", "sig"}, nil)
		if err != nil {
			return nil, err
		}
		var sig signature
		if sig.keyID, err = str(m["keyid"], where+".keyid"); err != nil {
			return nil, err
		}
		if sig.method, err = str(m["method"], where+".method"); err != nil {
			return nil, err
		}
		if sig.sig, err = b64(m["sig"], where+".sig"); err != nil {
			return nil, err
		}
		e.sigs = append(e.sigs, sig)
	}
	e.canonical, err = cjson.EncodeCanonical(signed)
	if err != nil {
		return nil, fmt.Errorf("signed: cannot canonicalise: %v", err)
	}
	sum := sha256.Sum256(e.canonical)
	e.digest = hex.EncodeToString(sum[:])
	return e, nil
}

// common holds the fields every role has.
type common struct {
	version int
	expires time.Time
}

// checkType checks "_type" first, so that a file of another role is
// reported as such rather than by its first unexpected field.
func checkType(m map[string]any, want string) error {
	t, err := str(m["_type"], "signed._type")
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("signed._type is %q, expected %q", t, want)
	}
	return nil
}

func parseCommon(m map[string]any, wantType string) (common, error) {
	var c common
	t, err := str(m["_type"], "signed._type")
	if err != nil {
		return c, err
	}
	if t != wantType {
		return c, fmt.Errorf("signed._type is %q, expected %q", t, wantType)
	}
	v, err := integer(m["version"], "signed.version", 1, math.MaxInt32)
	if err != nil {
		return c, err
	}
	c.version = int(v)
	if c.expires, err = timestamp(m["expires"], "signed.expires"); err != nil {
		return c, err
	}
	return c, nil
}

// roleKeys is a role's key IDs and threshold, as in root "roles" and in
// delegations.
type roleKeys struct {
	keyIDs    []string
	threshold int
}

func parseRoleKeys(m map[string]any, where string, keys map[string]*key) (roleKeys, error) {
	var r roleKeys
	ids, err := strings_(m["keyids"], where+".keyids", maxKeyIDs)
	if err != nil {
		return r, err
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			return r, fmt.Errorf("%s.keyids: key ID %s listed twice", where, id)
		}
		seen[id] = true
		if _, ok := keys[id]; !ok {
			return r, fmt.Errorf("%s: key ID %s has no corresponding key", where, id)
		}
	}
	th, err := integer(m["threshold"], where+".threshold", 1, maxThreshold)
	if err != nil {
		return r, err
	}
	r.keyIDs, r.threshold = ids, int(th)
	return r, nil
}

func parseKeys(v any, where string) (map[string]*key, error) {
	m, err := mapOf(v, where, maxKeys)
	if err != nil {
		return nil, err
	}
	keys := make(map[string]*key, len(m))
	for id, kv := range m {
		k, err := parseKey(kv, where+"."+id)
		if err != nil {
			return nil, err
		}
		keys[id] = k
	}
	return keys, nil
}

// rootBody is the signed part of root.json.
type rootBody struct {
	common
	keys  map[string]*key // as listed: ID → key (the key's real ID may differ)
	roles map[string]roleKeys
}

func parseRoot(b []byte) (*envelope, *rootBody, error) {
	e, err := parseEnvelope(b)
	if err != nil {
		return nil, nil, err
	}
	if err := checkType(e.signed, typeRoot); err != nil {
		return nil, nil, err
	}
	m, err := object(e.signed, "signed", []string{"_type", "expires", "keys", "roles", "version"}, []string{"consistent_snapshot"})
	if err != nil {
		return nil, nil, err
	}
	r := &rootBody{roles: map[string]roleKeys{}}
	if r.common, err = parseCommon(m, typeRoot); err != nil {
		return nil, nil, err
	}
	if cs, ok := m["consistent_snapshot"]; ok {
		if _, err := boolean(cs, "signed.consistent_snapshot"); err != nil {
			return nil, nil, err
		}
	}
	if r.keys, err = parseKeys(m["keys"], "signed.keys"); err != nil {
		return nil, nil, err
	}
	roles, err := mapOf(m["roles"], "signed.roles", 16)
	if err != nil {
		return nil, nil, err
	}
	for name, rv := range roles {
		where := "signed.roles." + name
		rm, err := object(rv, where, []string{"keyids", "threshold"}, nil)
		if err != nil {
			return nil, nil, err
		}
		rk, err := parseRoleKeys(rm, where, r.keys)
		if err != nil {
			return nil, nil, err
		}
		r.roles[name] = rk
	}
	for _, name := range []string{roleRoot, roleTargets, roleSnapshot, roleTimestamp} {
		if _, ok := r.roles[name]; !ok {
			return nil, nil, fmt.Errorf("signed.roles: missing the %s role", name)
		}
	}
	return e, r, nil
}

// Meta is what a parent role signed about a metadata file: its exact length
// and its hashes (algorithm → raw digest). A Meta is a value; Hashes must not
// be modified.
type Meta struct {
	Length int64
	Hashes map[string][]byte
}

// Check reports whether b is the file that m describes: exactly Length
// bytes, and every supported hash (sha256, sha512) listed matches; at least
// one supported hash must be listed. It is pure and safe for concurrent use.
func (m Meta) Check(b []byte) error {
	if int64(len(b)) != m.Length {
		return fmt.Errorf("%w: %d bytes, expected %d", ErrLength, len(b), m.Length)
	}
	n := 0
	for _, alg := range []string{"sha256", "sha512"} {
		want, ok := m.Hashes[alg]
		if !ok {
			continue
		}
		var got []byte
		if alg == "sha256" {
			s := sha256.Sum256(b)
			got = s[:]
		} else {
			s := sha512.Sum512(b)
			got = s[:]
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%w: %s is %s, expected %s", ErrHashMismatch, alg,
				base64.StdEncoding.EncodeToString(got), base64.StdEncoding.EncodeToString(want))
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%w: no supported hash (sha256, sha512)", ErrMalformed)
	}
	return nil
}

// checkHashes checks only the hashes, for root.json against the snapshot:
// Notary never bounds the root download by the length the snapshot lists.
func (m Meta) checkHashes(b []byte) error {
	m.Length = int64(len(b))
	return m.Check(b)
}

func (m Meta) clone() Meta {
	h := make(map[string][]byte, len(m.Hashes))
	for k, v := range m.Hashes {
		h[k] = append([]byte(nil), v...)
	}
	return Meta{Length: m.Length, Hashes: h}
}

// parseMeta parses {"length": n, "hashes": {...}, "custom": ...}. With
// requireHash, at least one supported hash must be present (snapshot and
// timestamp entries). Supported hashes must have their algorithm's size.
func parseMeta(v any, where string, requireHash bool) (Meta, error) {
	var fm Meta
	m, err := object(v, where, []string{"length", "hashes"}, []string{"custom"})
	if err != nil {
		return fm, err
	}
	if fm.Length, err = integer(m["length"], where+".length", math.MinInt64, math.MaxInt64); err != nil {
		return fm, err
	}
	hm, err := mapOf(m["hashes"], where+".hashes", 16)
	if err != nil {
		return fm, err
	}
	fm.Hashes = make(map[string][]byte, len(hm))
	supported := 0
	for alg, hv := range hm {
		h, err := b64(hv, where+".hashes."+alg)
		if err != nil {
			return fm, err
		}
		if size, ok := hashSizes[alg]; ok {
			if len(h) != size {
				return fm, fmt.Errorf("%s.hashes.%s: %d bytes, expected %d", where, alg, len(h), size)
			}
			supported++
		}
		fm.Hashes[alg] = h
	}
	if requireHash {
		if fm.Length < 0 {
			return fm, fmt.Errorf("%s.length: negative", where)
		}
		if supported == 0 {
			return fm, fmt.Errorf("%s.hashes: no supported hash (sha256, sha512)", where)
		}
	}
	return fm, nil
}

type timestampBody struct {
	common
	snapshot Meta
}

func parseTimestamp(b []byte) (*envelope, *timestampBody, error) {
	e, err := parseEnvelope(b)
	if err != nil {
		return nil, nil, err
	}
	if err := checkType(e.signed, typeTimestamp); err != nil {
		return nil, nil, err
	}
	m, err := object(e.signed, "signed", []string{"_type", "expires", "meta", "version"}, nil)
	if err != nil {
		return nil, nil, err
	}
	t := &timestampBody{}
	if t.common, err = parseCommon(m, typeTimestamp); err != nil {
		return nil, nil, err
	}
	meta, err := mapOf(m["meta"], "signed.meta", 16)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := meta[roleSnapshot]; !ok {
		return nil, nil, errors.New("signed.meta: no snapshot entry")
	}
	for name, v := range meta {
		fm, err := parseMeta(v, "signed.meta."+name, true)
		if err != nil {
			return nil, nil, err
		}
		if name == roleSnapshot {
			t.snapshot = fm
		}
	}
	return e, t, nil
}

type snapshotBody struct {
	common
	meta map[string]Meta
}

func parseSnapshot(b []byte) (*envelope, *snapshotBody, error) {
	e, err := parseEnvelope(b)
	if err != nil {
		return nil, nil, err
	}
	if err := checkType(e.signed, typeSnapshot); err != nil {
		return nil, nil, err
	}
	m, err := object(e.signed, "signed", []string{"_type", "expires", "meta", "version"}, nil)
	if err != nil {
		return nil, nil, err
	}
	s := &snapshotBody{}
	if s.common, err = parseCommon(m, typeSnapshot); err != nil {
		return nil, nil, err
	}
	meta, err := mapOf(m["meta"], "signed.meta", maxMetaEntries)
	if err != nil {
		return nil, nil, err
	}
	s.meta = make(map[string]Meta, len(meta))
	for name, v := range meta {
		fm, err := parseMeta(v, "signed.meta."+name, true)
		if err != nil {
			return nil, nil, err
		}
		s.meta[name] = fm
	}
	for _, name := range []string{roleRoot, roleTargets} {
		if _, ok := s.meta[name]; !ok {
			return nil, nil, fmt.Errorf("signed.meta: no %s entry", name)
		}
	}
	return e, s, nil
}

// delegation is one entry of delegations.roles.
type delegation struct {
	name string
	roleKeys
	paths        []string
	hashPrefixes []string
	hasPaths     bool // "paths" present (otherwise path_hash_prefixes, or nothing)
}

type targetsBody struct {
	common
	targets     map[string]Meta
	keys        map[string]*key
	delegations []delegation
}

// isDelegation reports whether name is a valid delegated role name as
// Notary's data.IsDelegation decides: "targets/" followed by clean,
// non-empty segments of letters, digits, '-' and '_', shorter than 256.
func isDelegation(name string) bool {
	if len(name) > maxRoleNameLength || !strings.HasPrefix(name, roleTargets+"/") {
		return false
	}
	if path.Clean(name) != name {
		return false
	}
	for _, seg := range strings.Split(name[len(roleTargets)+1:], "/") {
		if seg == "" {
			return false
		}
		for _, r := range seg {
			if r != '-' && r != '_' && !unicode.IsLetter(r) && !unicode.IsNumber(r) {
				return false
			}
		}
	}
	return true
}

// parseTargets parses targets.json or a delegation file of role `role`.
func parseTargets(b []byte, role string) (*envelope, *targetsBody, error) {
	if role != roleTargets && !isDelegation(role) {
		return nil, nil, fmt.Errorf("%q is not a targets role name", role)
	}
	e, err := parseEnvelope(b)
	if err != nil {
		return nil, nil, err
	}
	if err := checkType(e.signed, typeTargets); err != nil {
		return nil, nil, err
	}
	m, err := object(e.signed, "signed", []string{"_type", "expires", "targets", "version"}, []string{"delegations"})
	if err != nil {
		return nil, nil, err
	}
	t := &targetsBody{keys: map[string]*key{}}
	if t.common, err = parseCommon(m, typeTargets); err != nil {
		return nil, nil, err
	}
	tm, err := mapOf(m["targets"], "signed.targets", maxTargets)
	if err != nil {
		return nil, nil, err
	}
	t.targets = make(map[string]Meta, len(tm))
	for name, v := range tm {
		fm, err := parseMeta(v, fmt.Sprintf("signed.targets[%q]", name), false)
		if err != nil {
			return nil, nil, err
		}
		t.targets[name] = fm
	}
	dv, ok := m["delegations"]
	if !ok || dv == nil {
		return e, t, nil
	}
	dm, err := object(dv, "signed.delegations", []string{"keys", "roles"}, nil)
	if err != nil {
		return nil, nil, err
	}
	if t.keys, err = parseKeys(dm["keys"], "signed.delegations.keys"); err != nil {
		return nil, nil, err
	}
	roles, err := arrayOf(dm["roles"], "signed.delegations.roles", maxDelegations)
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for i, rv := range roles {
		where := fmt.Sprintf("signed.delegations.roles[%d]", i)
		rm, err := object(rv, where, []string{"keyids", "name", "threshold"}, []string{"paths", "path_hash_prefixes"})
		if err != nil {
			return nil, nil, err
		}
		var d delegation
		if d.name, err = str(rm["name"], where+".name"); err != nil {
			return nil, nil, err
		}
		if !isDelegation(d.name) || path.Dir(d.name) != role {
			return nil, nil, fmt.Errorf("%s: %q is not a valid delegation of %s", where, d.name, role)
		}
		if seen[d.name] {
			return nil, nil, fmt.Errorf("%s: role %s delegated twice", where, d.name)
		}
		seen[d.name] = true
		if d.roleKeys, err = parseRoleKeys(rm, where, t.keys); err != nil {
			return nil, nil, err
		}
		pv, hasPaths := rm["paths"]
		hv, hasHashes := rm["path_hash_prefixes"]
		if hasPaths && hasHashes && pv != nil && hv != nil {
			return nil, nil, fmt.Errorf("%s: both paths and path_hash_prefixes", where)
		}
		if hasPaths && pv != nil {
			d.hasPaths = true
			if d.paths, err = strings_(pv, where+".paths", maxPaths); err != nil {
				return nil, nil, err
			}
		}
		if hasHashes && hv != nil {
			if d.hashPrefixes, err = strings_(hv, where+".path_hash_prefixes", maxPaths); err != nil {
				return nil, nil, err
			}
			for _, p := range d.hashPrefixes {
				if len(p) > 2*sha256.Size || strings.Trim(p, "0123456789abcdef") != "" {
					return nil, nil, fmt.Errorf("%s.path_hash_prefixes: %q is not lowercase hex", where, p)
				}
			}
		}
		t.delegations = append(t.delegations, d)
	}
	return e, t, nil
}
