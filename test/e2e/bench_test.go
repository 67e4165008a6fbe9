package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/trustd/trustd/test/harness"
)

// BenchmarkCreateContainer measures what trustd adds to what a kubelet
// waits for to create a container (CRI ImageStatus + CreateContainer, then
// RemoveContainer), on two containerds of the same build on this machine:
//
//   - without trustd: NRI enabled (as on every node), no NRI plugin
//     connected and NRI's default validator off, so no validation runs;
//   - with trustd: NRI's default validator on with trustd as a required
//     plugin, trustd connected and deciding every creation in
//     ValidateContainerAdjustment (one NRI round trip per creation);
//   - floor: NRI's default validator on with a do-nothing validator plugin
//     (test/cmd/noop-validator, a process of its own, as trustd is) as the
//     required plugin: what NRI validation costs whatever the plugin does.
//     with − floor is trustd's own share.
//
// Both nodes serve the same image, pulled before the loop (the pull gate,
// trustd's image verifier, is not timed). trustd runs throughout, so its
// background work (syncs, image events) loads the machine in both cases.
//
// Each iteration creates and removes one container on each node, the order
// rotating, and times each separately: the series see the same machine at
// the same moments, however much other builds load it. It reports the
// median of each series (without-ns/op, with-ns/op, floor-ns/op), the
// median of the per-iteration differences (added-ns/op: with − without;
// floor-added-ns/op: floor − without; over-floor-ns/op: with − floor) and
// added-% and over-floor-% as percentages of the without median; the
// budget is 2 %. trustd syncs every 5 minutes here, as by default, not
// every second as in the tests. ns/op is the time of one iteration (all
// nodes). The CPU time used per iteration, read from
// the scheduler's statistics, splits the cost: trustd-cpu-ns/op (trustd,
// background included), containerd-cpu-ns/op (the node with trustd) and
// baseline-cpu-ns/op (the node without), noop-validator-cpu-ns/op and
// floor-containerd-cpu-ns/op (the floor's validator and containerd).
//
// Compare runs with benchstat:
//
//	go test -run '^$' -bench 'BenchmarkCreateContainer$' -benchtime 300x -count 5 ./test/e2e > bench.txt; benchstat bench.txt
//
// TRUSTD_CPUPROFILE=FILE (and TRUSTD_TRACE=FILE) in the environment make
// the trustd daemon write a CPU profile (an execution trace) on exit.
func BenchmarkCreateContainer(b *testing.B) {
	harness.Prereqs(b)
	s := harness.StartStack(b, harness.StackOptions{Refresh: "5m"})
	ref := s.Ref("demo/bench:1.0")
	_, manifest := harness.Push(b, ref, harness.BuildImage(b, "bench", "bench"))
	s.TUF.SetTarget(ref, manifest)
	if err := s.TUF.Publish(); err != nil {
		b.Fatal(err)
	}
	s.Sync(b)
	s.StartTrustd(b)
	without := &benchNode{Node: harness.StartContainerd(b, harness.Options{Registries: []string{s.Registry}})}
	with := &benchNode{Node: s.Node}
	const noop = "noop-validator"
	floor := &benchNode{Node: harness.StartContainerd(b, harness.Options{Registries: []string{s.Registry}, RequirePlugin: noop})}
	noopPid := floor.NoopValidator(b, noop)
	for _, n := range []*benchNode{without, with, floor} {
		if _, err := n.PullImage(ref); err != nil {
			b.Fatalf("pull %s: %v", ref, err)
		}
		n.pod = n.RunPod(b, "bench", "default")
		n.createRemove(b, ref) // warm up
	}

	pids := []int{s.Trustd.Pid(), with.Pid(), without.Pid(), noopPid, floor.Pid()}
	cpu0 := cpuTimes(b, pids)
	var tWith, tWithout, tFloor, added, floorAdded, overFloor []time.Duration
	nodes := []*benchNode{without, with, floor}
	for i := 0; b.Loop(); i++ {
		var d [3]time.Duration
		for k := range nodes {
			j := (i + k) % len(nodes)
			d[j] = nodes[j].timedCreateRemove(b, ref)
		}
		tWithout, tWith, tFloor = append(tWithout, d[0]), append(tWith, d[1]), append(tFloor, d[2])
		added, floorAdded, overFloor = append(added, d[1]-d[0]), append(floorAdded, d[2]-d[0]), append(overFloor, d[1]-d[2])
	}
	cpu1 := cpuTimes(b, pids)
	n := float64(len(tWith))
	base := median(tWithout)
	b.ReportMetric(float64(base), "without-ns/op")
	b.ReportMetric(float64(median(tWith)), "with-ns/op")
	b.ReportMetric(float64(median(tFloor)), "floor-ns/op")
	b.ReportMetric(float64(median(added)), "added-ns/op")
	b.ReportMetric(100*float64(median(added))/float64(base), "added-%")
	b.ReportMetric(float64(median(floorAdded)), "floor-added-ns/op")
	b.ReportMetric(float64(median(overFloor)), "over-floor-ns/op")
	b.ReportMetric(100*float64(median(overFloor))/float64(base), "over-floor-%")
	for i, unit := range []string{"trustd-cpu-ns/op", "containerd-cpu-ns/op", "baseline-cpu-ns/op", "noop-validator-cpu-ns/op", "floor-containerd-cpu-ns/op"} {
		b.ReportMetric(float64(cpu1[i]-cpu0[i])/n, unit)
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

// timedCreateRemove is createRemove, timed.
func (n *benchNode) timedCreateRemove(b *testing.B, ref string) time.Duration {
	start := time.Now()
	n.createRemove(b, ref)
	return time.Since(start)
}

// cpuTimes reads the CPU time of each process.
func cpuTimes(b *testing.B, pids []int) []time.Duration {
	out := make([]time.Duration, len(pids))
	for i, pid := range pids {
		d, err := harness.ProcessCPU(pid)
		if err != nil {
			b.Fatalf("%v", err)
		}
		out[i] = d
	}
	return out
}

// median of ds (which it sorts).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	if len(ds)%2 == 1 {
		return ds[len(ds)/2]
	}
	return (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
}
