// Package local is trustd without a daemon: the policy and the verified
// cache loaded into this process for the command line and for the pull gate
// when no daemon answers; and the sync of every source, shared with the
// daemon. It touches the network only in Sync.
package local
