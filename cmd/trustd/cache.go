package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/trustd/trustd/plugin/local"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/policy"
)

// cmdCache is `trustd cache export|import`: carrying verified trust data
// to an air-gapped node.
func cmdCache(args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 || (args[0] != "export" && args[0] != "import") {
		return exitUsage, usageError{"usage: trustd cache export FILE [REPOSITORY_PATTERN...] | trustd cache import FILE"}
	}
	op := args[0]
	fs, cfg := newFlags("cache "+op, stderr)
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return exitUsage, err
	}
	if len(pos) == 0 || (op == "import" && len(pos) != 1) {
		return exitUsage, usageError{"usage: trustd cache export FILE [REPOSITORY_PATTERN...] | trustd cache import FILE"}
	}
	p, store, err := local.OpenStore(*cfg)
	if err != nil {
		return exitUsage, err
	}
	file := pos[0]
	var lines []string
	switch op {
	case "export":
		var pats []policy.Pattern
		for _, s := range pos[1:] {
			pat, err := policy.ParsePattern(s)
			if err != nil {
				return exitUsage, usageError{fmt.Sprintf("pattern %q: %v", s, err)}
			}
			pats = append(pats, pat)
		}
		var buf bytes.Buffer
		if lines, err = store.ExportTo(&buf, pats, store.Clock.Now()); err != nil {
			return exitDenied, err
		}
		if file == "-" {
			_, err = stdout.Write(buf.Bytes())
		} else {
			err = cache.WriteFileAtomic(file, buf.Bytes(), 0o600)
		}
		if err != nil {
			return exitDenied, err
		}
	case "import":
		var r io.Reader = stdin
		if file != "-" {
			f, err := os.Open(file)
			if err != nil {
				return exitUsage, err
			}
			defer f.Close()
			r = f
		}
		lines, err = store.ImportFrom(r, store.Clock.Now())
	}
	out := stdout
	if file == "-" && op == "export" {
		out = stderr
	}
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	if err != nil {
		return exitDenied, err
	}
	if op == "import" {
		reloadDaemonCache(p, "trustd cache import", out, stderr)
	}
	return exitOK, nil
}

// reloadDaemonCache asks a running daemon to reload its cache from disk
// now (it would pick new data up at its next sync round anyway).
func reloadDaemonCache(p *policy.Policy, cmd string, out, stderr io.Writer) {
	if c := daemonClient(p); c != nil {
		var problems []string
		if err := c.Get(context.Background(), "POST", "/v1/reload-cache", &problems); err != nil {
			fmt.Fprintf(stderr, "%s: the running daemon did not reload its cache: %v\n", cmd, err)
		} else {
			fmt.Fprintln(out, "the running daemon reloaded its cache")
		}
	}
}
