package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/plugin/control"
	"github.com/trustd/trustd/plugin/engine"
	"github.com/trustd/trustd/plugin/gate"
	"github.com/trustd/trustd/plugin/local"
	"github.com/trustd/trustd/plugin/selfcheck"
	"github.com/trustd/trustd/plugin/status"

	"github.com/trustd/trustd/internal/pullgate"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
	"github.com/trustd/trustd/verify/notary"
)

func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelError}))
}

// daemonClient returns a client for the running daemon's control socket,
// or nil when no daemon answers there.
func daemonClient(p *policy.Policy) *control.ControlClient {
	return daemonClientAt(p.Daemon.ControlSocket)
}

// daemonClientAt is daemonClient for a socket path.
func daemonClientAt(socket string) *control.ControlClient {
	if socket == "" {
		return nil
	}
	if _, err := os.Stat(socket); err != nil {
		return nil
	}
	c := &control.ControlClient{Socket: socket, Timeout: 2 * time.Second}
	var st status.DaemonStatus
	if err := c.Get(context.Background(), "GET", "/v1/status", &st); err != nil {
		return nil
	}
	c.Timeout = 10 * time.Minute
	return c
}

func cmdSync(args []string, stdout, stderr io.Writer) (int, error) {
	fs, cfg := newFlags("sync", stderr)
	jsonOut := fs.Bool("json", false, "one JSON object per source")
	if pos, err := parseInterleaved(fs, args); err != nil {
		return exitUsage, err
	} else if len(pos) > 0 {
		return exitUsage, usageError{"sync takes no arguments"}
	}
	p, err := local.LoadPolicy(*cfg)
	if err != nil {
		return exitUsage, err
	}
	ctx, stop := signalContext()
	defer stop()
	var results []cache.SyncResult
	if c := daemonClient(p); c != nil {
		// The daemon syncs, so its in-memory index is refreshed too.
		if err := c.Get(ctx, "POST", "/v1/sync", &results); err != nil {
			return exitDenied, err
		}
	} else {
		l, err := local.OpenLocalPolicy(p, quietLogger(stderr))
		if err != nil {
			return exitUsage, err
		}
		results = l.Sync(ctx)
	}
	code := exitOK
	for _, r := range results {
		if !r.OK {
			code = exitDenied
		}
		if *jsonOut {
			json.NewEncoder(stdout).Encode(r)
			continue
		}
		switch {
		case !r.OK:
			fmt.Fprintf(stdout, "%s: FAILED: %s\n", r.Source, r.Error)
		case r.Changed:
			fmt.Fprintf(stdout, "%s: updated: %s\n", r.Source, r.Summary)
		default:
			fmt.Fprintf(stdout, "%s: unchanged: %s\n", r.Source, r.Summary)
		}
	}
	return code, nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signalNotify(context.Background())
}

func cmdVerify(args []string, stdout, stderr io.Writer) (int, error) {
	fs, cfg := newFlags("verify", stderr)
	ns := fs.String("namespace", "", "judge as a container in this Kubernetes namespace (default: as a pull, allowed if some namespace would allow it)")
	jsonOut := fs.Bool("json", false, "one JSON object per image")
	archive := fs.String("archive", "", "judge every image in a docker save or OCI layout tar, or an OCI layout directory (`cosign save --dir`), with the cosign signatures it carries")
	asName := fs.String("name", "", "with --archive: the reference an image the archive gives no name is loaded as (as `ctr images import --index-name REF`, or `--base-name REPO --digests`)")
	importSigs := fs.Bool("import", false, "with --archive: also write the cosign signatures the archive carries that verify into the node's cache (and have a running daemon reload it)")
	images, err := parseInterleaved(fs, args)
	if err != nil {
		return exitUsage, err
	}
	if *archive != "" {
		if len(images) > 0 {
			return exitUsage, usageError{"--archive takes no image arguments"}
		}
		l, err := local.OpenLocal(*cfg, quietLogger(stderr))
		if err != nil {
			return exitUsage, err
		}
		return verifyArchive(l, *archive, *asName, *ns, *importSigs, *jsonOut, stdout, stderr)
	}
	if *importSigs {
		return exitUsage, usageError{"--import goes with --archive"}
	}
	if len(images) == 0 {
		return exitUsage, usageError{"usage: trustd verify [--namespace NS] [--json] IMAGE..."}
	}
	l, err := local.OpenLocal(*cfg, quietLogger(stderr))
	if err != nil {
		return exitUsage, err
	}
	for _, e := range l.LoadErrors {
		fmt.Fprintf(stderr, "trustd verify: warning: %v\n", e)
	}
	code := exitOK
	for _, img := range images {
		f := verify.Facts{Subject: verify.SubjectCheck, Image: img}
		if *ns != "" {
			f.Subject, f.Namespace = verify.SubjectContainer, *ns
		}
		if ref, err := policy.ParseRef(img); err == nil {
			f.Digest = ref.Digest
		}
		d := l.Engine.Decide(context.Background(), f, engine.Context{Via: engine.ViaCLI})
		if !d.Allowed {
			code = exitDenied
		}
		if *jsonOut {
			json.NewEncoder(stdout).Encode(d)
			continue
		}
		fmt.Fprintln(stdout, d.Message())
	}
	return code, nil
}

