package policy

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/pelletier/go-toml/v2/unstable"
)

// The raw document, as go-toml decodes it. Pointers tell "absent" from
// "empty". The walker below derives its schema from these types (tags and
// Go types), so both layers agree on what the file may contain.
type rawPolicy struct {
	Version *int64      `toml:"version"`
	Mode    *string     `toml:"mode"`
	Daemon  *rawDaemon  `toml:"daemon"`
	Source  []rawSource `toml:"source"`
	Rule    []rawRule   `toml:"rule"`
	Mirror  []rawMirror `toml:"mirror"`
}

// durationString is a string holding a Go duration ("5m").
type durationString string

type rawDaemon struct {
	CacheDir            *string         `toml:"cache_dir"`
	Refresh             *durationString `toml:"refresh"`
	OfflineGrace        *durationString `toml:"offline_grace"`
	NRISocket           *string         `toml:"nri_socket"`
	ContainerdAddress   *string         `toml:"containerd_address"`
	ContainerdNamespace *string         `toml:"containerd_namespace"`
	ControlSocket       *string         `toml:"control_socket"`
	MetricsAddress      *string         `toml:"metrics_address"`
	DockerAuthz         *bool           `toml:"docker_authz"`
	DockerAuthzSocket   *string         `toml:"docker_authz_socket"`
	DockerAddress       *string         `toml:"docker_address"`
	DockerAllow         *[]string       `toml:"docker_allow"`
}

type rawSource struct {
	Name            *string         `toml:"name"`
	Kind            *string         `toml:"kind"`
	URL             *string         `toml:"url"`
	Root            *string         `toml:"root"`
	Repositories    *[]string       `toml:"repositories"`
	TrustOnFirstUse *bool           `toml:"trust_on_first_use"`
	OfflineGrace    *durationString `toml:"offline_grace"`
	Pin             []rawPin        `toml:"pin"`
	TrustedRoot     *string         `toml:"trusted_root"`
}

type rawPin struct {
	Repositories *[]string `toml:"repositories"`
	RootKeys     *[]string `toml:"root_keys"`
	CA           *string   `toml:"ca"`
}

type rawRule struct {
	Images     *[]string      `toml:"images"`
	Namespaces *[]string      `toml:"namespaces"`
	Action     *string        `toml:"action"`
	Source     *string        `toml:"source"`
	Signers    *[]string      `toml:"signers"`
	Threshold  *int64         `toml:"threshold"`
	Keys       *[]string      `toml:"keys"`
	Identities *[]rawIdentity `toml:"identities"`
	Mode       *string        `toml:"mode"`
	Also       []rawAlso      `toml:"also"`
}

// rawAlso is a [[rule.also]]: what a verify rule requires of the same image
// from another source.
type rawAlso struct {
	Source     *string        `toml:"source"`
	Signers    *[]string      `toml:"signers"`
	Threshold  *int64         `toml:"threshold"`
	Keys       *[]string      `toml:"keys"`
	Identities *[]rawIdentity `toml:"identities"`
}

type rawIdentity struct {
	Issuer        *string `toml:"issuer"`
	IssuerRegexp  *string `toml:"issuer_regexp"`
	Subject       *string `toml:"subject"`
	SubjectRegexp *string `toml:"subject_regexp"`
}

type rawMirror struct {
	From *string `toml:"from"`
	To   *string `toml:"to"`
}

type fieldType uint8

const (
	tString fieldType = iota
	tDuration
	tInt
	tBool
	tStrings
	tTable
	tTables
)

type schemaNode struct {
	typ    fieldType
	fields map[string]*schemaNode // tTable, tTables
}

var rootSchema = sync.OnceValue(func() *schemaNode {
	return schemaOf(reflect.TypeFor[rawPolicy](), tTable)
})

