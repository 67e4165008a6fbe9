package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trustd/trustd/cache/publish"
	"github.com/trustd/trustd/plugin/archive"
	"github.com/trustd/trustd/plugin/local"
	"github.com/trustd/trustd/policy"
)

const repoUsage = `usage: trustd repo COMMAND DIR [options]
  init DIR [--key-type ed25519|ecdsa-p256] [--root-keys N --root-threshold K] [--keys KEYDIR]
           [--root-expiry D --targets-expiry D --snapshot-expiry D --timestamp-expiry D]
  sign DIR IMAGE... [--role R] [--key KEYFILE]... [--insecure-registry]
  sign DIR IMAGE --digest sha256:... --length N      (no network)
  sign DIR --archive TAR                              (the images of a docker save / OCI layout tar)
  unsign DIR IMAGE... [--role R] [--key KEYFILE]...
  delegate DIR ROLE --key PUBKEY... [--threshold K] --repositories PATTERN... [--terminating]
  keygen FILE [--key-type T]                          (FILE private, FILE.pub public)
  status DIR [--json]
  refresh DIR [--margin D] [--role R]... [--key KEYFILE]...
  sign-metadata DIR ROLE --key KEYFILE...
  rotate DIR ROLE
  import-notary DIR --source NAME [PATTERN...] [--config POLICY] [--fetch] [--per-signer]
           [--signers ROLE,...] [--role R] [--allow-expired] [--key KEYFILE]...
Private keys are sealed with the passphrase of --passphrase-file FILE or
$TRUSTD_REPO_PASSPHRASE when one is given (never on the command line).
`

// listFlag is a flag that may be repeated, each value also split at commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// repoFlags are the options every repo command takes.
type repoFlags struct {
	fs             *flag.FlagSet
	keys           listFlag
	keyDir         string
	passphraseFile string
	binsThreshold  int
}

func newRepoFlags(verb string, stderr io.Writer) *repoFlags {
	f := &repoFlags{fs: flag.NewFlagSet("trustd repo "+verb, flag.ContinueOnError)}
	f.fs.SetOutput(stderr)
	f.fs.StringVar(&f.keyDir, "keys", "", "private key directory (default: the one chosen at init, DIR/keys)")
	f.fs.StringVar(&f.passphraseFile, "passphrase-file", "", "file holding the keys' passphrase (else $TRUSTD_REPO_PASSPHRASE)")
	if verb != "keygen" {
		f.fs.IntVar(&f.binsThreshold, "bins-threshold", 0, fmt.Sprintf("a role with more targets than this moves into succinct hash bins (init: recorded for the repository, default %d; other commands: for this command)", publish.DefaultBinsThreshold))
	}
	return f
}

func (f *repoFlags) passphrase() ([]byte, error) {
	if f.passphraseFile != "" {
		data, err := os.ReadFile(f.passphraseFile)
		if err != nil {
			return nil, err
		}
		p := bytes.TrimRight(data, "\r\n")
		if len(p) == 0 {
			return nil, fmt.Errorf("passphrase file %s is empty", f.passphraseFile)
		}
		return p, nil
	}
	return []byte(os.Getenv("TRUSTD_REPO_PASSPHRASE")), nil
}

// open opens the repository, with the --key files added to its keys.
func (f *repoFlags) open(dir string) (*publish.Repo, error) {
	pass, err := f.passphrase()
	if err != nil {
		return nil, err
	}
	return publish.Open(dir, publish.Options{KeyDir: f.keyDir, Passphrase: pass, Keys: f.keys, BinsThreshold: f.binsThreshold})
}

