package publish

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trustd/trustd/internal/gen"
)

// benchTargets is the size of BenchmarkSignOneTag's repository.
const benchTargets = 100_000

// benchRepo returns a copy of a repository of benchTargets tags in the
// top-level targets role, made with this package's own API and cached
// under the bench data directory (gen.BenchDataDir) for a week.
func benchRepo(b *testing.B) string {
	b.Helper()
	data, err := gen.BenchDataDir()
	if err != nil {
		b.Fatal(err)
	}
	cached := filepath.Join(data, fmt.Sprintf("publish-%d", benchTargets))
	if fi, err := os.Stat(filepath.Join(cached, "repo.json")); err != nil || time.Since(fi.ModTime()) > 7*24*time.Hour {
		os.RemoveAll(cached)
		if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
			b.Fatal(err)
		}
		tmp, err := os.MkdirTemp(filepath.Dir(cached), ".publish-*")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		dir := filepath.Join(tmp, "repo")
		if _, err := Init(dir, InitOptions{}); err != nil {
			b.Fatal(err)
		}
		r, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		bs := make([]Binding, 0, benchTargets)
		for i := range benchTargets {
			name := fmt.Sprintf("registry.corp.example/team-%d/app-%d:%d", i%97, i%1009, i)
			d := dg(name)
			bs = append(bs, Binding{Name: name, Digest: d, Length: 1000 + int64(i%5000)})
		}
		if _, err := r.Sign(RoleTargets, bs, nil); err != nil {
			b.Fatal(err)
		}
		r.Close()
		if err := os.Rename(dir, cached); err != nil {
			b.Fatal(err)
		}
	}
	dir := filepath.Join(b.TempDir(), "repo")
	if err := os.CopyFS(dir, os.DirFS(cached)); err != nil {
		b.Fatal(err)
	}
	// CopyFS writes files 0644: keys must stay private.
	if err := filepath.WalkDir(filepath.Join(dir, "keys"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o700)
		}
		return os.Chmod(p, 0o600)
	}); err != nil {
		b.Fatal(err)
	}
	return dir
}

// dirBytes is the total size of the files in dir.
func dirBytes(b *testing.B, dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			b.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// BenchmarkSignOneTag signs one more tag into a repository of 100,000
// tags (in succinct hash bins): time per sign, and the bytes each sign writes
// to the published tree next to the published tree's size.
func BenchmarkSignOneTag(b *testing.B) {
	dir := benchRepo(b)
	r, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	meta := filepath.Join(dir, "metadata")
	var written, files, n int64
	for i := 0; b.Loop(); i++ {
		n++
		name := fmt.Sprintf("registry.corp.example/bench/app:%d", i)
		res, err := r.Sign(RoleTargets, []Binding{{Name: name, Digest: dg(name), Length: 1234}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		for _, role := range res.Published {
			file := RoleTimestamp + ".json"
			if role != RoleTimestamp {
				v := r.snapshot.Signed.Version
				if role != RoleSnapshot {
					v = r.roles[role].Signed.Version
				}
				file = fmt.Sprintf("%d.%s.json", v, role)
			}
			fi, err := os.Stat(filepath.Join(meta, file))
			if err != nil {
				b.Fatal(err)
			}
			written += fi.Size()
			files++
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(written)/float64(n), "bytes-written/op")
	b.ReportMetric(float64(files)/float64(n), "files-written/op")
	b.ReportMetric(float64(dirBytes(b, meta)), "repo-bytes")
}
