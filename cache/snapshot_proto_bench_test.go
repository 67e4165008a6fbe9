package cache_test

// A prototype, for BENCHMARKS.md and issue 7's report, of the change
// proposed for the cold start and the verifier without a daemon: a
// compact, pointer-free index of the verified trust data, written next to
// the cache after each verification, loaded at start instead of
// re-verifying every signature. It is test code only; trustd does not use
// it. The numbers it reports are what the proposal would cost.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/internal/gen"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// protoIndex is the decoded snapshot: every table a flat slice, strings in
// one arena; the garbage collector sees a handful of pointers whatever
// the number of tags.
type protoIndex struct {
	arena   []byte // repository names, tags and role names
	repos   []protoRepo
	tags    []protoTag
	targets []protoTarget
	digests [][32]byte
	roles   []span
}

type span struct{ off, n uint32 }

type protoRepo struct {
	name              span
	tag0, ntags       uint32
	expires, fresh    int64
	expRole, freshRol uint16
}

type protoTag struct {
	name           span
	target0, count uint32 // role targets in resolution order
}

type protoTarget struct {
	role   uint16
	digest uint32
	length int64
}

func (x *protoIndex) str(s span) string { return string(x.arena[s.off : s.off+s.n]) }

func (x *protoIndex) bytesOf(s span) []byte { return x.arena[s.off : s.off+s.n] }

// compare is bytes.Compare of b and s without converting s.
func compare(b []byte, s string) int {
	for i := 0; i < len(b) && i < len(s); i++ {
		if b[i] != s[i] {
			if b[i] < s[i] {
				return -1
			}
			return 1
		}
	}
	return len(b) - len(s)
}

// lookup returns the digest the first role in resolution order signed for
// repo:tag: two binary searches, no allocation.
func (x *protoIndex) lookup(repo, tag string) ([32]byte, bool) {
	i, ok := slices.BinarySearchFunc(x.repos, repo, func(r protoRepo, name string) int { return compare(x.bytesOf(r.name), name) })
	if !ok {
		return [32]byte{}, false
	}
	r := x.repos[i]
	tags := x.tags[r.tag0 : r.tag0+r.ntags]
	j, ok := slices.BinarySearchFunc(tags, tag, func(t protoTag, name string) int { return compare(x.bytesOf(t.name), name) })
	if !ok {
		return [32]byte{}, false
	}
	return x.digests[x.targets[tags[j].target0].digest], true
}

// encodeProto writes the index of one source in the snapshot format:
// little-endian tables, each preceded by its length.
func encodeProto(si *verify.SourceIndex) []byte {
	var arena bytes.Buffer
	add := func(s string) span {
		sp := span{uint32(arena.Len()), uint32(len(s))}
		arena.WriteString(s)
		return sp
	}
	roleIdx := map[string]uint16{}
	var roles []span
	role := func(name string) uint16 {
		if i, ok := roleIdx[name]; ok {
			return i
		}
		roleIdx[name] = uint16(len(roles))
		roles = append(roles, add(name))
		return roleIdx[name]
	}
	digIdx := map[digest.Digest]uint32{}
	var digests [][32]byte
	var repos []protoRepo
	var tags []protoTag
	var targets []protoTarget
	names := make([]string, 0, len(si.Repos))
	for n := range si.Repos {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		r := si.Repos[n]
		pr := protoRepo{name: add(n), tag0: uint32(len(tags)), ntags: uint32(len(r.Tags)), expires: r.Expires.UnixNano(), fresh: r.FreshUntil.UnixNano(), expRole: role(r.ExpiresRole), freshRol: role(r.FreshRole)}
		for _, t := range r.SortedTags() {
			pt := protoTag{name: add(t), target0: uint32(len(targets))}
			for _, rl := range r.RolesInOrder(t) {
				tg := r.Tags[t][rl]
				di, ok := digIdx[tg.Digest]
				if !ok {
					var d [32]byte
					hex.Decode(d[:], []byte(tg.Digest.Encoded()))
					di = uint32(len(digests))
					digIdx[tg.Digest] = di
					digests = append(digests, d)
				}
				targets = append(targets, protoTarget{role: role(rl), digest: di, length: tg.Length})
				pt.count++
			}
			tags = append(tags, pt)
		}
		repos = append(repos, pr)
	}
	var out bytes.Buffer
	w := func(v ...any) {
		for _, x := range v {
			binary.Write(&out, binary.LittleEndian, x)
		}
	}
	w(uint32(arena.Len()))
	out.Write(arena.Bytes())
	w(uint32(len(roles)))
	for _, s := range roles {
		w(s.off, s.n)
	}
	w(uint32(len(repos)))
	for _, r := range repos {
		w(r.name.off, r.name.n, r.tag0, r.ntags, r.expires, r.fresh, r.expRole, r.freshRol)
	}
	w(uint32(len(tags)))
	for _, t := range tags {
		w(t.name.off, t.name.n, t.target0, t.count)
	}
	w(uint32(len(targets)))
	for _, t := range targets {
		w(t.role, t.digest, t.length)
	}
	w(uint32(len(digests)))
	for _, d := range digests {
		out.Write(d[:])
	}
	return out.Bytes()
}

