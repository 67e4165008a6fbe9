package verify

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func compactRepos() map[string]*Repo {
	exp := time.Date(2027, 1, 2, 3, 4, 5, 6, time.UTC)
	return map[string]*Repo{
		"registry.example.com/apps/web": {
			Name: "registry.example.com/apps/web", Expires: exp, ExpiresRole: "targets",
			FreshUntil: exp.Add(-time.Hour), FreshRole: "timestamp", Problems: []string{"delegated role x ignored"},
			Tags: map[string]RoleTargets{
				"1.0": {"targets": {Digest: dg("web-1.0"), Length: 10}, "release": {Digest: dg("web-1.0"), Length: 10}},
				"2.0": {"release": {Digest: dg("web-2.0"), Length: 20}, "targets": {Digest: dg("web-1.0"), Length: 10}},
				"3.0": {"targets": {Digest: dg("web-1.0"), Length: 10}},
			},
			Order: map[string][]string{"2.0": {"release", "targets"}},
		},
		"docker.io/library/nginx": {
			Name: "docker.io/library/nginx",
			Tags: map[string]RoleTargets{"latest": {"targets/releases": {Digest: dg("nginx")}}},
		},
		"docker.io/legacy/empty": {Name: "docker.io/legacy/empty", Tags: map[string]RoleTargets{}},
	}
}

// normalise is what a Repo looks like after a round trip through a Trust:
// the resolution order written out for every tag, tags without a role
// dropped, the source set.
func normalise(r *Repo, source string) *Repo {
	c := *r
	c.Source = source
	c.Tags, c.Order = map[string]RoleTargets{}, map[string][]string{}
	for tag, roles := range r.Tags {
		if len(roles) == 0 {
			continue
		}
		c.Tags[tag] = roles
		c.Order[tag] = r.RolesInOrder(tag)
	}
	return &c
}

func TestTrustRoundTrip(t *testing.T) {
	repos := compactRepos()
	tr := NewTrust(repos)
	b, err := tr.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeTrust(b)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range repos {
		for _, x := range []*Trust{tr, back} {
			rv, ok := x.Repo(name)
			if !ok {
				t.Fatalf("%s missing", name)
			}
			if got := rv.Materialize("corp"); !reflect.DeepEqual(got, normalise(want, "corp")) {
				t.Errorf("%s:\n got %+v\nwant %+v", name, got, normalise(want, "corp"))
			}
		}
	}
	if _, ok := back.Repo("registry.example.com/apps/none"); ok {
		t.Error("unknown repository found")
	}
	if back.Len() != 3 || back.NumTags() != 4 {
		t.Errorf("%d repositories, %d tags", back.Len(), back.NumTags())
	}
}

func TestTrustLookups(t *testing.T) {
	tr := NewTrust(compactRepos())
	rv, _ := tr.Repo("registry.example.com/apps/web")
	for i, want := range []string{"1.0", "2.0", "3.0"} {
		if got := rv.TagAt(i).Name(); got != want {
			t.Errorf("tag %d = %s, want %s", i, got, want)
		}
	}
	tv, ok := rv.Tag("2.0")
	if !ok || tv.NumSigs() != 2 {
		t.Fatal("tag 2.0")
	}
	if role, tg := tv.Sig(0); role != "release" || tg.Digest != dg("web-2.0") || tg.Length != 20 {
		t.Errorf("first signature of 2.0: %s %+v", role, tg)
	}
	if i := tv.Find("targets"); i != 1 {
		t.Errorf("Find(targets) = %d", i)
	}
	if s := tv.Signer(1); len(s) != 1 || s[0] != "targets" || cap(s) != 1 {
		t.Errorf("Signer(1) = %v (cap %d)", s, cap(s))
	}
	if _, ok := rv.Tag("9.9"); ok {
		t.Error("unknown tag found")
	}
	var got []string
	rv.TagsSignedAs(dg("web-1.0"), func(tv TagView) bool { got = append(got, tv.Name()); return true })
	if !reflect.DeepEqual(got, []string{"1.0", "2.0", "3.0"}) {
		t.Errorf("tags signed as web-1.0: %v", got)
	}
	var targets []Target
	for tg := range rv.Targets() {
		targets = append(targets, tg)
	}
	if want := []Target{{dg("web-1.0"), 10}, {dg("web-1.0"), 10}, {dg("web-2.0"), 20}, {dg("web-1.0"), 10}, {dg("web-1.0"), 10}}; !reflect.DeepEqual(targets, want) {
		t.Errorf("targets %v, want %v", targets, want)
	}
	got = nil
	rv.TagsSignedAs(dg("web-1.0"), func(tv TagView) bool { got = append(got, tv.Name()); return false })
	if len(got) != 1 {
		t.Errorf("TagsSignedAs did not stop: %v", got)
	}
	// The digest index of one repository never yields another's tags.
	nginx, _ := tr.Repo("docker.io/library/nginx")
	nginx.TagsSignedAs(dg("web-1.0"), func(tv TagView) bool { t.Errorf("nginx tag %s", tv.Name()); return true })
	if tv, _ := rv.Tag("1.0"); testing.AllocsPerRun(100, func() { tv.Sig(0); tv.Signer(0); rv.Tag("3.0") }) != 0 {
		t.Error("lookups allocate")
	}
}

