// Package selfcheck reads containerd's configuration as containerd does
// (imports, version migration, merge) and reports every setting that lets
// containers or pulls past trustd, written for the operator; and it finds
// which file the running containerd uses (its command line). It only reads
// files.
package selfcheck
