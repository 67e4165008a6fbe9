package notary

import (
	"fmt"
	"testing"
)

// BenchmarkVerify10kTags verifies a whole repository whose targets.json
// signs 10,000 tags (about 1.5 MB), as trustd does after each sync.
func BenchmarkVerify10kTags(b *testing.B) {
	r := newTestRepo(b, testGUN, testNow)
	r.top.targets = map[string][]byte{}
	for i := 0; i < 10000; i++ {
		r.top.targets[fmt.Sprintf("1.%d.%d-alpine", i/100, i%100)] = []byte(fmt.Sprintf("manifest %d", i))
	}
	f := r.build(b)
	o := r.opts()
	b.SetBytes(int64(len(f.Targets)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := Verify(f, nil, o)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Repo.Tags) != 10000 {
			b.Fatal(len(res.Repo.Tags))
		}
	}
}

// BenchmarkVerifyAlpine verifies the real Docker Hub library/alpine data.
func BenchmarkVerifyAlpine(b *testing.B) {
	f := loadRepo(b, "dockerhub-library-alpine")
	o := Options{GUN: "docker.io/library/alpine", Now: at(b, "2018-07-25T00:00:00Z"), Pin: Pin{TOFU: true}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Verify(f, nil, o); err != nil {
			b.Fatal(err)
		}
	}
}
