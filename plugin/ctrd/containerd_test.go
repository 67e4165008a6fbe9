package ctrd

import (
	"fmt"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestContentFactsMemo checks the memo of content-addressed image facts:
// what is remembered is found, a snapshot once published never changes
// (decisions in flight hold one), and concurrent writers lose nothing.
func TestContentFactsMemo(t *testing.T) {
	dg := func(s string) digest.Digest { return digest.FromString(s) }
	t.Run("remember", func(t *testing.T) {
		var c Containerd
		c.remember(dg("manifest"), dg("config"), "")
		before := c.facts.Load()
		c.remember("", dg("config"), "sha256:chain")
		after := c.facts.Load()
		if before == after {
			t.Fatal("a new fact changed the published snapshot in place instead of replacing it")
		}
		if _, ok := before.chains[dg("config")]; ok {
			t.Fatal("the earlier snapshot saw a later fact")
		}
		if got := after.configs[dg("manifest")]; got != dg("config") {
			t.Errorf("config of manifest = %q", got)
		}
		if got := after.chains[dg("config")]; got != "sha256:chain" {
			t.Errorf("chain of config = %q", got)
		}
		c.remember(dg("manifest"), dg("config"), "sha256:chain")
		if c.facts.Load() != after {
			t.Error("a known fact replaced the snapshot")
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		var c Containerd
		var wg sync.WaitGroup
		for i := range 64 {
			wg.Go(func() {
				m, cfg := dg(fmt.Sprint("m", i)), dg(fmt.Sprint("c", i))
				c.remember(m, cfg, fmt.Sprint("chain", i))
			})
		}
		wg.Wait()
		f := c.facts.Load()
		for i := range 64 {
			if f.configs[dg(fmt.Sprint("m", i))] != dg(fmt.Sprint("c", i)) || f.chains[dg(fmt.Sprint("c", i))] != fmt.Sprint("chain", i) {
				t.Fatalf("fact %d lost", i)
			}
		}
	})
}
