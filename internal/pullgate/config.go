package pullgate

import "bytes"

// controlSocket returns daemon.control_socket of a policy file, as the
// daemon's strict TOML decoder reads it, for the forms a policy file uses
// it in: a key in a [daemon] table (or daemon.control_socket at the top),
// whose value is a one-line string without escapes. It reports false when
// the file might say it in a form it does not read (an inline daemon
// table, multi-line strings, escapes, syntax it does not know, the key
// twice): the caller then leaves the pull to the trustd binary. A file
// without the key names the default socket.
//
// It does not validate the file: the daemon parses the same bytes strictly
// and checks that they name the socket they were sent to
// (Call).
func controlSocket(data []byte) (string, bool) {
	if bytes.Contains(data, []byte(`"""`)) || bytes.Contains(data, []byte(`'''`)) {
		return "", false
	}
	s := &scanner{b: data}
	var table []string
	sock, found, daemonTable := "", false, false
	for {
		s.space()
		if s.eof() {
			break
		}
		switch s.b[s.i] {
		case '\n':
			s.i++
			continue
		case '\r', '#':
		case '[':
			s.i++
			array := s.peek('[')
			if array {
				s.i++
			}
			path, ok := s.key()
			if !ok || !s.expect(']') || (array && !s.expect(']')) {
				return "", false
			}
			if is(path, "daemon") {
				if array || daemonTable {
					return "", false
				}
				daemonTable = true
			}
			table = path
		default:
			key, ok := s.key()
			if !ok || !s.expect('=') {
				return "", false
			}
			s.space()
			full := append(table[:len(table):len(table)], key...)
			switch {
			case is(full, "daemon", "control_socket"):
				v, ok := s.simpleString()
				if !ok || found {
					return "", false
				}
				sock, found = v, true
			case is(full, "daemon"):
				return "", false
			default:
				if !s.value() {
					return "", false
				}
			}
		}
		if !s.endOfLine() {
			return "", false
		}
	}
	if !found {
		return DefaultSocket, true
	}
	return sock, true
}

func is(path []string, want ...string) bool {
	if len(path) != len(want) {
		return false
	}
	for i := range path {
		if path[i] != want[i] {
			return false
		}
	}
	return true
}

// scanner reads the few TOML forms controlSocket needs.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) eof() bool { return s.i >= len(s.b) }

func (s *scanner) peek(c byte) bool { return !s.eof() && s.b[s.i] == c }

func (s *scanner) space() {
	for !s.eof() && (s.b[s.i] == ' ' || s.b[s.i] == '\t') {
		s.i++
	}
}

// expect skips spaces and then c.
func (s *scanner) expect(c byte) bool {
	s.space()
	if !s.peek(c) {
		return false
	}
	s.i++
	return true
}

// endOfLine skips spaces and a comment, then the end of the line.
func (s *scanner) endOfLine() bool {
	s.space()
	if s.peek('#') {
		s.comment()
	}
	if s.peek('\r') {
		s.i++
	}
	if s.eof() {
		return true
	}
	if s.b[s.i] != '\n' {
		return false
	}
	s.i++
	return true
}

func (s *scanner) comment() {
	for !s.eof() && s.b[s.i] != '\n' && s.b[s.i] != '\r' {
		s.i++
	}
}

// key reads a dotted key of bare and quoted parts.
func (s *scanner) key() ([]string, bool) {
	var path []string
	for {
		s.space()
		var part string
		if s.peek('"') || s.peek('\'') {
			var ok bool
			if part, ok = s.simpleString(); !ok {
				return nil, false
			}
		} else {
			start := s.i
			for !s.eof() && isBare(s.b[s.i]) {
				s.i++
			}
			if s.i == start {
				return nil, false
			}
			part = string(s.b[start:s.i])
		}
		path = append(path, part)
		s.space()
		if !s.peek('.') {
			return path, true
		}
		s.i++
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// simpleString reads a one-line string: basic without escapes, or literal.
func (s *scanner) simpleString() (string, bool) {
	if s.eof() || (s.b[s.i] != '"' && s.b[s.i] != '\'') {
		return "", false
	}
	q := s.b[s.i]
	for j := s.i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case q:
			v := string(s.b[s.i+1 : j])
			s.i = j + 1
			return v, true
		case '\\':
			if q == '"' {
				return "", false
			}
		case '\n', '\r':
			return "", false
		}
	}
	return "", false
}

// value skips a value: strings (with escapes), arrays and inline tables
// over several lines, with comments inside; anything else up to the end
// of the line, a comment or a closing bracket.
func (s *scanner) value() bool {
	depth := 0
	for !s.eof() {
		switch c := s.b[s.i]; c {
		case '"':
			if !s.skipBasic() {
				return false
			}
			continue
		case '\'':
			if _, ok := s.simpleString(); !ok {
				return false
			}
			continue
		case '[', '{':
			depth++
		case ']', '}':
			if depth == 0 {
				return false
			}
			depth--
		case '#':
			if depth == 0 {
				return true
			}
			s.comment()
			continue
		case '\n', '\r':
			if depth == 0 {
				return true
			}
		}
		s.i++
	}
	return depth == 0
}

// skipBasic skips a one-line basic string, escapes included.
func (s *scanner) skipBasic() bool {
	for j := s.i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '"':
			s.i = j + 1
			return true
		case '\\':
			j++
		case '\n', '\r':
			return false
		}
	}
	return false
}
