package notary_test

import (
	"os"
	"testing"
	"time"

	"github.com/trustd/trustd/internal/gen"
	"github.com/trustd/trustd/verify/notary"
)

// BenchmarkVerifyGenerated100k verifies the benchmark data set's Notary
// repository of 100k tags (a targets.json of about 9 MB, a targets/releases
// delegation, a root certificate issued by a pinned CA): the parse and
// verification that trustd repeats for a cached repository at every start,
// without reading the cache file.
func BenchmarkVerifyGenerated100k(b *testing.B) {
	d := gen.BenchDataset(b)
	r, err := d.NotaryRepo(gen.BigGUN)
	if err != nil {
		b.Fatal(err)
	}
	ca, err := os.ReadFile(d.CAPath())
	if err != nil {
		b.Fatal(err)
	}
	o := notary.Options{GUN: gen.BigGUN, Now: time.Now(), Pin: notary.Pin{CA: ca}, Source: "hub"}
	b.SetBytes(int64(len(r.Files.Targets)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := notary.Verify(r.Files, nil, o)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Repo.Tags) != d.Options.NotaryTags {
			b.Fatal(len(res.Repo.Tags))
		}
	}
}