func schemaOf(t reflect.Type, typ fieldType) *schemaNode {
	n := &schemaNode{typ: typ, fields: map[string]*schemaNode{}}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("toml")
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == reflect.TypeFor[durationString]():
			n.fields[name] = &schemaNode{typ: tDuration}
		case ft.Kind() == reflect.String:
			n.fields[name] = &schemaNode{typ: tString}
		case ft.Kind() == reflect.Int64:
			n.fields[name] = &schemaNode{typ: tInt}
		case ft.Kind() == reflect.Bool:
			n.fields[name] = &schemaNode{typ: tBool}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
			n.fields[name] = &schemaNode{typ: tStrings}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			n.fields[name] = schemaOf(ft.Elem(), tTables)
		case ft.Kind() == reflect.Struct:
			n.fields[name] = schemaOf(ft, tTable)
		default:
			panic("policy: unsupported raw field type " + ft.String())
		}
	}
	return n
}

func (n *schemaNode) lookup(name string) *schemaNode {
	if n == nil {
		return nil
	}
	return n.fields[name]
}

// suggest returns a known key equal to name but for case, or "".
func (n *schemaNode) suggest(name string) string {
	for k := range n.fields {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return ""
}

func (t fieldType) want(key string) string {
	switch t {
	case tString:
		return "a string"
	case tDuration:
		return `a duration string such as "5m"`
	case tInt:
		return "an integer"
	case tBool:
		return "a boolean"
	case tStrings:
		return "an array of strings"
	case tTable:
		return "a table ([" + key + "])"
	default:
		return "an array of tables ([[" + key + "]])"
	}
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Bool:
		return "a boolean"
	case unstable.Float:
		return "a float"
	case unstable.Integer:
		return "an integer"
	case unstable.Array:
		return "an array"
	case unstable.InlineTable:
		return "an inline table"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "a date or time"
	default:
		return "a " + strings.ToLower(k.String())
	}
}

// doc is a policy document seen through go-toml's AST: where each key,
// table and array element is, for messages about values that decode fine
// but mean nothing valid. Paths look like `rule[2].images[1]` (indexes are
// 0-based); dotted names (`rule.images`) are used in messages.
type doc struct {
	file  string
	data  []byte
	lines []int          // offsets of line starts
	pos   map[string]int // path -> byte offset
	keys  map[string]int // path of each key/value -> offset of its key
	count map[string]int // array of tables path -> elements so far
	errs  []*Error

	cur       *schemaNode // schema of the current table; nil: skip its keys
	curPath   string
	curDotted string

	// version is the text of the top-level `version` when it is an integer
	// (the parser's nodes do not outlive their expression).
	version    string
	hasVersion bool
}

func newDoc(file string, data []byte) *doc {
	d := &doc{
		file:  file,
		data:  data,
		pos:   map[string]int{},
		keys:  map[string]int{},
		count: map[string]int{},
		lines: []int{0},
	}
	for i, c := range data {
		if c == '\n' {
			d.lines = append(d.lines, i+1)
		}
	}
	return d
}

// position converts a byte offset to a Position.
func (d *doc) position(off int) Position {
	if off < 0 {
		off = 0
	}
	if off > len(d.data) {
		off = len(d.data)
	}
	i := sort.Search(len(d.lines), func(i int) bool { return d.lines[i] > off }) - 1
	return Position{File: d.file, Line: i + 1, Col: off - d.lines[i] + 1}
}

// at returns the position recorded for path, or for its nearest recorded
// parent, or the start of the file.
func (d *doc) at(path string) Position {
	for {
		if off, ok := d.pos[path]; ok {
			return d.position(off)
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return d.position(0)
		}
		path = path[:i]
	}
}

