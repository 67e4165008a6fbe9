// Package plugin is the tree of packages that connect trustd's decisions to
// containerd and run them as a daemon. Each sub-package does one job:
//
//   - engine: the decision pipeline: an immutable Snapshot (policy + trust
//     index) swapped atomically, Decide/Record, content resolution, the log
//     of every decision (with repeated refusals summarised).
//   - nri: the NRI plugin: the facts of a container (its image and image
//     volumes, names bound to what runs, the pod's namespace) and the
//     fail-closed decision in ValidateContainerAdjustment.
//   - ctrd: the containerd adapter: image store and content reads, the
//     image event watcher that judges and labels arriving images.
//   - gate: the pull gate's code (containerd's image verifier protocol).
//   - control: the control socket (relayed pulls, status, sync, reload).
//   - selfcheck: the check of containerd's configuration, and finding
//     which file containerd runs with.
//   - metrics: Prometheus metrics.
//   - status: what the daemon and the command line report.
//   - local: trustd without a daemon (the command line, the gate's fallback).
//   - daemon: `trustd run`: lifecycle, sync loop, reload.
//
// docs/ARCHITECTURE.md draws the paths through them.
package plugin
