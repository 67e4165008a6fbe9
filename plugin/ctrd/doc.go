// Package ctrd is trustd's connection to containerd's image and content
// stores in one namespace (it reconnects after containerd restarts), and the
// watcher that judges and labels every image that arrives. What
// content-addressed data determines (a manifest's config, a config's
// layers) is memoised, so decisions read no content. Safe for concurrent use.
package ctrd