func (d *doc) errAt(pos Position, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// errf records an error about the value at path; dotted names it.
func (d *doc) errf(path, format string, args ...any) {
	d.errAt(d.at(path), format, args...)
}

// offset returns the offset of n in the document (n must have a Raw range).
func (d *doc) offset(r unstable.Range) int { return int(r.Offset) }

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// walk parses the document with go-toml's parser and checks its structure
// against the schema: exact (case-sensitive) key names, value types, tables
// versus arrays of tables. It records positions for later messages, and a
// syntax error if the document is not valid TOML.
func (d *doc) walk() {
	var p unstable.Parser
	p.Reset(d.data)
	d.cur = rootSchema()
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			d.header(e)
		case unstable.KeyValue:
			if d.cur != nil {
				d.keyval(e, d.cur, d.curPath, d.curDotted)
			}
		}
	}
	if err := p.Error(); err != nil {
		off := 0
		msg := err.Error()
		var perr *unstable.ParserError
		if errors.As(err, &perr) {
			// The highlight is a subslice of the document.
			off = cap(d.data) - cap(perr.Highlight)
			if perr.Highlight == nil {
				off = len(d.data)
			}
			msg = perr.Message
		}
		d.errs = append(d.errs, &Error{Pos: d.position(off), Msg: "syntax error: " + msg, Err: err})
	}
}

// headerOffset returns the offset of the '[' opening a table header whose
// first key starts at off.
func (d *doc) headerOffset(off, brackets int) int {
	i := off - 1
	for i >= 0 && brackets > 0 {
		switch d.data[i] {
		case ' ', '\t':
		case '[':
			brackets--
			if brackets == 0 {
				return i
			}
		default:
			return off
		}
		i--
	}
	return off
}

func (d *doc) header(e *unstable.Node) {
	d.cur = nil
	sch := rootSchema()
	path, dotted := "", ""
	it := e.Key()
	first := true
	start := 0
	for it.Next() {
		k := it.Node()
		if first {
			start = d.offset(k.Raw)
			first = false
		}
		name := string(k.Data)
		f := sch.lookup(name)
		if f == nil {
			d.unknown(k, sch, join(dotted, name))
			return
		}
		path, dotted = join(path, name), join(dotted, name)
		last := it.IsLast()
		switch {
		case f.typ == tTable:
			if last && e.Kind == unstable.ArrayTable {
				d.errAt(d.position(d.offset(k.Raw)), "%s: expected %s, got an array of tables", dotted, f.typ.want(dotted))
				return
			}
		case f.typ == tTables && last:
			if e.Kind != unstable.ArrayTable {
				d.errAt(d.position(d.offset(k.Raw)), "%s: expected %s, got a table", dotted, f.typ.want(dotted))
				return
			}
			n := d.count[path]
			d.count[path] = n + 1
			path = index(path, n)
		case f.typ == tTables:
			n := d.count[path]
			if n == 0 {
				d.errAt(d.position(d.offset(k.Raw)), "%s: [[%s]] must come before its subtables", dotted, dotted)
				return
			}
			path = index(path, n-1)
		default:
			d.errAt(d.position(d.offset(k.Raw)), "%s: expected %s, got a table", dotted, f.typ.want(dotted))
			return
		}
		sch = f
	}
	brackets := 1
	if e.Kind == unstable.ArrayTable {
		brackets = 2
	}
	d.pos[path] = d.headerOffset(start, brackets)
	d.cur, d.curPath, d.curDotted = sch, path, dotted
}

func (d *doc) unknown(k *unstable.Node, sch *schemaNode, dotted string) {
	name := string(k.Data)
	if s := sch.suggest(name); s != "" {
		d.errAt(d.position(d.offset(k.Raw)), "unknown key %q (keys are case-sensitive: did you mean %q?)", dotted, s)
		return
	}
	d.errAt(d.position(d.offset(k.Raw)), "unknown key %q", dotted)
}

// valueOffset returns where the value of a key/value expression starts.
func (d *doc) valueOffset(e *unstable.Node, lastKey *unstable.Node) int {
	v := e.Value()
	if v.Raw.Length > 0 {
		return d.offset(v.Raw)
	}
	// Arrays have no range: skip "= " after the key.
	i := int(lastKey.Raw.Offset + lastKey.Raw.Length)
	for i < len(d.data) && (d.data[i] == ' ' || d.data[i] == '\t' || d.data[i] == '=') {
		i++
	}
	return i
}