// cmdRepo is `trustd repo ...`: the publishing side (package cache/publish).
func cmdRepo(args []string, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 {
		return exitUsage, usageError{repoUsage}
	}
	verb := args[0]
	f := newRepoFlags(verb, stderr)
	fs := f.fs
	var role string
	if verb != "init" && verb != "keygen" {
		fs.Var(&f.keys, "key", "private key file to sign with (repeatable); for delegate: the role's public keys")
	}
	switch verb {
	case "init":
		o := publish.InitOptions{}
		fs.StringVar(&o.KeyType, "key-type", publish.KeyEd25519, "ed25519 or ecdsa-p256")
		fs.IntVar(&o.RootKeys, "root-keys", 1, "number of root keys")
		fs.IntVar(&o.RootThreshold, "root-threshold", 1, "root keys that must sign a root")
		fs.DurationVar(&o.Expiry.Root, "root-expiry", publish.DefaultExpiry.Root, "root lifetime")
		fs.DurationVar(&o.Expiry.Targets, "targets-expiry", publish.DefaultExpiry.Targets, "targets (and delegated roles) lifetime")
		fs.DurationVar(&o.Expiry.Snapshot, "snapshot-expiry", publish.DefaultExpiry.Snapshot, "snapshot lifetime")
		fs.DurationVar(&o.Expiry.Timestamp, "timestamp-expiry", publish.DefaultExpiry.Timestamp, "timestamp lifetime")
		pos, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return exitUsage, err
		}
		if len(pos) != 1 {
			return exitUsage, usageError{"usage: trustd repo init DIR [options]"}
		}
		if o.Passphrase, err = f.passphrase(); err != nil {
			return exitUsage, err
		}
		o.KeyDir = f.keyDir
		o.BinsThreshold = f.binsThreshold
		in, err := publish.Init(pos[0], o)
		if err != nil {
			return exitDenied, err
		}
		fmt.Fprintf(stdout, "repository %s: publish %s/metadata/ on any static HTTP server\n", pos[0], strings.TrimRight(pos[0], "/"))
		fmt.Fprintln(stdout, "root key IDs:")
		for _, id := range in.RootKeyIDs {
			fmt.Fprintln(stdout, "  "+id)
		}
		fmt.Fprintln(stdout, "private keys (keep the root keys offline):")
		for _, k := range in.KeyFiles {
			fmt.Fprintln(stdout, "  "+k)
		}
		fmt.Fprintf(stdout, "\ncopy %s to each node and add to policy.toml:\n\n%s", in.RootPath, in.SourceBlock("corp"))
		return exitOK, nil
	case "keygen":
		keyType := fs.String("key-type", publish.KeyEd25519, "ed25519 or ecdsa-p256")
		pos, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return exitUsage, err
		}
		if len(pos) != 1 {
			return exitUsage, usageError{"usage: trustd repo keygen FILE"}
		}
		pass, err := f.passphrase()
		if err != nil {
			return exitUsage, err
		}
		k, err := publish.GenerateKeyPair(pos[0], *keyType, pass)
		if err != nil {
			return exitDenied, err
		}
		fmt.Fprintf(stdout, "key %s: private %s (keep it), public %s.pub (give it to the repository's owner)\n", k.ID, pos[0], pos[0])
		return exitOK, nil
	case "sign", "unsign":
		fs.StringVar(&role, "role", publish.RoleTargets, "the role to sign into (targets or a delegated role)")
		dg := fs.String("digest", "", "the manifest's digest (with --length: no network)")
		length := fs.Int64("length", 0, "the manifest's length in bytes")
		arch := fs.String("archive", "", "sign the images of a docker save or OCI layout tar")
		insecure := fs.Bool("insecure-registry", false, "allow plain HTTP to loopback registries")
		pos, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return exitUsage, err
		}
		if len(pos) < 1 {
			return exitUsage, usageError{"usage: trustd repo " + verb + " DIR IMAGE..."}
		}
		dir, images := pos[0], pos[1:]
		if verb == "unsign" {
			if len(images) == 0 || *dg != "" || *arch != "" {
				return exitUsage, usageError{"usage: trustd repo unsign DIR IMAGE... [--role R]"}
			}
			return withRepo(f, dir, stdout, func(r *publish.Repo) (any, error) { return r.Unsign(role, images, f.keys) })
		}
		var bs []publish.Binding
		switch {
		case *arch != "":
			if len(images) > 0 || *dg != "" {
				return exitUsage, usageError{"--archive signs the archive's own names: give no IMAGE and no --digest"}
			}
			if bs, err = archiveBindings(*arch); err != nil {
				return exitDenied, err
			}
		case *dg != "" || *length != 0:
			if len(images) != 1 {
				return exitUsage, usageError{"--digest and --length sign exactly one IMAGE"}
			}
			b, err := publish.NewBinding(images[0], digest.Digest(*dg), *length)
			if err != nil {
				return exitUsage, err
			}
			bs = []publish.Binding{b}
		default:
			if len(images) == 0 {
				return exitUsage, usageError{"usage: trustd repo sign DIR IMAGE..."}
			}
			ctx, stop := signalContext()
			defer stop()
			rv := &publish.Resolver{Insecure: *insecure}
			for _, img := range images {
				b, err := rv.Resolve(ctx, img)
				if err != nil {
					return exitDenied, err
				}
				bs = append(bs, b)
			}
		}
		return withRepo(f, dir, stdout, func(r *publish.Repo) (any, error) { return r.Sign(role, bs, f.keys) })
	case "delegate":
		var repos listFlag
		fs.Var(&repos, "repositories", "policy repository patterns the role signs (repeatable)")
		threshold := fs.Int("threshold", 1, "how many of the role's keys must sign")
		terminating := fs.Bool("terminating", false, "a search for a name in the role's paths ends at the role")
		pos, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return exitUsage, err
		}
		if len(pos) != 2 || len(f.keys) == 0 || len(repos) == 0 {
			return exitUsage, usageError{"usage: trustd repo delegate DIR ROLE --key PUBKEY... --repositories PATTERN... [--threshold K] [--terminating]"}
		}
		var keys []*metadata.Key
		for _, p := range f.keys {
			k, err := publish.ReadPublicKey(p)
			if err != nil {
				return exitUsage, err
			}
			keys = append(keys, k)
		}
		f.keys = nil
		o := publish.DelegateOptions{Keys: keys, Threshold: *threshold, Repositories: repos, Terminating: *terminating}
		return withRepo(f, pos[0], stdout, func(r *publish.Repo) (any, error) { return r.Delegate(pos[1], o) })
	case "status":
		jsonOut := fs.Bool("json", false, "JSON output")
		pos, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return exitUsage, err
		}
		if len(pos) != 1 {
			return exitUsage, usageError{"usage: trustd repo status DIR [--json]"}
		}
		r, err := f.open(pos[0])
		if err != nil {
			return exitDenied, err
		}
		defer r.Close()
		st := r.Status()
		if *jsonOut {
			return exitOK, json.NewEncoder(stdout).Encode(st)
		}
		printRepoStatus(stdout, st)
		return exitOK, nil
	case "refresh":
		margin := fs.Duration("margin", 12*time.Hour, "re-sign what expires within this; fail for what cannot be")
		var renew listFlag
		fs.Var(&renew, "role", "also sign this role again with a new expiry (repeatable)")
		pos, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return exitUsage, err
		}
		if len(pos) != 1 || *margin < 0 {
			return exitUsage, usageError{"usage: trustd repo refresh DIR [--margin D] [--role R]..."}
		}
		r, err := f.open(pos[0])
		if err != nil {
			return exitDenied, err
		}
		defer r.Close()
		res, err := r.Refresh(*margin, renew)
		if err != nil {
			return exitDenied, err
		}
		if len(res.Renewed) > 0 {
			fmt.Fprintf(stdout, "signed again: %s\n", strings.Join(res.Renewed, ", "))
		}
		for _, e := range res.Expiring {
			fmt.Fprintln(stderr, "trustd repo refresh: "+e)
		}
		if len(res.Expiring) > 0 {
			return exitDenied, nil
		}
		return exitOK, nil
	case "import-notary":
		return cmdImportNotary(f, args[1:], stdout, stderr)
	case "sign-metadata", "rotate":
		pos, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return exitUsage, err
		}
		if len(pos) != 2 {
			return exitUsage, usageError{"usage: trustd repo " + verb + " DIR ROLE"}
		}
		if verb == "rotate" {
			return withRepo(f, pos[0], stdout, func(r *publish.Repo) (any, error) { return r.Rotate(pos[1]) })
		}
		return withRepo(f, pos[0], stdout, func(r *publish.Repo) (any, error) { return r.SignMetadata(pos[1], f.keys) })
	}
	return exitUsage, usageError{fmt.Sprintf("unknown repo command %q\n%s", verb, repoUsage)}
}

