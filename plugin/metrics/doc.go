// Package metrics is trustd's Prometheus metrics: decisions by verdict,
// rule, namespace and path, their latency, syncs, expiry, offline grace and
// the NRI connection, with bounded label values. Safe for concurrent use.
package metrics
