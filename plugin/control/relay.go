package control

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/trustd/trustd/plugin/engine"
	"github.com/trustd/trustd/plugin/gate"

	"github.com/trustd/trustd/internal/pullgate"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// The pull gate relayed over the control socket: the trustd-verifier
// executable and `trustd trustd-verifier` send what containerd gave them
// to POST pullgate.Path (pullgate.Relay) and print the answer. The daemon
// runs RunVerifier on it, the code `trustd trustd-verifier` runs without a
// daemon, so the two cannot disagree on arguments, standard input, the
// reason printed or the exit code.
const (
	// VerifierPath is the control socket's endpoint for a relayed pull gate.
	VerifierPath = pullgate.Path
	// VerifierExitHeader carries the exit code of a relayed pull gate; the
	// response body is its standard output.
	VerifierExitHeader = pullgate.ExitHeader
)

// VerifierCall is one run of the pull gate, relayed (pullgate.Call).
type VerifierCall = pullgate.Call

// verifier answers a relayed pull gate. As `trustd trustd-verifier` does,
// it judges the policy file first: one that does not validate blocks the
// pull, even though the daemon decides with the last good policy it runs.
func (c *ControlServer) verifier(w http.ResponseWriter, r *http.Request) {
	var call VerifierCall
	if err := json.NewDecoder(io.LimitReader(r.Body, pullgate.MaxCall)).Decode(&call); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	args := make([]string, len(call.Args))
	for i, a := range call.Args {
		args[i] = string(a)
	}
	var stdin io.Reader = bytes.NewReader(call.Stdin)
	if call.StdinError != "" {
		stdin = io.MultiReader(stdin, errReader{errors.New(call.StdinError)})
	}
	decide := func(ctx context.Context, f verify.Facts) (verify.Decision, error) {
		p, err := c.policies.parse(call.Config, call.Policy)
		if err != nil {
			return verify.Decision{}, fmt.Errorf("%w: %w", engine.ErrConfig, err)
		}
		if p.Daemon.ControlSocket != call.Socket {
			return verify.Decision{}, fmt.Errorf("%w: %s names the control socket %s, but the verifier asked %s", engine.ErrConfig, call.Config, p.Daemon.ControlSocket, call.Socket)
		}
		return c.judge(ctx, f, engine.ViaPull), nil
	}
	var out bytes.Buffer
	code := gate.RunVerifier(r.Context(), args, stdin, &out, decide)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(out.Len()))
	w.Header().Set(VerifierExitHeader, strconv.Itoa(code))
	_, _ = w.Write(out.Bytes())
}

// errReader is a reader that fails with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// policyCheck remembers the outcome of parsing policy documents, by name
// and content (policy.Parse is pure), so that checking the verifier's
// policy file costs a hash per pull. Safe for concurrent use.
type policyCheck struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]policyResult
}

type policyResult struct {
	p   *policy.Policy
	err error
}

// maxPolicyChecks bounds the remembered outcomes; a node has one policy file.
const maxPolicyChecks = 16

func (pc *policyCheck) parse(file string, data []byte) (*policy.Policy, error) {
	h := sha256.New()
	h.Write([]byte(file))
	h.Write([]byte{0})
	h.Write(data)
	var key [sha256.Size]byte
	h.Sum(key[:0])
	pc.mu.Lock()
	r, ok := pc.m[key]
	pc.mu.Unlock()
	if ok {
		return r.p, r.err
	}
	r.p, r.err = policy.Parse(file, data)
	pc.mu.Lock()
	if pc.m == nil || len(pc.m) >= maxPolicyChecks {
		pc.m = make(map[[sha256.Size]byte]policyResult)
	}
	pc.m[key] = r
	pc.mu.Unlock()
	return r.p, r.err
}