func cmdInspect(args []string, stdout, stderr io.Writer) (int, error) {
	fs, cfg := newFlags("inspect", stderr)
	jsonOut := fs.Bool("json", false, "JSON output")
	repos, err := parseInterleaved(fs, args)
	if err != nil {
		return exitUsage, err
	}
	if len(repos) == 0 {
		return exitUsage, usageError{"usage: trustd inspect [--json] REPOSITORY..."}
	}
	l, err := local.OpenLocal(*cfg, quietLogger(stderr))
	if err != nil {
		return exitUsage, err
	}
	code := exitOK
	type out struct {
		Repository string       `json:"repository"`
		Source     string       `json:"source"`
		Repo       *verify.Repo `json:"trust,omitempty"`
		Keys       any          `json:"keys,omitempty"`
		Error      string       `json:"error,omitempty"`
	}
	snap := l.Engine.Snapshot()
	for _, name := range repos {
		repo, err := policy.NormalizeRepo(name)
		if err != nil {
			return exitUsage, usageError{fmt.Sprintf("repository %q: %v", name, err)}
		}
		repo = l.Policy.Origin(repo)
		found := false
		for _, src := range l.Policy.Sources {
			si := snap.Index.Source(src.Name)
			r := si.Repo(repo)
			if r == nil {
				continue
			}
			found = true
			keys := l.Store.NotaryKeys(src.Name, repo)
			if *jsonOut {
				o := out{Repository: repo, Source: src.Name, Repo: r}
				if keys != nil {
					o.Keys = keys
				}
				json.NewEncoder(stdout).Encode(o)
				continue
			}
			fmt.Fprintf(stdout, "Repository %s (source %q, %s; expires %s, role %s)\n", repo, src.Name, si.Version, r.Expires.UTC().Format(time.RFC3339), r.ExpiresRole)
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TAG\tDIGEST\tSIGNERS")
			for _, tag := range r.SortedTags() {
				byDigest := map[string][]string{}
				var order []string
				for _, role := range r.RolesInOrder(tag) {
					dg := string(r.Tags[tag][role].Digest)
					if _, ok := byDigest[dg]; !ok {
						order = append(order, dg)
					}
					byDigest[dg] = append(byDigest[dg], role)
				}
				for _, dg := range order {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", tag, dg, strings.Join(byDigest[dg], ", "))
				}
			}
			tw.Flush()
			if keys != nil {
				printNotaryKeys(stdout, keys)
			}
			for _, pr := range r.Problems {
				fmt.Fprintf(stdout, "warning: %s\n", pr)
			}
		}
		if !found {
			code = exitDenied
			if *jsonOut {
				json.NewEncoder(stdout).Encode(out{Repository: repo, Error: "no trust data in the cache"})
			} else {
				fmt.Fprintf(stdout, "Repository %s: no trust data in the cache\n", repo)
			}
		}
	}
	return code, nil
}

func cmdPolicy(args []string, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 || args[0] != "check" {
		return exitUsage, usageError{"usage: trustd policy check [FILE]"}
	}
	fs, cfg := newFlags("policy check", stderr)
	files, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return exitUsage, err
	}
	if len(files) > 1 {
		return exitUsage, usageError{"usage: trustd policy check [FILE]"}
	}
	path := *cfg
	if len(files) == 1 {
		path = files[0]
	}
	p, err := policy.Load(path)
	if err != nil {
		fmt.Fprintln(stdout, err)
		return exitDenied, nil
	}
	for _, w := range p.Check() {
		fmt.Fprintln(stdout, w.String())
	}
	fmt.Fprintf(stdout, "%s: OK (%d sources, %d rules, mode %s)\n", p.File, len(p.Sources), len(p.Rules), p.Mode)
	return exitOK, nil
}

