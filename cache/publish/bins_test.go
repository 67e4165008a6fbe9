package publish

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// metaFiles lists the published tree's files.
func metaFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "metadata"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

// readAll checks that go-tuf's updater and trustd's source (TUFSource.Sync
// then verify.Decide) both read every tag of tags at its digest, and that
// trustd denies each tag moved.
func readAll(t *testing.T, dir string, tags map[string]string) {
	t.Helper()
	url, root := serve(t, dir), rootOf(t, dir)
	si, err := trustdSync(t, url, root)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range tags {
		tf, err := goTUF(t, url, root, name)
		if err != nil {
			t.Fatalf("go-tuf, %s: %v", name, err)
		}
		if fmt.Sprintf("sha256:%x", []byte(tf.Hashes["sha256"])) != string(dg(content)) {
			t.Fatalf("go-tuf reads %s as %x", name, []byte(tf.Hashes["sha256"]))
		}
		if d := decide(t, si, "", name, dg(content)); !d.Allowed {
			t.Fatalf("%s: signed digest denied: %s", name, d.Reason)
		}
		if d := decide(t, si, "", name, dg("moved")); d.Allowed {
			t.Fatalf("%s: moved tag allowed: %s", name, d.Reason)
		}
	}
}

// TestBinsTopLevel: the targets role crossing the bins threshold moves
// into succinct hash bins signed by the targets key; go-tuf's updater and
// trustd's source read every tag before and after; signing one more tag
// then writes only its bin, the snapshot and the timestamp; a targets key
// rotation signs the bins with the new key.
func TestBinsTopLevel(t *testing.T) {
	dir := newRepo(t, InitOptions{BinsThreshold: 4})
	r := open(t, dir)
	tags := map[string]string{}
	sign := func(i int) *SignResult {
		t.Helper()
		name := fmt.Sprintf("registry.corp.example/app:%d", i)
		tags[name] = name
		res, err := r.Sign(RoleTargets, []Binding{bind(t, name, name)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Pending) != 0 {
			t.Fatalf("sign %s left pending: %v", name, res.Pending)
		}
		return res
	}
	for i := range 4 {
		sign(i)
	}
	if succinct(r.roles[RoleTargets]) != nil {
		t.Fatal("binned at the threshold, not past it")
	}
	readAll(t, dir, tags)

	res := sign(4)
	sr := succinct(r.roles[RoleTargets])
	if sr == nil || len(r.roles[RoleTargets].Signed.Targets) != 0 {
		t.Fatalf("past the threshold, targets is not in bins: %+v", res)
	}
	if sr.BitLength != binBits(5) || sr.NamePrefix != "targets-bin" || sr.Threshold != 1 || !slices.Equal(sr.KeyIDs, r.root.Signed.Roles[RoleTargets].KeyIDs) {
		t.Fatalf("bins: %+v", sr)
	}
	st := r.Status()
	if st.Roles[3].Role != RoleTargets || st.Roles[3].Bins == nil || st.Roles[3].Targets != 5 || len(st.Roles) != 4 {
		t.Fatalf("status: %+v", st.Roles)
	}
	readAll(t, dir, tags)

	before := metaFiles(t, dir)
	res = sign(5)
	bin := sr.GetRolesForTarget("registry.corp.example/app:5")[0].Name
	if want := []string{bin, RoleSnapshot, RoleTimestamp}; !slices.Equal(res.Published, want) {
		t.Fatalf("one more tag published %v, want %v", res.Published, want)
	}
	var added []string
	for f := range metaFiles(t, dir) {
		if !before[f] {
			added = append(added, f)
		}
	}
	slices.Sort(added)
	want := []string{fmt.Sprintf("%d.%s.json", r.roles[bin].Signed.Version, bin), fmt.Sprintf("%d.snapshot.json", r.snapshot.Signed.Version)}
	if !slices.Equal(added, want) {
		t.Fatalf("one more tag wrote %v (and timestamp.json), want %v", added, want)
	}
	readAll(t, dir, tags)

	// More bins once they average more than the threshold.
	for i := 6; i < 4<<sr.BitLength+1; i++ {
		sign(i)
	}
	if nb := succinct(r.roles[RoleTargets]); nb.BitLength <= sr.BitLength {
		t.Fatalf("bins did not grow: %+v", nb)
	}
	if _, err := r.Delegate("targets-bin-0", DelegateOptions{}); err == nil || !strings.Contains(err.Error(), "hash bin") {
		t.Fatalf("a role named as a bin: %v", err)
	}

	if _, err := r.Rotate(RoleTargets); err != nil {
		t.Fatal(err)
	}
	nb := succinct(r.roles[RoleTargets])
	if !slices.Equal(nb.KeyIDs, r.root.Signed.Roles[RoleTargets].KeyIDs) || len(r.pending) != 0 {
		t.Fatalf("after rotation the bins list %v, targets key %v; pending %v", nb.KeyIDs, r.root.Signed.Roles[RoleTargets].KeyIDs, r.pendingSummary())
	}
	readAll(t, dir, tags)
}

// TestBinsDelegatedThreshold2: a team's role delegated with threshold 2
// moves into bins signed by the team's keys; the bins wait, with the role,
// for the second signature, and both readers then resolve through them.
func TestBinsDelegatedThreshold2(t *testing.T) {
	dir := newRepo(t, InitOptions{BinsThreshold: 2})
	keys := t.TempDir()
	var pubs []*metadata.Key
	var privs []string
	for _, who := range []string{"alice", "bob"} {
		p := filepath.Join(keys, who)
		if _, err := GenerateKeyPair(p, KeyEd25519, nil); err != nil {
			t.Fatal(err)
		}
		k, err := ReadPublicKey(p + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		pubs, privs = append(pubs, k), append(privs, p)
	}
	r := open(t, dir)
	if _, err := r.Delegate("team", DelegateOptions{Keys: pubs, Threshold: 2, Repositories: []string{"registry.corp.example/team/**"}}); err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	var bs []Binding
	for i := range 3 {
		name := fmt.Sprintf("registry.corp.example/team/app:%d", i)
		tags[name] = name
		bs = append(bs, bind(t, name, name))
	}
	res, err := r.Sign("team", bs, privs[:1])
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Published) != 0 || succinct(r.pending["team"]) == nil {
		t.Fatalf("one of two signatures: published %v", res.Published)
	}
	if st := r.Status(); len(st.Roles) != 5 {
		t.Fatalf("status lists bins as roles: %+v", st.Roles)
	}
	saved, err := r.SignMetadata("team", privs[1:])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(saved.Published, "team") || !slices.Contains(saved.Published, "team-bin-0") || len(saved.Pending) != 0 {
		t.Fatalf("second signature: %+v", saved)
	}
	readAll(t, dir, tags)
	// A rule naming the team's role counts its bins' signatures as the
	// role's: "two of three teams" survives a team's role being binned.
	si, err := trustdSync(t, serve(t, dir), rootOf(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	for name := range tags {
		if d := decide(t, si, `signers = ["team"]`, name, dg(name)); !d.Allowed || strings.Join(d.Signers, ",") != "team" {
			t.Fatalf("%s with signers = [\"team\"]: %s (signers %v)", name, d.Reason, d.Signers)
		}
	}
	if _, err := r.Sign("team-bin-0", bs[:1], privs); err == nil || !strings.Contains(err.Error(), "hash bin of role team") {
		t.Fatalf("signing into a bin by name: %v", err)
	}
}