func (d *doc) keyval(e *unstable.Node, sch *schemaNode, path, dotted string) {
	it := e.Key()
	keyStart := -1
	for it.Next() {
		k := it.Node()
		if keyStart < 0 {
			keyStart = d.offset(k.Raw)
		}
		name := string(k.Data)
		f := sch.lookup(name)
		if f == nil {
			d.unknown(k, sch, join(dotted, name))
			return
		}
		path, dotted = join(path, name), join(dotted, name)
		if !it.IsLast() {
			// A dotted key defines a table.
			if f.typ != tTable {
				d.errAt(d.position(d.offset(k.Raw)), "%s: expected %s, got a table", dotted, f.typ.want(dotted))
				return
			}
			sch = f
			continue
		}
		if first, dup := d.keys[path]; dup {
			d.errAt(d.position(d.offset(k.Raw)), "duplicate key %q (first defined at %s)", dotted, d.position(first))
			return
		}
		d.keys[path] = keyStart
		off := d.valueOffset(e, k)
		d.pos[path] = off
		if path == "version" && e.Value().Kind == unstable.Integer {
			d.version, d.hasVersion = string(e.Value().Data), true
		}
		d.value(e.Value(), off, f, path, dotted)
	}
}

func (d *doc) value(v *unstable.Node, off int, f *schemaNode, path, dotted string) {
	wrong := func() {
		d.errAt(d.position(off), "%s: expected %s, got %s", dotted, f.typ.want(dotted), kindName(v.Kind))
	}
	switch f.typ {
	case tString, tDuration:
		if v.Kind != unstable.String {
			wrong()
		}
	case tInt:
		if v.Kind != unstable.Integer {
			wrong()
		}
	case tBool:
		if v.Kind != unstable.Bool {
			wrong()
		}
	case tStrings:
		if v.Kind != unstable.Array {
			wrong()
			return
		}
		d.elements(v, off, func(i int, el *unstable.Node, eoff int) bool {
			d.pos[index(path, i)] = eoff
			if el.Kind != unstable.String {
				d.errAt(d.position(eoff), "%s: expected an array of strings, got %s in it", dotted, kindName(el.Kind))
				return false
			}
			return true
		})
	case tTable:
		if v.Kind != unstable.InlineTable {
			wrong()
			return
		}
		for it := v.Children(); it.Next(); {
			if kv := it.Node(); kv.Kind == unstable.KeyValue {
				d.keyval(kv, f, path, dotted)
			}
		}
	case tTables:
		if v.Kind != unstable.Array {
			wrong()
			return
		}
		n, ok := d.elements(v, off, func(i int, el *unstable.Node, eoff int) bool {
			if el.Kind != unstable.InlineTable {
				d.errAt(d.position(eoff), "%s: expected %s, got %s in an array", dotted, f.typ.want(dotted), kindName(el.Kind))
				return false
			}
			ep := index(path, i)
			d.pos[ep] = eoff
			for it := el.Children(); it.Next(); {
				if kv := it.Node(); kv.Kind == unstable.KeyValue {
					d.keyval(kv, f, ep, dotted)
				}
			}
			return true
		})
		if ok {
			d.count[path] = n
		}
	}
}

// elements calls each for every element of the array v (at offset off)
// with its index and offset, until each returns false; it returns how
// many elements there are, and false when each stopped it.
func (d *doc) elements(v *unstable.Node, off int, each func(i int, el *unstable.Node, eoff int) bool) (int, bool) {
	i := 0
	for it := v.Children(); it.Next(); i++ {
		el := it.Node()
		eoff := off
		if el.Raw.Length > 0 {
			eoff = d.offset(el.Raw)
		}
		if !each(i, el, eoff) {
			return i, false
		}
	}
	return i, true
}