func cmdStatus(args []string, stdout, stderr io.Writer) (int, error) {
	fs, cfg := newFlags("status", stderr)
	jsonOut := fs.Bool("json", false, "JSON output")
	ctrdCfg := fs.String("containerd-config", envOr("TRUSTD_CONTAINERD_CONFIG", ""), "containerd's config file to check when no daemon runs (default: the running containerd's, from its command line, else "+selfcheck.DefaultContainerdConfig+"; env TRUSTD_CONTAINERD_CONFIG)")
	if pos, err := parseInterleaved(fs, args); err != nil {
		return exitUsage, err
	} else if len(pos) > 0 {
		return exitUsage, usageError{"status takes no arguments"}
	}
	p, perr := local.LoadPolicy(*cfg)
	st := &status.DaemonStatus{}
	running := false
	socket := local.ControlSocketOf(*cfg)
	if p != nil {
		st.Policy, st.Mode, socket = p.File, string(p.Mode), p.Daemon.ControlSocket
	}
	if c := daemonClientAt(socket); c != nil {
		if err := c.Get(context.Background(), "GET", "/v1/status", st); err != nil {
			return exitDenied, err
		}
		running = true
	} else if perr != nil {
		return exitUsage, perr
	} else {
		l, err := local.OpenLocalPolicy(p, quietLogger(stderr))
		if err != nil {
			return exitUsage, err
		}
		st.Sources = status.SourceStatuses(p, l.Store, l.Engine.Snapshot().Index, time.Now())
		loc := selfcheck.LocateContainerdConfig(*ctrdCfg, p.Daemon.ContainerdAddress)
		findings, err := selfcheck.CheckContainerdConfigAt(loc, p.Daemon.NRISocket)
		if err != nil {
			fmt.Fprintf(stderr, "trustd status: could not check containerd's configuration %s: %v\n", loc, err)
		}
		st.ContainerdConfig, st.ContainerdConfigFile = findings, &loc
	}
	if perr != nil {
		fmt.Fprintf(stderr, "trustd status: the policy file does not load (the daemon keeps its last good policy): %v\n", perr)
	}
	if *jsonOut {
		type withDaemon struct {
			*status.DaemonStatus
			DaemonRunning bool `json:"daemon_running"`
		}
		return exitOK, json.NewEncoder(stdout).Encode(withDaemon{st, running})
	}
	if running {
		fmt.Fprintf(stdout, "daemon: running; NRI connected: %v (%s, decides in %s); containerd %s%s\n", st.NRIConnected, st.NRIRuntime, st.NRIMode, st.Containerd, st.ContainerdErr)
		for _, w := range st.Warnings {
			fmt.Fprintf(stdout, "WARNING: %s\n", w)
		}
		if dk := st.Docker; dk != nil {
			fmt.Fprintf(stdout, "docker: authorization plugin on %s; engine %s%s at %s; enforcing: %v (%s)\n", dk.Socket, dk.Engine, dk.EngineErr, dk.Address, dk.Enforcing, dk.Note)
		}
	} else {
		fmt.Fprintln(stdout, "daemon: not running (status from the cache)")
	}
	fmt.Fprintf(stdout, "policy: %s (mode %s)\n", st.Policy, st.Mode)
	if l := st.ContainerdConfigFile; l != nil {
		fmt.Fprintf(stdout, "containerd config file: %s\n", l)
	}
	for _, f := range st.ContainerdConfig {
		fmt.Fprintf(stdout, "containerd config %s\n", f.String())
	}
	if st.ReloadError != "" {
		fmt.Fprintf(stdout, "last reload FAILED at %s, previous policy in force: %s\n", st.ReloadAt.Format(time.RFC3339), st.ReloadError)
	}
	code := exitOK
	for _, s := range st.Sources {
		state := "ok"
		switch {
		case s.LoadError != "":
			state, code = "NO DATA", exitDenied
		case s.Expired:
			state, code = "EXPIRED", exitDenied
		case s.Grace != "":
			state = "ON OFFLINE GRACE"
		case s.Unreachable:
			state = "UNREACHABLE since " + s.UnreachableSince.Format(time.RFC3339) + " (cached data in force)"
		case s.LastError != "":
			state = "STALE (last sync failed)"
		}
		where := s.Kind
		if s.URL != "" {
			where += " " + s.URL
		}
		fmt.Fprintf(stdout, "source %s (%s): %s\n", s.Source, where, state)
		switch {
		case s.Loaded != "" && s.Kind == policy.KindSigstore: // keyed signatures do not expire
			fmt.Fprintf(stdout, "  data: %s; %d repositories, %d signed digests\n", s.Loaded, s.Repositories, s.Tags)
		case s.Loaded != "":
			fmt.Fprintf(stdout, "  data: %s; %d repositories, %d tags; expires %s (%s)\n", s.Loaded, s.Repositories, s.Tags, s.Expires.UTC().Format(time.RFC3339), s.ExpiresRole)
		}
		if !s.LastSuccess.IsZero() {
			fmt.Fprintf(stdout, "  last successful sync: %s\n", s.LastSuccess.Format(time.RFC3339))
		}
		if s.LastError != "" {
			fmt.Fprintf(stdout, "  last sync error (%s): %s\n", s.LastAttempt.Format(time.RFC3339), s.LastError)
		}
		if s.Grace != "" {
			fmt.Fprintf(stdout, "  offline grace %s\n", s.Grace)
		}
		if s.PullDiscovered > 0 {
			fmt.Fprintf(stdout, "  repositories seen at pulls without trust data, kept in sync for a while: %d\n", s.PullDiscovered)
		}
		if s.LoadError != "" {
			fmt.Fprintf(stdout, "  %s\n", s.LoadError)
		}
	}
	return code, nil
}

