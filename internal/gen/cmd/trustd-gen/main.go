// Command trustd-gen generates benchmark trust data with internal/gen:
//
//	trustd-gen -data DIR                 # issue 7's data set (reused when fresh)
//	trustd-gen -archive FILE -size 512   # a docker save tar of about 512 MiB
//
// It prints what it made as JSON. scripts/bench.sh runs it once, then points
// the benchmarks at the data set with TRUSTD_BENCH_DATA.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/trustd/trustd/internal/gen"
)

func main() {
	data := flag.String("data", "", "generate (or reuse) the benchmark data set in this directory")
	arch := flag.String("archive", "", "write a docker save archive to this file")
	size := flag.Int("size", 512, "archive size in MiB (layers of 64 MiB)")
	flag.Parse()
	if *data == "" && *arch == "" {
		flag.Usage()
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if *data != "" {
		d, err := gen.OpenDataset(*data, gen.DefaultDatasetOptions())
		if err != nil {
			fmt.Fprintln(os.Stderr, "trustd-gen:", err)
			os.Exit(1)
		}
		enc.Encode(d)
	}
	if *arch != "" {
		f, err := os.Create(*arch)
		if err != nil {
			fmt.Fprintln(os.Stderr, "trustd-gen:", err)
			os.Exit(1)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		const layer = 64 << 20
		info, err := gen.WriteDockerArchive(w, gen.ArchiveOptions{Ref: gen.RepoName(gen.DefaultRegistry, 1) + ":" + gen.Tag(1), Layers: max(1, *size*(1<<20)/layer), LayerSize: layer - 4096, Seed: 1})
		if err == nil {
			err = w.Flush()
		}
		if err == nil {
			err = f.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "trustd-gen:", err)
			os.Exit(1)
		}
		enc.Encode(info)
	}
}
