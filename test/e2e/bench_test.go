package e2e

import (
	"fmt"
	"testing"

	"github.com/trustd/trustd/test/harness"
)

// BenchmarkCreateContainer measures what a kubelet waits for to create a
// container (CRI ImageStatus + CreateContainer, then RemoveContainer), on
// two containerds of the same build on this machine: one with nothing in the
// way ("without-trustd"), one requiring trustd, which decides each creation
// over NRI ("with-trustd").
//
// The two are interleaved: each timed operation on one node follows an
// untimed one on the other, so both see the same machine (caches, load from
// elsewhere). Compare them with benchstat:
//
//	go test -run '^$' -bench CreateContainer -count 6 ./test/e2e > bench.txt; benchstat bench.txt
func BenchmarkCreateContainer(b *testing.B) {
	harness.Prereqs(b)
	s := harness.StartStack(b, harness.StackOptions{})
	ref := s.Ref("demo/bench:1.0")
	_, manifest := harness.Push(b, ref, harness.BuildImage(b, "bench", "bench"))
	s.TUF.SetTarget(ref, manifest)
	if err := s.TUF.Publish(); err != nil {
		b.Fatal(err)
	}
	s.Sync(b)
	s.StartTrustd(b)
	plain := harness.StartContainerd(b, harness.Options{Registries: []string{s.Registry}})

	nodes := map[string]*benchNode{
		"without-trustd": {Node: plain},
		"with-trustd":    {Node: s.Node},
	}
	for _, n := range nodes {
		if _, err := n.PullImage(ref); err != nil {
			b.Fatalf("pull %s: %v", ref, err)
		}
		n.pod = n.RunPod(b, "bench", "default")
	}
	for _, c := range []struct{ name, other string }{
		{"without-trustd", "with-trustd"},
		{"with-trustd", "without-trustd"},
	} {
		measured, other := nodes[c.name], nodes[c.other]
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				other.createRemove(b, ref)
				b.StartTimer()
				measured.createRemove(b, ref)
			}
		})
	}
}

// benchNode is a node with a pod to create containers in.
type benchNode struct {
	*harness.Node
	pod *harness.Pod
	n   int
}

// createRemove creates a container from ref as kubelet does and removes it.
func (n *benchNode) createRemove(b *testing.B, ref string) {
	n.n++
	id, err := n.CreateContainer(n.pod.ID, n.pod.Config, fmt.Sprintf("bench-%d", n.n), ref)
	if err != nil {
		b.Fatalf("create: %v", err)
	}
	if err := n.RemoveContainer(id); err != nil {
		b.Fatalf("remove: %v", err)
	}
}