// runVerifier is trustd invoked as trustd-verifier by containerd on every
// pull (or run by the trustd-verifier executable when no daemon answers).
// A pull has one protocol: the daemon, when one listens, runs the gate on
// the relayed call (pullgate.Relay) as the trustd-verifier executable asks
// it; otherwise trustd decides from the cache itself, with the same code.
// It blocks the pull when it cannot decide.
func runVerifier(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg := pullgate.ConfigPath()
	deadline := time.Now().Add(pullgate.Deadline)
	r, err := pullgate.Relay(args, stdin, cfg, deadline)
	if err == nil {
		stdout.Write(r.Output)
		return r.Code
	}
	if !errors.Is(err, pullgate.ErrNoDaemon) {
		fmt.Fprintf(stderr, "trustd %s: the daemon did not answer (%v); deciding from the cache\n", pullgate.Name, err)
	}
	if r.StdinRead {
		stdin = bytes.NewReader(r.Stdin)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	decide := func(ctx context.Context, f verify.Facts) (verify.Decision, error) {
		p, err := local.LoadPolicy(cfg)
		if err != nil {
			return verify.Decision{}, err
		}
		l, err := local.OpenLocalPolicy(p, quietLogger(stderr))
		if err != nil {
			return verify.Decision{}, err
		}
		return l.Decide(ctx, f)
	}
	return gate.RunVerifier(ctx, args, stdin, stdout, decide)
}

// printNotaryKeys prints a Notary repository's keys as `docker trust
// inspect --pretty` does: signers (delegations), then the repository's
// administrative keys.
func printNotaryKeys(w io.Writer, k *notary.Keys) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(k.Delegations) > 0 {
		fmt.Fprintln(tw, "\nSIGNER ROLE\tKEYS\tTHRESHOLD\tSTATE")
		for _, d := range k.Delegations {
			state := "ok"
			if d.Ignored != "" {
				state = "IGNORED: " + d.Ignored
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", d.Role, strings.Join(d.KeyIDs, ", "), d.Threshold, state)
		}
	}
	fmt.Fprintln(tw, "\nADMINISTRATIVE KEYS\tKEY IDS\tTHRESHOLD")
	for _, r := range []notary.RoleKeys{k.Root, k.Targets, k.Snapshot, k.Timestamp} {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", r.Role, strings.Join(r.KeyIDs, ", "), r.Threshold)
	}
	tw.Flush()
	for _, c := range k.RootCerts {
		state := "signed"
		if !c.Signed {
			state = "not used"
		}
		if c.Problem != "" {
			state += ": " + c.Problem
		}
		fmt.Fprintf(w, "root certificate %s (CN %q, valid %s to %s): %s\n", c.KeyID, c.CommonName, c.NotBefore.Format("2006-01-02"), c.NotAfter.Format("2006-01-02"), state)
	}
}
