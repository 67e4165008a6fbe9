package policy

import (
	"errors"
	"strconv"
	"strings"
)

// ErrInvalid is matched (with errors.Is) by every error that Parse and Load
// return because the policy itself is wrong: syntax, types, unknown keys and
// semantic errors alike. Errors reading the file do not match it.
var ErrInvalid = errors.New("invalid policy")

// Position is a place in a policy file. Line and Col are 1-based; Col counts
// bytes, like go-toml's positions.
type Position struct {
	File string
	Line int
	Col  int
}

// String returns "file:line:col" ("<input>" stands for an empty File).
func (p Position) String() string {
	f := p.File
	if f == "" {
		f = "<input>"
	}
	return f + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Col)
}

// Error is one problem found in a policy file. Every Error carries a
// position (line and column) and matches ErrInvalid.
type Error struct {
	Pos Position
	Msg string
	// Err is the underlying error, if any (for example a *toml.DecodeError).
	Err error
}

// Error returns "file:line:col: message".
func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Errors is every problem found in a policy file, in file order. Parse
// returns an Errors with at least one element whenever it fails on the
// content of the file; errors.As can extract it or any single *Error.
type Errors []*Error

// Error returns the errors one per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns the individual errors (for errors.Is and errors.As).
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Is reports whether target is ErrInvalid (an empty Errors matches it too).
func (es Errors) Is(target error) bool { return target == ErrInvalid }

// Warning is a lint finding about a valid policy (see Policy.Check): the
// policy works, but probably not as its author intended.
type Warning struct {
	Pos     Position
	Message string
}

// String returns "file:line:col: warning: message".
func (w Warning) String() string { return w.Pos.String() + ": warning: " + w.Message }
