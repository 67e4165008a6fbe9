// Package control is the daemon's control socket: a Unix socket, mode
// 0600 in a 0700 directory, serving relayed pulls (internal/pullgate's
// Path), the status, a sync and a cache reload; and the client the command
// line uses.
package control
