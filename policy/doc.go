// Package policy parses, validates and matches trustd's host policy file
// (/etc/trustd/policy.toml).
//
// The policy file is security configuration, so it is decoded paranoidly:
// unknown keys (keys are case-sensitive), duplicate keys, values of the wrong
// type, unknown enum values, empty lists where a list is required and trailing
// garbage are all errors, reported as "file:line:col: message" (see [Error]).
// A policy that does not parse is never returned: [Parse] and [Load] return
// either a complete, validated *[Policy] or an error that matches
// [ErrInvalid]. Nothing in a policy is defaulted in a way that weakens it: a
// repository that no rule matches is denied by the caller ([Policy.Match]
// returns nil).
//
// A parsed *Policy is immutable: none of its methods modify it and callers
// must not modify its fields, so it is safe for concurrent use by any number
// of goroutines, which is how the daemon uses it (an atomic.Pointer swapped
// whole on reload). The matching methods ([Policy.Match], [Policy.Origin],
// [Pattern.Match]) do no I/O and do not allocate.
//
// Repository names are handled in their normalised Docker form
// ("nginx" is "docker.io/library/nginx"): see [NormalizeRepo], [ParseRef] and
// [ParsePattern] for the pattern syntax.
package policy
