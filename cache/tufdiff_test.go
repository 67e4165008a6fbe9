package cache

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/trustd/trustd/verify"
)

// A generated TUF repository: a delegation graph described by diffRole
// values, built into signed metadata served by a mapFetcher, so that
// trustd's sync and resolution and go-tuf's updater read the same bytes.

const diffRegistry = "registry.corp.example"

// diffNames are the target names the graphs sign; two differ only in case.
var diffNames = []string{
	diffRegistry + "/team/app:v1",
	diffRegistry + "/team/app:V1",
	diffRegistry + "/team/app:v2",
	diffRegistry + "/other/x:10",
	diffRegistry + "/team/sub/y:1",
}

// diffPatterns are the `paths` patterns: '*' and '?' within a part,
// case-sensitive literals, part counts that differ.
var diffPatterns = []string{
	diffRegistry + "/team/*",
	diffRegistry + "/team/app:v?",
	diffRegistry + "/team/app:V*",
	diffRegistry + "/*/*",
	diffRegistry + "/other/x:1?",
	diffRegistry + "/team/*/*",
	diffRegistry + "/team/app:v1",
	"*",
}

// diffHashPrefixes are `path_hash_prefixes`: hex digits (the
// specification), and characters only base64url has (go-tuf's reading).
var diffHashPrefixes = []string{"", "0", "8", "a", "f", "Q", "-"}

type diffTarget struct {
	sum        []byte
	sha512Only bool
}

type diffDeleg struct {
	child        string
	key          int // index into the key pool: the key the delegation trusts
	paths        []string
	hashPrefixes []string
	terminating  bool
}

type diffRole struct {
	name        string
	key         int // the key that signs the role
	unpublished bool
	expired     bool
	targets     map[string]diffTarget
	dels        []diffDeleg
}

type diffKey struct {
	signer signature.Signer
	key    *metadata.Key
	id     string
}

var (
	diffKeysOnce sync.Once
	diffKeys     []diffKey // [0..3] delegation keys, [4] every top-level role
)

func diffKeyPool(t testing.TB) []diffKey {
	diffKeysOnce.Do(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		for range 5 {
			seed := make([]byte, ed25519.SeedSize)
			for i := range seed {
				seed[i] = byte(rng.Uint32())
			}
			priv := ed25519.NewKeyFromSeed(seed)
			s, err := signature.LoadED25519Signer(priv)
			if err != nil {
				panic(err)
			}
			k, err := metadata.KeyFromPublicKey(priv.Public())
			if err != nil {
				panic(err)
			}
			id, err := k.ID()
			if err != nil {
				panic(err)
			}
			diffKeys = append(diffKeys, diffKey{s, k, id})
		}
	})
	return diffKeys
}

// chooser draws decisions from fuzz bytes (zero once they run out).
type chooser struct{ b []byte }

func (c *chooser) n(k int) int {
	if k <= 1 {
		return 0
	}
	if len(c.b) == 0 {
		return 0
	}
	v := int(c.b[0])
	c.b = c.b[1:]
	return v % k
}

// genDiffGraph turns bytes into a delegation graph: up to 6 roles below
// the top-level targets (index 0), delegations between any of them
// (cycles, a role under several delegators, keys that do not match the
// role's signer), unpublished and expired roles, targets with sha256 or
// only sha512.
func genDiffGraph(in []byte) []diffRole {
	c := &chooser{in}
	n := 1 + c.n(6)
	roles := make([]diffRole, n+1)
	roles[0] = diffRole{name: metadata.TARGETS, key: 4}
	for i := 1; i <= n; i++ {
		roles[i] = diffRole{name: fmt.Sprintf("r%d", i), key: c.n(4), unpublished: c.n(10) == 0, expired: c.n(12) == 0}
	}
	for i := range roles {
		r := &roles[i]
		r.targets = map[string]diffTarget{}
		for _, name := range diffNames {
			if c.n(3) != 0 {
				continue
			}
			sum := sha256.Sum256([]byte(fmt.Sprintf("%s %s %d", r.name, name, c.n(256))))
			r.targets[name] = diffTarget{sum: sum[:], sha512Only: c.n(6) == 0}
		}
		seen := map[string]bool{}
		for range c.n(4) {
			child := roles[1+c.n(n)].name
			if seen[child] {
				continue
			}
			seen[child] = true
			d := diffDeleg{child: child, key: c.n(4), terminating: c.n(3) == 0}
			if c.n(6) == 0 {
				d.hashPrefixes = []string{diffHashPrefixes[c.n(len(diffHashPrefixes))]}
			} else {
				for range 1 + c.n(2) {
					d.paths = append(d.paths, diffPatterns[c.n(len(diffPatterns))])
				}
			}
			// The delegation mostly trusts the child's own key.
			if c.n(3) != 0 {
				d.key = roles[slicesIndex(roles, child)].key
			}
			r.dels = append(r.dels, d)
		}
	}
	return roles
}