// withRepo opens dir, runs do and prints what it saved.
func withRepo(f *repoFlags, dir string, stdout io.Writer, do func(*publish.Repo) (any, error)) (int, error) {
	r, err := f.open(dir)
	if err != nil {
		return exitDenied, err
	}
	defer r.Close()
	res, err := do(r)
	if err != nil {
		return exitDenied, err
	}
	var saved *publish.Saved
	switch v := res.(type) {
	case *publish.SignResult:
		for _, c := range v.Changed {
			fmt.Fprintln(stdout, "changed: "+c)
		}
		if len(v.Changed) == 0 {
			fmt.Fprintln(stdout, "nothing to change")
		}
		saved = &v.Saved
	case *publish.Rotated:
		for _, k := range v.NewKeys {
			fmt.Fprintln(stdout, "new key: "+k)
		}
		for _, k := range v.Retired {
			fmt.Fprintln(stdout, "retired key: "+k)
		}
		saved = &v.Saved
	case *publish.Saved:
		saved = v
	}
	if len(saved.Published) > 0 {
		fmt.Fprintf(stdout, "published: %s\n", strings.Join(saved.Published, ", "))
	}
	for _, p := range saved.Pending {
		fmt.Fprintln(stdout, "pending: "+p)
	}
	return exitOK, nil
}

