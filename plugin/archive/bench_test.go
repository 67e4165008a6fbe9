package archive

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// benchArchives are ~64 MiB archives: a docker save with uncompressed
// layers (Docker's classic store) and an OCI layout with gzip layers.
// With TRUSTD_BENCH_ARCHIVE_DIR set they are also written there, to
// compare with other tools (openssl dgst -sha256) on the same bytes.
var benchArchives struct {
	sync.Mutex
	m map[string][]byte
}

func benchArchive(b *testing.B, name string) []byte {
	benchArchives.Lock()
	defer benchArchives.Unlock()
	if data, ok := benchArchives.m[name]; ok {
		return data
	}
	var data []byte
	switch name {
	case "docker-uncompressed":
		data = dockerLegacy(b, map[string]*testImage{"bench:1": newTestImage(b, "bench", 4, 16<<20, false)})
	case "oci-gzip":
		data = ociLayout(b, map[string]*testImage{"example.com/bench:1": newTestImage(b, "bench", 8, 15<<20, true)})
	}
	if dir := os.Getenv("TRUSTD_BENCH_ARCHIVE_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name+".tar"), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if benchArchives.m == nil {
		benchArchives.m = map[string][]byte{}
	}
	benchArchives.m[name] = data
	return data
}

func BenchmarkRead(b *testing.B) {
	for _, name := range []string{"docker-uncompressed", "oci-gzip"} {
		b.Run(name, func(b *testing.B) {
			data := benchArchive(b, name)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				a, err := Read(bytes.NewReader(data), Options{})
				if err != nil || len(a.Images) != 1 || len(a.Images[0].Problems) > 0 {
					b.Fatalf("%v %+v", err, a)
				}
			}
		})
	}
}