// Every truncation and every single-byte change of a valid encoding either
// decodes to a Trust that passes its own checks or is an ErrCorruptTrust:
// never a panic.
func TestDecodeTrustDamage(t *testing.T) {
	b, _ := NewTrust(compactRepos()).AppendBinary(nil)
	for n := 0; n < len(b); n++ {
		if _, err := DecodeTrust(b[:n]); !errors.Is(err, ErrCorruptTrust) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	for i := range b {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			c := append([]byte(nil), b...)
			c[i] ^= x
			tr, err := DecodeTrust(c)
			if err != nil && !errors.Is(err, ErrCorruptTrust) {
				t.Fatalf("byte %d: %v", i, err)
			}
			if err == nil {
				exercise(tr)
			}
		}
	}
}

// exercise reads everything a decision can read.
func exercise(tr *Trust) {
	for i := 0; i < tr.Len(); i++ {
		rv := tr.RepoAt(i)
		rv.Materialize("x")
		tr.Repo(rv.Name())
		for j := 0; j < rv.NumTags(); j++ {
			tv := rv.TagAt(j)
			rv.Tag(tv.Name())
			for k := 0; k < tv.NumSigs(); k++ {
				_, tg := tv.Sig(k)
				tv.Signer(k)
				rv.TagsSignedAs(tg.Digest, func(TagView) bool { return true })
			}
		}
	}
}

func FuzzDecodeTrust(f *testing.F) {
	b, _ := NewTrust(compactRepos()).AppendBinary(nil)
	f.Add(b)
	e, _ := NewTrust(nil).AppendBinary(nil)
	f.Add(e)
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := DecodeTrust(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptTrust) {
				t.Fatal(err)
			}
			return
		}
		exercise(tr)
		// What decodes re-encodes to the same bytes.
		again, err := tr.AppendBinary(nil)
		if err != nil || string(again) != string(b) {
			t.Fatalf("re-encoding differs (%v)", err)
		}
	})
}

func BenchmarkTrustLookup(b *testing.B) {
	repos := map[string]*Repo{}
	for i := 0; i < 10000; i++ {
		name := fmt.Sprintf("registry.example.com/team%d/app%d", i%100, i)
		r := &Repo{Name: name, Tags: map[string]RoleTargets{}}
		for j := 0; j < 10; j++ {
			r.Tags[fmt.Sprintf("v%d", j)] = RoleTargets{"targets": {Digest: digest.FromString(fmt.Sprint(i, j))}}
		}
		repos[name] = r
	}
	tr := NewTrust(repos)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rv, ok := tr.Repo("registry.example.com/team42/app4242")
		if !ok {
			b.Fatal("missing")
		}
		if _, ok := rv.Tag("v7"); !ok {
			b.Fatal("missing tag")
		}
	}
}