// archiveBindings reads an image archive and returns a binding per name
// its images would be loaded as.
func archiveBindings(path string) ([]publish.Binding, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	defer fh.Close()
	a, err := archive.Read(fh, archive.Options{})
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", path, err)
	}
	var imgs []publish.ArchiveImage
	for _, img := range a.Images {
		ai := publish.ArchiveImage{Names: img.Names, Digest: img.ManifestDigest, Problems: img.Problems}
		if b, ok := a.Blob(img.ManifestDigest); ok {
			ai.Length = int64(len(b))
		}
		imgs = append(imgs, ai)
	}
	return publish.ArchiveBindings(imgs)
}

func printRepoStatus(w io.Writer, st *publish.Status) {
	fmt.Fprintf(w, "%-16s %8s  %-20s  %s\n", "ROLE", "VERSION", "EXPIRES", "SIGNATURES")
	for _, r := range st.Roles {
		exp := "-"
		if !r.Expires.IsZero() {
			exp = r.Expires.UTC().Format(time.RFC3339)
		}
		line := fmt.Sprintf("%-16s %8d  %-20s  %d of %d (keys %d)", r.Role, r.Version, exp, r.Signatures, r.Threshold, r.Keys)
		if r.Pending != nil {
			state := "waiting"
			if r.Pending.Ready {
				state = "ready"
			}
			line += fmt.Sprintf("; pending version %d: %d of %d, %s", r.Pending.Version, r.Pending.Signatures, r.Pending.Threshold, state)
		}
		fmt.Fprintln(w, line)
		if b := r.Bins; b != nil {
			line := fmt.Sprintf("%-16s bins: %d targets in %d succinct hash bins %s-* (bit_length %d), signed by the role's keys", "", r.Targets, b.Bins, b.Prefix, b.BitLength)
			if b.Pending > 0 {
				line += fmt.Sprintf("; %d bins pending", b.Pending)
			}
			fmt.Fprintln(w, line)
		}
	}
	if len(st.WouldPublish) > 0 {
		fmt.Fprintf(w, "would publish: %s\n", strings.Join(st.WouldPublish, ", "))
	}
	for _, l := range st.Waiting {
		fmt.Fprintln(w, "pending: "+l)
	}
}