func slicesIndex(roles []diffRole, name string) int {
	for i := range roles {
		if roles[i].name == name {
			return i
		}
	}
	return -1
}

// buildDiffRepo signs the graph into repository files (consistent
// snapshots off) and returns them with the root to pin.
//
// It signs with go-tuf's metadata API directly rather than with
// internal/testtuf (the well-formed repositories of the other tests) or
// trustd's publisher (cache/publish): the differential needs graphs no
// well-formed builder makes (expired and unpublished roles, keys shared
// across roles, sha512-only targets, hash prefixes outside hex), and
// metadata trustd did not write, so that trustd's reader is compared with
// go-tuf's on bytes neither side made.
func buildDiffRepo(t testing.TB, roles []diffRole, now time.Time) (mapFetcher, []byte) {
	keys := diffKeyPool(t)
	top := keys[4]
	expires := now.Add(24 * time.Hour).Truncate(time.Second)
	files := mapFetcher{}
	sign := func(name string, md interface {
		Sign(signature.Signer) (*metadata.Signature, error)
		ToBytes(bool) ([]byte, error)
	}, s signature.Signer) []byte {
		if _, err := md.Sign(s); err != nil {
			t.Fatal(err)
		}
		b, err := md.ToBytes(false)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
		return b
	}
	root := metadata.Root(expires)
	root.Signed.ConsistentSnapshot = false
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if err := root.Signed.AddKey(top.key, role); err != nil {
			t.Fatal(err)
		}
	}
	rootJSON := sign("1.root.json", root, top.signer)
	snap := metadata.Snapshot(expires)
	for _, r := range roles {
		exp := expires
		if r.expired {
			exp = now.Add(-time.Hour).Truncate(time.Second)
		}
		md := metadata.Targets(exp)
		for name, tg := range r.targets {
			h := metadata.Hashes{"sha256": tg.sum}
			if tg.sha512Only {
				s := sha512.Sum512(tg.sum)
				h = metadata.Hashes{"sha512": s[:]}
			}
			md.Signed.Targets[name] = &metadata.TargetFiles{Length: 100, Hashes: h, Path: name}
		}
		if len(r.dels) > 0 {
			md.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
			for _, d := range r.dels {
				k := keys[d.key]
				md.Signed.Delegations.Keys[k.id] = k.key
				md.Signed.Delegations.Roles = append(md.Signed.Delegations.Roles, metadata.DelegatedRole{
					Name: d.child, KeyIDs: []string{k.id}, Threshold: 1, Terminating: d.terminating,
					Paths: d.paths, PathHashPrefixes: d.hashPrefixes,
				})
			}
		}
		if r.unpublished {
			continue
		}
		sign(r.name+".json", md, keys[r.key].signer)
		snap.Signed.Meta[r.name+".json"] = metadata.MetaFile(1)
	}
	snapJSON := sign("snapshot.json", snap, top.signer)
	ts := metadata.Timestamp(expires)
	sum := sha256.Sum256(snapJSON)
	ts.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{Version: 1, Length: int64(len(snapJSON)), Hashes: metadata.Hashes{"sha256": sum[:]}}
	sign("timestamp.json", ts, top.signer)
	return files, rootJSON
}

// mapFetcher serves files by base name, to trustd (Fetcher) and to
// go-tuf's updater (fetcher.Fetcher).
type mapFetcher map[string][]byte

func (m mapFetcher) get(url string, limit int64) ([]byte, bool) {
	b, ok := m[url[strings.LastIndexByte(url, '/')+1:]]
	return b, ok && int64(len(b)) <= limit
}

func (m mapFetcher) Fetch(_ context.Context, url string, limit int64) ([]byte, error) {
	if b, ok := m.get(url, limit); ok {
		return b, nil
	}
	return nil, fmt.Errorf("%s: %w", url, ErrNotFound)
}

func (m mapFetcher) DownloadFile(url string, limit int64, _ time.Duration) ([]byte, error) {
	if b, ok := m.get(url, limit); ok {
		return b, nil
	}
	return nil, &metadata.ErrDownloadHTTP{StatusCode: 404, URL: url}
}

