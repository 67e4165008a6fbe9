// Package daemon is `trustd run`. Start-up order: the policy (refuse to
// start on error) → the cache → the control socket → NRI → READY=1;
// STOPPING=1 on shutdown. It keeps the NRI plugin registered (reconnecting
// after containerd restarts), syncs every source in the background and
// swaps the engine's snapshot after each verified sync, reloads the policy
// on SIGHUP (keeping the last good one on error), and feeds the systemd
// watchdog only while the decision path and the sync loop are healthy.
package daemon