// decodeProto reads a snapshot back (a real implementation would also
// check a header binding it to the cache files and the policy's source).
func decodeProto(b []byte) *protoIndex {
	le := binary.LittleEndian
	u16 := func() uint16 { v := le.Uint16(b); b = b[2:]; return v }
	u32 := func() uint32 { v := le.Uint32(b); b = b[4:]; return v }
	i64 := func() int64 { v := int64(le.Uint64(b)); b = b[8:]; return v }
	x := &protoIndex{}
	n := u32()
	x.arena = slices.Clone(b[:n])
	b = b[n:]
	x.roles = make([]span, u32())
	for i := range x.roles {
		x.roles[i] = span{u32(), u32()}
	}
	x.repos = make([]protoRepo, u32())
	for i := range x.repos {
		x.repos[i] = protoRepo{name: span{u32(), u32()}, tag0: u32(), ntags: u32(), expires: i64(), fresh: i64(), expRole: u16(), freshRol: u16()}
	}
	x.tags = make([]protoTag, u32())
	for i := range x.tags {
		x.tags[i] = protoTag{name: span{u32(), u32()}, target0: u32(), count: u32()}
	}
	x.targets = make([]protoTarget, u32())
	for i := range x.targets {
		x.targets[i] = protoTarget{role: u16(), digest: u32(), length: i64()}
	}
	x.digests = make([][32]byte, u32())
	for i := range x.digests {
		copy(x.digests[i][:], b[:32])
		b = b[32:]
	}
	return x
}

// BenchmarkProposedIndexSnapshot measures the proposed snapshot for the
// data set's two 100k-tag sources: its size on disk (snapshot-MiB), the
// time to read and decode it (ns/op: what would replace LoadIndex at
// start), the heap it keeps live (live-heap-MiB, against the current
// index's in BenchmarkColdStart) and a lookup of repo:tag (lookup-ns,
// against verify.Decide's map lookups).
func BenchmarkProposedIndexSnapshot(b *testing.B) {
	d := gen.BenchDataset(b)
	for _, c := range coldStartCases[:2] {
		b.Run(c.name, func(b *testing.B) {
			path := coldStartPolicy(b, d, c)
			ix := loadIndexForProto(b, path)
			var si *verify.SourceIndex
			for _, s := range ix.Sources {
				si = s
			}
			file := filepath.Join(b.TempDir(), "index.snap")
			if err := os.WriteFile(file, encodeProto(si), 0o600); err != nil {
				b.Fatal(err)
			}
			st, _ := os.Stat(file)
			// Check it against the current index on a sample.
			x := decodeProto(mustRead(b, file))
			checked := 0
			for name, r := range si.Repos {
				for tag := range r.Tags {
					want := r.Tags[tag][r.RolesInOrder(tag)[0]].Digest
					got, ok := x.lookup(name, tag)
					if !ok || hex.EncodeToString(got[:]) != want.Encoded() {
						b.Fatalf("%s:%s: %x, want %s", name, tag, got, want)
					}
					checked++
					break
				}
				if checked > 1000 {
					break
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				x = decodeProto(mustRead(b, file))
			}
			b.StopTimer()
			runtime.GC()
			var before, after runtime.MemStats
			x = nil
			runtime.GC()
			runtime.ReadMemStats(&before)
			x = decodeProto(mustRead(b, file))
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "live-heap-MiB")
			b.ReportMetric(float64(st.Size())/(1<<20), "snapshot-MiB")
			// Lookups of random signed tags.
			var keys [][2]string
			for name, r := range si.Repos {
				for tag := range r.Tags {
					keys = append(keys, [2]string{name, tag})
					if len(keys)%7 == 0 {
						break
					}
				}
				if len(keys) >= 4096 {
					break
				}
			}
			start := time.Now()
			const n = 1 << 20
			for i := range n {
				k := keys[i%len(keys)]
				if _, ok := x.lookup(k[0], k[1]); !ok {
					b.Fatal(k)
				}
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/n, "lookup-ns")
			runtime.KeepAlive(x)
		})
	}
}

func mustRead(b *testing.B, path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func loadIndexForProto(b *testing.B, path string) *verify.Index {
	b.Helper()
	p, err := policy.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	store, err := cache.Open(p, nil)
	if err != nil {
		b.Fatal(err)
	}
	ix, errs := store.LoadIndex()
	if len(errs) > 0 {
		b.Fatal(errs[0])
	}
	return ix
}
