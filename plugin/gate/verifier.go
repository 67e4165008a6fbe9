package gate

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/internal/pullgate"
	"github.com/trustd/trustd/verify"
)

// VerifierName is the name of the pull gate in the bindir plugin's bin_dir:
// the trustd-verifier executable (cmd/trustd-verifier), and the subcommand
// and argv[0] under which the trustd binary speaks containerd's image
// verifier protocol itself.
const VerifierName = pullgate.Name

// maxVerifierStdin bounds the descriptor read from standard input.
const maxVerifierStdin = pullgate.MaxStdin

// VerifierRequest is a pull, as containerd's bindir image verifier
// describes it: `-name REF -digest DIGEST -stdin-media-type TYPE`, with the
// descriptor on standard input.
type VerifierRequest struct {
	Name      string
	Digest    digest.Digest
	MediaType string
	// Descriptor is the parsed standard input, if any.
	Descriptor struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
		Size      int64         `json:"size"`
	}
}

// ParseVerifierRequest parses the verifier's arguments and standard input.
// Both are treated as hostile: sizes are bounded, digests validated, and
// the descriptor's digest must agree with -digest.
func ParseVerifierRequest(args []string, stdin io.Reader) (*VerifierRequest, error) {
	fs := flag.NewFlagSet(VerifierName, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	r := &VerifierRequest{}
	var dg string
	fs.StringVar(&r.Name, "name", "", "image reference being pulled")
	fs.StringVar(&dg, "digest", "", "digest of the image being pulled")
	fs.StringVar(&r.MediaType, "stdin-media-type", "", "media type of standard input")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("usage: %s -name REF -digest DIGEST -stdin-media-type TYPE: %w", VerifierName, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if r.Name == "" || len(r.Name) > 4096 {
		return nil, errors.New("-name is missing or too long")
	}
	r.Digest = digest.Digest(dg)
	if err := r.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("-digest %q: %w", dg, err)
	}
	if stdin != nil && strings.Contains(r.MediaType, "json") {
		b, err := io.ReadAll(io.LimitReader(stdin, maxVerifierStdin+1))
		if err != nil {
			return nil, fmt.Errorf("reading descriptor: %w", err)
		}
		if len(b) > maxVerifierStdin {
			return nil, fmt.Errorf("descriptor on standard input is larger than %d bytes", maxVerifierStdin)
		}
		if len(strings.TrimSpace(string(b))) > 0 {
			if err := json.Unmarshal(b, &r.Descriptor); err != nil {
				return nil, fmt.Errorf("descriptor on standard input: %w", err)
			}
			if r.Descriptor.Digest != "" && r.Descriptor.Digest != r.Digest {
				return nil, fmt.Errorf("descriptor digest %s differs from -digest %s", r.Descriptor.Digest, r.Digest)
			}
		}
	}
	return r, nil
}

// Facts returns the facts of the pull.
func (r *VerifierRequest) Facts() verify.Facts {
	return verify.Facts{Subject: verify.SubjectPull, Image: r.Name, Digest: r.Digest}
}

// DecideFunc decides facts; an error means "could not decide".
type DecideFunc func(ctx context.Context, f verify.Facts) (verify.Decision, error)

// RunVerifier runs the pull gate: it prints one line with the verdict and
// its reason on stdout (containerd shows it as the reason a pull was
// blocked) and returns the exit code: 0 allows the pull, 1 blocks it. A
// failure to decide blocks too (fail closed).
func RunVerifier(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, decide DecideFunc) int {
	req, err := ParseVerifierRequest(args, stdin)
	if err != nil {
		fmt.Fprintf(stdout, "trustd: denied: cannot judge this pull: %s\n", sanitize(err.Error()))
		return 1
	}
	d, err := decide(ctx, req.Facts())
	if err != nil {
		io.WriteString(stdout, pullgate.Undecided(req.Name, string(req.Digest), err.Error()))
		return 1
	}
	fmt.Fprintln(stdout, sanitize(d.Message()))
	if d.Allowed {
		return 0
	}
	return 1
}

// sanitize makes hostile text safe for one line.
func sanitize(s string) string { return pullgate.Sanitize(s) }
