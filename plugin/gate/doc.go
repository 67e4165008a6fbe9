// Package gate is the pull gate's code: containerd's image verifier
// protocol (arguments and descriptor, bounded and validated as hostile)
// turned into a pull decision and one line of output with an exit code.
// The daemon runs it on relayed calls and the trustd binary without a
// daemon, so the two cannot disagree; internal/pullgate holds the wire
// contract. A failure to decide blocks the pull.
package gate
