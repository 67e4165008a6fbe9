package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/trustd/trustd/plugin/local"

	"golang.org/x/term"

	"github.com/trustd/trustd/plugin/archive"
	"github.com/trustd/trustd/policy"
)

// verifyArchive judges every image in a docker save or OCI layout tar (or
// an OCI layout directory), before it is loaded, from the cache and the
// cosign signatures the archive carries (verified with the policy's keys):
// one verdict per image and name it would be loaded as. An image the
// archive has tampered with, lacks content of, or gives no name is denied.
//
// asName, if set, is the reference an image without a name is loaded as
// (`ctr images import --index-name`); the archive must then hold exactly
// one such image. With importSigs, the archive's signatures that verify
// are written to the cache too.
func verifyArchive(l *local.Local, path, asName, namespace string, importSigs, jsonOut bool, stdout, stderr io.Writer) (int, error) {
	if asName != "" {
		if _, err := policy.ParseRef(asName); err != nil {
			return exitUsage, fmt.Errorf("--name: %w", err)
		}
	}
	for _, e := range l.LoadErrors {
		fmt.Fprintf(stderr, "trustd verify: warning: %v\n", e)
	}
	ctx, stop := signalContext()
	defer stop()
	a, err := readArchive(ctx, path, stderr)
	if err != nil {
		return exitUsage, fmt.Errorf("archive %s: %w", path, err)
	}
	lines, err := l.ArchiveSignatures(a, asName, importSigs)
	for _, line := range lines {
		fmt.Fprintf(stderr, "trustd verify: signatures: %s\n", line)
	}
	if err != nil {
		fmt.Fprintf(stderr, "trustd verify: warning: the archive's signatures: %v\n", err)
	}
	if importSigs && len(lines) > 0 {
		reloadDaemonCache(l.Policy, "trustd verify --import", stderr, stderr)
	}
	if len(a.Images) == 0 {
		fmt.Fprintf(stderr, "trustd verify: archive %s holds no image\n", path)
		return exitDenied, nil
	}

	ds, err := l.JudgeArchive(ctx, a, asName, namespace)
	if err != nil {
		return exitUsage, fmt.Errorf("archive %s: %w", path, err)
	}
	code := exitOK
	for _, d := range ds {
		if !d.Allowed {
			code = exitDenied
		}
		if jsonOut {
			json.NewEncoder(stdout).Encode(d)
			continue
		}
		fmt.Fprintln(stdout, d.Message())
	}
	return code, nil
}

// readArchive reads the archive at path: a tar (docker save, OCI layout),
// or an OCI layout directory.
func readArchive(ctx context.Context, path string, stderr io.Writer) (*archive.Archive, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return archive.ReadDir(path, archive.Options{})
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var opts archive.Options
	bar := newProgressBar(stderr, f)
	if bar != nil {
		opts.Progress = bar.update
	}
	a, err := archive.Read(ctxReader{ctx, f}, opts)
	bar.clear()
	return a, err
}

// ctxReader stops reading when ctx is done (Ctrl-C on a large archive).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// progressBar shows how much of the archive has been read, on a terminal.
type progressBar struct {
	w     io.Writer
	name  string
	total int64
	last  time.Time
	shown bool
}

// newProgressBar returns a bar for reading f, or nil when stderr is not a
// terminal (a log, a pipe): the bar is for people watching.
func newProgressBar(stderr io.Writer, f *os.File) *progressBar {
	tf, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(tf.Fd())) {
		return nil
	}
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	return &progressBar{w: stderr, name: filepath.Base(f.Name()), total: st.Size()}
}

func (p *progressBar) update(n int64) {
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last, p.shown = now, true
	pct := 100
	if p.total > 0 && n < p.total {
		pct = int(n * 100 / p.total)
	}
	fmt.Fprintf(p.w, "\rtrustd: reading %s: %3d%% (%s of %s)\033[K", p.name, pct, mib(n), mib(p.total))
}

// clear removes the bar, so that verdicts start on a clean line.
func (p *progressBar) clear() {
	if p != nil && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
