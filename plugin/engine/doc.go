// Package engine is trustd's one decision pipeline. Facts go in (from NRI,
// the pull gate, the command line, an archive, an image event); an
// immutable Snapshot (policy + trust index), held in an atomic pointer and
// swapped whole after each verified sync or policy reload, answers them
// through verify.Decide; and every decision is recorded once (Record: the
// JSON log line and the metrics hook), whoever asked.
//
// Decisions never touch the network. An Engine is safe for concurrent use;
// each decision sees one whole snapshot. Content resolution (which configs
// a signed manifest or index covers) reads content-addressed data only,
// memoised.
package engine
