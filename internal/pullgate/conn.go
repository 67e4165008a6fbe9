package pullgate

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// maxResponse bounds the daemon's answer (one line of at most a few KiB).
const maxResponse = 1 << 20

// conn is a connection to the control socket, made with system calls
// rather than package net and net/http, whose initialisation costs more
// than this whole program's. Every call is bounded by the deadline, with
// the socket's send and receive timeouts.
type conn struct {
	fd       int
	sock     string
	deadline time.Time
}

// dial connects to the Unix socket at path. Its error wraps the system
// call's errno: ENOENT and ECONNREFUSED mean that no daemon listens.
func dial(path string, deadline time.Time) (*conn, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, os.NewSyscallError("socket", err))
	}
	c := &conn{fd: fd, sock: path, deadline: deadline}
	// A connect that waits for room in the listener's backlog is bounded
	// by the send timeout.
	err = c.retry(syscall.SO_SNDTIMEO, func() error {
		return syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
	})
	if err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("control socket %s: %w", path, os.NewSyscallError("connect", err))
	}
	return c, nil
}

func (c *conn) close() { syscall.Close(c.fd) }

var errTimeout = errors.New("timed out")

// retry runs a blocking system call with the time left as the socket's
// timeout opt, again when a signal interrupted it.
func (c *conn) retry(opt int, call func() error) error {
	for {
		left := time.Until(c.deadline)
		if left <= 0 {
			return errTimeout
		}
		tv := syscall.NsecToTimeval(left.Nanoseconds())
		if err := syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
		switch err := call(); err {
		case syscall.EINTR:
		case syscall.EAGAIN:
			return errTimeout
		default:
			return err
		}
	}
}

func (c *conn) write(b []byte) error {
	for len(b) > 0 {
		var n int
		err := c.retry(syscall.SO_SNDTIMEO, func() (err error) {
			n, err = syscall.Write(c.fd, b)
			return err
		})
		if err != nil {
			return os.NewSyscallError("write", err)
		}
		b = b[n:]
	}
	return nil
}

// readAll reads until the daemon closes the connection.
func (c *conn) readAll() ([]byte, error) {
	b := make([]byte, 0, 4096)
	for {
		if len(b) == cap(b) {
			if len(b) >= maxResponse {
				return nil, fmt.Errorf("answer longer than %d bytes", maxResponse)
			}
			b = append(b, 0)[:len(b)]
		}
		var n int
		err := c.retry(syscall.SO_RCVTIMEO, func() (err error) {
			n, err = syscall.Read(c.fd, b[len(b):cap(b)])
			return err
		})
		if err != nil {
			return nil, os.NewSyscallError("read", err)
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

// Call is one run of the pull gate, relayed: the arguments and standard
// input containerd gave the verifier, and the policy file it was pointed at
// ($TRUSTD_CONFIG), whose control socket it dialled. Its JSON form is the
// body of POST Path; []byte fields are base64, so hostile bytes arrive
// unchanged. The daemon decodes it with encoding/json; AppendJSON encodes
// it without (TestCallJSON holds the two together).
type Call struct {
	Args  [][]byte `json:"args"`
	Stdin []byte   `json:"stdin,omitempty"`
	// StdinError is the error that ended reading standard input, if any.
	StdinError string `json:"stdin_error,omitempty"`
	// Config is the policy file's path, Policy its content (at most
	// MaxPolicy+1 bytes, as the daemon's policy loader reads it).
	Config string `json:"config"`
	Policy []byte `json:"policy"`
	// Socket is the control socket the verifier read in Policy and dialled.
	Socket string `json:"socket"`
}

// AppendJSON appends the call's JSON form to b, as encoding/json writes it
// (but for omitted empty fields).
func (r *Call) AppendJSON(b []byte) []byte {
	b = slices.Grow(b, 256+base64.StdEncoding.EncodedLen(len(r.Policy)+len(r.Stdin)))
	b = append(b, `{"args":[`...)
	for i, a := range r.Args {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendBase64(b, a)
	}
	b = append(b, `],"stdin":`...)
	b = appendBase64(b, r.Stdin)
	if r.StdinError != "" {
		b = append(b, `,"stdin_error":`...)
		b = appendString(b, r.StdinError)
	}
	b = append(b, `,"config":`...)
	b = appendString(b, r.Config)
	b = append(b, `,"policy":`...)
	b = appendBase64(b, r.Policy)
	b = append(b, `,"socket":`...)
	b = appendString(b, r.Socket)
	return append(b, '}')
}

func appendBase64(b, p []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD,
// as encoding/json writes it.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// relay sends the call (POST Path, one HTTP/1.1 request on its own
// connection) and returns the daemon's exit code and standard output.
func (c *conn) relay(r *Call) (int, []byte, error) {
	body := r.AppendJSON(nil)
	req := make([]byte, 0, 160+len(body))
	req = append(req, "POST "+Path+" HTTP/1.1\r\nHost: trustd\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "...)
	req = strconv.AppendInt(req, int64(len(body)), 10)
	req = append(req, "\r\n\r\n"...)
	req = append(req, body...)
	if err := c.write(req); err != nil {
		return 0, nil, fmt.Errorf("control socket %s: %w", c.sock, err)
	}
	resp, err := c.readAll()
	if err != nil {
		return 0, nil, fmt.Errorf("control socket %s: %w", c.sock, err)
	}
	code, out, err := parseResponse(resp)
	if err != nil {
		return 0, nil, fmt.Errorf("control socket %s: %w", c.sock, err)
	}
	return code, out, nil
}

// parseResponse reads the daemon's HTTP/1.1 response: 200 with the exit
// code in the ExitHeader header and standard
// output as the body, whose length Content-Length gives.
func parseResponse(resp []byte) (int, []byte, error) {
	head, body, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
	if !ok {
		return 0, nil, errors.New("truncated answer")
	}
	lines := strings.Split(string(head), "\r\n")
	proto, status, _ := strings.Cut(lines[0], " ")
	status, _, _ = strings.Cut(status, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") {
		return 0, nil, fmt.Errorf("not an HTTP answer: %.80q", lines[0])
	}
	code, length := "", -1
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "content-length":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return 0, nil, fmt.Errorf("bad Content-Length %q", v)
			}
			length = n
		case "transfer-encoding":
			return 0, nil, fmt.Errorf("unexpected Transfer-Encoding %q", v)
		case strings.ToLower(ExitHeader):
			code = v
		}
	}
	if length >= 0 {
		if len(body) < length {
			return 0, nil, errors.New("truncated answer")
		}
		body = body[:length]
	}
	if status == "404" {
		return 0, nil, fmt.Errorf("%w: HTTP 404: %s", ErrNotServed, bytes.TrimSpace(body))
	}
	if status != "200" {
		return 0, nil, fmt.Errorf("HTTP %s: %s", status, bytes.TrimSpace(body))
	}
	switch code {
	case "0":
		return 0, body, nil
	case "1":
		return 1, body, nil
	}
	return 0, nil, fmt.Errorf("answer without a valid Trustd-Exit header (%q): is the daemon older than this verifier?", code)
}

// ErrNotServed means the daemon does not serve the relay: an older trustd
// still running after an upgrade installed this verifier.
var ErrNotServed = errors.New("the daemon does not relay pulls")