// cmdImportNotary is `trustd repo import-notary`: the tag→digest bindings
// of a Notary source, as trustd's cache holds them verified (or fetches
// and verifies them now), signed into the TUF repository.
func cmdImportNotary(f *repoFlags, args []string, stdout, stderr io.Writer) (int, error) {
	fs := f.fs
	def := os.Getenv("TRUSTD_CONFIG")
	if def == "" {
		def = DefaultConfig
	}
	cfg := fs.String("config", def, "policy file naming the Notary source (env TRUSTD_CONFIG)")
	source := fs.String("source", "", "the policy's Notary source to import")
	fetch := fs.Bool("fetch", false, "fetch and verify the source's trust data now (writes trustd's cache)")
	perSigner := fs.Bool("per-signer", false, "one role per Notary signer: targets/NAME into delegated role NAME")
	var signers listFlag
	fs.Var(&signers, "signers", "without --per-signer: the Notary roles consulted in order (default targets/releases,targets)")
	role := fs.String("role", publish.RoleTargets, "without --per-signer: the role to sign into")
	allowExpired := fs.Bool("allow-expired", false, "import expired Notary trust data (with a warning)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return exitUsage, err
	}
	usage := usageError{"usage: trustd repo import-notary DIR --source NAME [PATTERN...] [--fetch] [--per-signer]"}
	if len(pos) < 1 || *source == "" || (*perSigner && (len(signers) > 0 || *role != publish.RoleTargets)) {
		return exitUsage, usage
	}
	o := publish.ImportOptions{PerSigner: *perSigner, Signers: signers, Role: *role, AllowExpired: *allowExpired, Keys: f.keys}
	for _, s := range pos[1:] {
		p, err := policy.ParsePattern(s)
		if err != nil {
			return exitUsage, usageError{fmt.Sprintf("pattern %q: %v", s, err)}
		}
		o.Patterns = append(o.Patterns, p)
	}
	_, store, err := local.OpenStore(*cfg)
	if err != nil {
		return exitUsage, err
	}
	ctx, stop := signalContext()
	defer stop()
	nd, err := publish.LoadNotary(ctx, store, *source, o.Patterns, *fetch, store.Clock.Now())
	if err != nil {
		return exitDenied, err
	}
	for _, pr := range nd.Problems {
		fmt.Fprintln(stderr, "trustd repo import-notary: "+pr)
	}
	var res *publish.ImportResult
	code, err := withRepo(f, pos[0], stdout, func(r *publish.Repo) (any, error) {
		var err error
		if res, err = r.ImportNotary(nd, o); err != nil {
			return nil, err
		}
		for _, w := range res.Warnings {
			fmt.Fprintln(stderr, "trustd repo import-notary: warning: "+w)
		}
		for _, d := range res.Delegated {
			fmt.Fprintln(stdout, "delegated: "+d)
		}
		for _, role := range slices.Sorted(maps.Keys(res.Changed)) {
			for _, c := range res.Changed[role] {
				fmt.Fprintf(stdout, "changed: %s: %s\n", role, c)
			}
		}
		if len(res.Changed) == 0 {
			fmt.Fprintln(stdout, "nothing to change")
		}
		for _, s := range res.Skipped {
			fmt.Fprintln(stdout, "not imported: "+s)
		}
		return &res.Saved, nil
	})
	if err != nil {
		return code, err
	}
	fmt.Fprintln(stdout, "signers: in the policy's rules for the TUF source, name these roles:")
	for _, nr := range slices.Sorted(maps.Keys(res.Roles)) {
		fmt.Fprintf(stdout, "  %s -> %s\n", nr, res.Roles[nr])
	}
	return code, nil
}
