package plugin

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

	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// The pull gate relayed over the control socket: the trustd-verifier
// executable (cmd/trustd-verifier, standard library only, so that it
// starts in about a millisecond) sends what containerd gave it to
// POST VerifierPath and prints the answer. The daemon runs RunVerifier on
// it, the code `trustd trustd-verifier` runs, so the two cannot disagree
// on arguments, standard input, the reason printed or the exit code.
const (
	// VerifierPath is the control socket's endpoint for a relayed pull gate.
	VerifierPath = "/v1/verifier"
	// VerifierExitHeader carries the exit code of a relayed pull gate; the
	// response body is its standard output.
	VerifierExitHeader = "Trustd-Exit"
)

// maxVerifierCall bounds a VerifierCall on the wire: the policy file and
// the descriptor, base64-encoded, and the arguments.
const maxVerifierCall = 2*(policy.MaxSize+maxVerifierStdin) + 1<<20

// VerifierCall is one run of the pull gate, relayed: the arguments and
// standard input containerd gave the trustd-verifier executable, and the
// policy file it was pointed at ($TRUSTD_CONFIG), whose control socket it
// dialled. The JSON form is the wire format of POST VerifierPath; []byte
// fields are base64, so hostile bytes arrive unchanged.
type VerifierCall struct {
	Args  [][]byte `json:"args"`
	Stdin []byte   `json:"stdin,omitempty"`
	// StdinError is the error that ended reading standard input, if any.
	StdinError string `json:"stdin_error,omitempty"`
	// Config is the policy file's path, Policy its content (at most
	// policy.MaxSize+1 bytes, as policy.Load reads it).
	Config string `json:"config"`
	Policy []byte `json:"policy"`
	// Socket is the control socket the verifier read in Policy and dialled.
	Socket string `json:"socket"`
}

// verifier answers a relayed pull gate. As `trustd trustd-verifier` does,
// it judges the policy file first: one that does not validate blocks the
// pull, even though the daemon decides with the last good policy it runs.
func (c *ControlServer) verifier(w http.ResponseWriter, r *http.Request) {
	var call VerifierCall
	if err := json.NewDecoder(io.LimitReader(r.Body, maxVerifierCall)).Decode(&call); err != nil {
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
			return verify.Decision{}, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if p.Daemon.ControlSocket != call.Socket {
			return verify.Decision{}, fmt.Errorf("%w: %s names the control socket %s, but the verifier asked %s", ErrConfig, call.Config, p.Daemon.ControlSocket, call.Socket)
		}
		return c.judge(ctx, f, "control:pull"), nil
	}
	var out bytes.Buffer
	code := RunVerifier(r.Context(), args, stdin, &out, decide)
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