const diffURL = "https://tuf.corp.example/metadata/"

// hashPrefixesDisagree reports whether some path_hash_prefixes delegation
// of the graph covers name by the specification's reading (hex) and not by
// go-tuf v2.4.2's (base64url of the hash), or the reverse: a known
// difference, where the two are not compared.
func hashPrefixesDisagree(roles []diffRole, name string) bool {
	sum := sha256.Sum256([]byte(name))
	hx, b64 := hex.EncodeToString(sum[:]), base64.URLEncoding.EncodeToString(sum[:])
	for _, r := range roles {
		for _, d := range r.dels {
			for _, p := range d.hashPrefixes {
				if strings.HasPrefix(hx, p) != strings.HasPrefix(b64, p) {
					return true
				}
			}
		}
	}
	return false
}

// checkDiff resolves every name with trustd (sync, index) and with go-tuf's
// updater, and fails where they disagree. go-tuf's updater keeps every
// role it verified for later searches, whichever delegator it verified it
// against (the approximation trustd had); a fresh updater per name makes
// each search the specification's. It returns how many names it compared.
func checkDiff(t *testing.T, roles []diffRole) int {
	t.Helper()
	now := time.Now()
	files, root := buildDiffRepo(t, roles, now)
	src := &TUFSource{Name: "corp", URL: diffURL, Root: root, Dir: filepath.Join(t.TempDir(), "corp"), Fetcher: files, RootCheckInterval: -1}
	res, err := src.Sync(context.Background(), now)
	if err != nil {
		t.Fatalf("trustd sync: %v", err)
	}
	compared := 0
	for _, name := range diffNames {
		if hashPrefixesDisagree(roles, name) {
			continue
		}
		compared++
		want, gerr := goTUFResolve(t, files, root, name)
		repo, tag, err := verify.SplitTargetName(name)
		if err != nil {
			t.Fatal(err)
		}
		var got, denied string
		if rv, ok := res.Index.Lookup(repo); ok {
			if tv, ok := rv.Tag(tag); ok {
				_, tg := tv.Sig(0)
				got = string(tg.Digest)
			} else {
				denied, _ = rv.Denied(tag)
			}
		}
		switch {
		case gerr == nil && want != nil && want.Hashes["sha256"] != nil:
			if w := "sha256:" + hex.EncodeToString(want.Hashes["sha256"]); got != w {
				t.Errorf("%s: go-tuf resolves %s, trustd %q (denied: %q)", name, w, got, denied)
			}
		case gerr == nil:
			if got != "" || !strings.Contains(denied, "no sha256 hash") {
				t.Errorf("%s: go-tuf resolves a target without sha256; trustd %q, denied %q", name, got, denied)
			}
		case strings.HasPrefix(gerr.Error(), "target ") && strings.HasSuffix(gerr.Error(), " not found"):
			if got != "" || denied != "" {
				t.Errorf("%s: go-tuf finds no target; trustd %q, denied %q", name, got, denied)
			}
		default: // the search met a role that failed: denied
			if got != "" {
				t.Errorf("%s: go-tuf fails (%v); trustd allows %s", name, gerr, got)
			}
			if denied != "" && !strings.Contains(denied, "could not be used") {
				t.Errorf("%s: go-tuf fails (%v); trustd denies for another reason: %s", name, gerr, denied)
			}
		}
	}
	return compared
}

func goTUFResolve(t *testing.T, files mapFetcher, root []byte, name string) (*metadata.TargetFiles, error) {
	cfg, err := config.New(diffURL, root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Fetcher = files
	cfg.DisableLocalCache = true
	cfg.LocalMetadataDir = t.TempDir()
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatalf("go-tuf refresh: %v", err)
	}
	return up.GetTargetInfo(name)
}

// TestTUFResolutionMatchesGoTUF resolves seeded random delegation graphs
// with trustd and with go-tuf's updater: they must agree (see checkDiff
// and hashPrefixesDisagree for the known difference).
func TestTUFResolutionMatchesGoTUF(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	compared := 0
	for i := range 150 {
		in := make([]byte, 96)
		for j := range in {
			in[j] = byte(rng.Uint32())
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { compared += checkDiff(t, genDiffGraph(in)) })
	}
	if compared < 300 {
		t.Fatalf("only %d names compared", compared)
	}
}

// FuzzTUFResolution is TestTUFResolutionMatchesGoTUF on fuzzed graphs.
func FuzzTUFResolution(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{5, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 512 {
			return
		}
		checkDiff(t, genDiffGraph(in))
	})
}
