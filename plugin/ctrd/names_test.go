package ctrd

import (
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/plugin/nri"
)

// TestNameMemo: the memo answers only while tracked, forgets a name at its
// event, and drops a lookup that started before an event (it may have read
// the binding the event replaced).
func TestNameMemo(t *testing.T) {
	c := &Containerd{}
	old := nri.StoreImage{Name: "registry.corp.example/app:1", Target: digest.FromString("t1"), Config: digest.FromString("c1")}
	moved := nri.StoreImage{Name: old.Name, Target: digest.FromString("t2"), Config: digest.FromString("c2")}

	c.ForgetName(old.Name) // untracked: a no-op
	if c.names.Load() != nil {
		t.Fatal("memo exists before TrackNames")
	}
	c.TrackNames()
	m := c.names.Load()
	_, gen, ok := m.get(old.Name)
	if ok {
		t.Fatal("empty memo answered")
	}
	m.put(old.Name, old, gen)
	if si, _, ok := m.get(old.Name); !ok || si != old {
		t.Fatalf("get = %+v, %v", si, ok)
	}

	// The tag moves: its event invalidates the name.
	c.ForgetName(old.Name)
	_, gen, ok = m.get(old.Name)
	if ok {
		t.Fatal("name answered after its event")
	}
	// A lookup that began before another event must not be stored.
	c.ForgetName("registry.corp.example/other:1")
	m.put(old.Name, old, gen)
	if _, _, ok := m.get(old.Name); ok {
		t.Error("a lookup that began before an event was stored")
	}
	_, gen, _ = m.get(old.Name)
	m.put(old.Name, moved, gen)
	if si, _, _ := m.get(old.Name); si != moved {
		t.Errorf("after the move: %+v", si)
	}

	// The event stream ends: nothing is answered from memory any more.
	c.UntrackNames()
	if c.names.Load() != nil {
		t.Error("memo kept after UntrackNames")
	}

	// Bounded.
	c.TrackNames()
	m = c.names.Load()
	for i := range maxNames + 1 {
		m.put(digest.FromString(string(rune(i))).String(), old, 0)
	}
	if len(m.m) > maxNames {
		t.Errorf("memo holds %d names", len(m.m))
	}
}
