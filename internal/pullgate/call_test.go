package pullgate

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/trustd/trustd/policy"
)

// FuzzCallJSON: the call AppendJSON writes is the call encoding/json (the
// daemon's decoder) reads, hostile bytes and invalid UTF-8 in the byte
// fields included; strings are read as encoding/json would write them.
func FuzzCallJSON(f *testing.F) {
	f.Add("-name", "x\x00\xff\"\\", []byte("{}"), "EOF\x01", "/etc/trustd/policy.toml", []byte("version = 1\n"), "/run/trustd/trustd.sock")
	f.Fuzz(func(t *testing.T, a0, a1 string, stdin []byte, stdinErr, config string, pol []byte, sock string) {
		in := Call{Args: [][]byte{[]byte(a0), []byte(a1)}, Stdin: stdin, StdinError: stdinErr, Config: config, Policy: pol, Socket: sock}
		var out Call
		if err := json.Unmarshal(in.AppendJSON(nil), &out); err != nil {
			t.Fatalf("%v: %s", err, in.AppendJSON(nil))
		}
		// encoding/json's own round trip is the reference for strings.
		var want Call
		b, _ := json.Marshal(in)
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if len(want.Stdin) == 0 {
			want.Stdin = out.Stdin[:0:0]
			if out.Stdin == nil {
				want.Stdin = nil
			}
		}
		if !reflect.DeepEqual(out, want) {
			t.Fatalf("AppendJSON round trip:\n got %#v\nwant %#v", out, want)
		}
	})
}

// TestContractConstants: the values this package copies, to stay
// standard-library-only, are the policy package's.
func TestContractConstants(t *testing.T) {
	if MaxPolicy != policy.MaxSize {
		t.Errorf("MaxPolicy %d, policy.MaxSize %d", MaxPolicy, policy.MaxSize)
	}
	if DefaultSocket != policy.DefaultControlSocket {
		t.Errorf("DefaultSocket %q, policy.DefaultControlSocket %q", DefaultSocket, policy.DefaultControlSocket)
	}
}
