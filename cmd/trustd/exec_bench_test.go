package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/internal/gen"
)

// benchBinary returns the trustd binary to exec: $TRUSTD_BENCH_BIN (what
// `make build` makes), or one built now into a temporary directory.
func benchBinary(b *testing.B) string {
	b.Helper()
	if bin := os.Getenv("TRUSTD_BENCH_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			b.Fatal(err)
		}
		return abs
	}
	bin := filepath.Join(b.TempDir(), "trustd")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// execResult is one process run: wall time, CPU time (user + system).
type execResult struct {
	wall, cpu time.Duration
	code      int
	stdout    string
}

func runExec(b *testing.B, cmd *exec.Cmd) execResult {
	b.Helper()
	var out bytes.Buffer
	cmd.Stdout = &out
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			b.Fatalf("%s: %v", cmd.Path, err)
		}
	}
	st := cmd.ProcessState
	return execResult{wall: wall, cpu: st.UserTime() + st.SystemTime(), code: st.ExitCode(), stdout: out.String()}
}

// maxRSS runs cmd once under GNU time for its peak RSS: the ru_maxrss of
// a child that os/exec starts is not its own, since Go starts children
// with vfork semantics (the child shares the parent's memory until exec),
// so a small child reports the benchmark's RSS. 0 without /usr/bin/time.
func maxRSS(b *testing.B, cmd *exec.Cmd) int64 {
	b.Helper()
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		return 0
	}
	out := filepath.Join(b.TempDir(), "rss")
	cmd.Args = append([]string{"/usr/bin/time", "-f", "%M", "-o", out}, cmd.Args...)
	cmd.Path = "/usr/bin/time"
	cmd.Stdout = nil
	_ = cmd.Run()
	s, err := os.ReadFile(out)
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(s))
	if len(fields) == 0 {
		return 0
	}
	kb, _ := strconv.ParseInt(fields[len(fields)-1], 10, 64)
	return kb << 10
}

// series collects one kind of run of an interleaved benchmark.
type series struct {
	wall, cpu []time.Duration
	rss       int64
}

func (s *series) add(r execResult) {
	s.wall = append(s.wall, r.wall)
	s.cpu = append(s.cpu, r.cpu)
}

func median[T int64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func (s *series) report(b *testing.B, name string) {
	gen.ReportMS(b, median(s.wall), name+"-ms")
	gen.ReportMS(b, median(s.cpu), name+"-cpu-ms")
	if s.rss > 0 {
		b.ReportMetric(float64(s.rss)/(1<<20), name+"-maxrss-MiB")
	}
}

// benchEnv is a policy over a copy of one of the data set's caches.
type benchEnv struct {
	dir, policy, socket string
}

func newBenchEnv(b *testing.B, d *gen.Dataset, cacheDir string, sources gen.Sources) benchEnv {
	b.Helper()
	// Unix socket paths are short: not under b.TempDir's long name.
	dir, err := os.MkdirTemp("", "trustd-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	e := benchEnv{dir: dir, policy: filepath.Join(dir, "policy.toml"), socket: filepath.Join(dir, "trustd.sock")}
	cache := filepath.Join(dir, "cache")
	if cacheDir != "" {
		if err := gen.CopyDir(cacheDir, cache); err != nil {
			b.Fatal(err)
		}
	}
	if err := gen.WritePolicy(e.policy, d.PolicyOptions(cache, e.socket, sources)); err != nil {
		b.Fatal(err)
	}
	return e
}

// runningDaemon is a running `trustd run` (without containerd: it serves its
// control socket and keeps retrying NRI).
type runningDaemon struct {
	cmd      *exec.Cmd
	started  time.Time
	listened time.Duration // until the control socket accepted a connection
	hwm      int64         // VmHWM then
}

func startDaemon(b *testing.B, bin string, e benchEnv) *runningDaemon {
	b.Helper()
	log, err := os.Create(filepath.Join(e.dir, fmt.Sprintf("daemon-%d.log", time.Now().UnixNano())))
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(bin, "run", "--config", e.policy)
	cmd.Stderr = log
	d := &runningDaemon{cmd: cmd, started: time.Now()}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(d.stop)
	for {
		if c, err := net.Dial("unix", e.socket); err == nil {
			d.listened = time.Since(d.started)
			c.Close()
			break
		}
		if time.Since(d.started) > 5*time.Minute {
			b.Fatalf("trustd run: no control socket after 5 minutes (log %s)", log.Name())
		}
		if cmd.ProcessState != nil {
			b.Fatalf("trustd run exited (log %s)", log.Name())
		}
		time.Sleep(2 * time.Millisecond)
	}
	d.hwm, _ = gen.VmHWM(strconv.Itoa(cmd.Process.Pid))
	return d
}

func (d *runningDaemon) stop() {
	if d.cmd.Process == nil || d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
}

// waitIdle waits until the daemon has used no CPU for a second (its first
// background sync round, which re-verifies the cache, is over).
func (d *runningDaemon) waitIdle(b *testing.B) {
	b.Helper()
	last, deadline := int64(-1), time.Now().Add(5*time.Minute)
	for time.Now().Before(deadline) {
		cpu := procCPU(d.cmd.Process.Pid)
		if cpu == last {
			return
		}
		last = cpu
		time.Sleep(time.Second)
	}
	b.Fatal("trustd run stays busy")
}

// procCPU is utime+stime of a process, in clock ticks.
func procCPU(pid int) int64 {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(s[bytes.LastIndexByte(s, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// signedImage is an image the sources sign: repository, tag, digest.
func signedImage(d *gen.Dataset, s gen.Sources) (string, string, digest.Digest) {
	repo, tag := gen.RepoName(gen.DefaultRegistry, 4242), gen.Tag(3)
	if s == gen.SourcesNotary {
		repo, tag = gen.BigGUN, gen.NotaryTagName(d.Options.NotaryTags, 4242)
	}
	return repo, tag, gen.ManifestDigest(repo, tag)
}

// verifierCmd is a pull of a signed image through containerd's image
// verifier protocol, with the descriptor on standard input.
func verifierCmd(link string, e benchEnv, repo, tag string, dg digest.Digest) *exec.Cmd {
	cmd := exec.Command(link, "-name", repo+":"+tag, "-digest", string(dg), "-stdin-media-type", "application/vnd.oci.descriptor.v1+json")
	cmd.Env = append(os.Environ(), "TRUSTD_CONFIG="+e.policy)
	cmd.Stdin = strings.NewReader(fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d}`, dg, len(gen.Manifest(repo, tag))))
	return cmd
}

// verifierBinary returns the trustd-verifier executable to exec: the one
// next to bin (what `make build` makes), or one built now next to it.
func verifierBinary(b *testing.B, bin string) string {
	b.Helper()
	v := filepath.Join(filepath.Dir(bin), "trustd-verifier")
	if os.Getenv("TRUSTD_BENCH_BIN") != "" {
		if fi, err := os.Stat(v); err == nil && fi.Mode().IsRegular() {
			return v
		}
		v = filepath.Join(b.TempDir(), "trustd-verifier")
	}
	cmd := exec.Command("go", "build", "-trimpath", "-o", v, "../trustd-verifier")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build trustd-verifier: %v\n%s", err, out)
	}
	return v
}

func verifierLink(b *testing.B, bin string) string {
	b.Helper()
	link := filepath.Join(b.TempDir(), "trustd-verifier")
	if err := os.Symlink(bin, link); err != nil {
		b.Fatal(err)
	}
	return link
}

// BenchmarkVerifierExec measures what a pull waits for at the image
// verifier gate: containerd execs trustd-verifier (cmd/trustd-verifier),
// which relays the pull to the daemon over its control socket ("daemon"),
// or, with no daemon, execs trustd, which loads and verifies the cache
// itself ("no-daemon"). Each iteration also execs /bin/true, so the cost
// added by trustd is verifier-ms minus true-ms from the same run
// (added-ms). The CPU time of each, and the verifier's peak RSS (one more
// run under GNU time), are reported too. With a daemon, each iteration also
// execs the trustd binary under the name trustd-verifier (the symlink
// packages installed before: it loads the policy and asks the daemon;
// link-added-ms) and `trustd help` (the binary's start-up alone). The
// cache holds the TUF data set (100k tags over 10k repositories) or the
// Notary repository of 100k tags.
func BenchmarkVerifierExec(b *testing.B) {
	d := gen.BenchDataset(b)
	bin := benchBinary(b)
	verifier := verifierBinary(b, bin)
	link := verifierLink(b, bin)
	for _, c := range []struct {
		name    string
		sources gen.Sources
		daemon  bool
	}{
		{"daemon/tuf-100k", gen.SourcesTUF, true},
		{"no-daemon/tuf-100k", gen.SourcesTUF, false},
		{"no-daemon/notary-100k", gen.SourcesNotary, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newBenchEnv(b, d, d.CacheDir(), c.sources)
			repo, tag, dg := signedImage(d, c.sources)
			gate := func(exe string) *exec.Cmd {
				cmd := verifierCmd(exe, e, repo, tag, dg)
				cmd.Env = append(cmd.Env, "TRUSTD_BIN="+bin)
				return cmd
			}
			if c.daemon {
				startDaemon(b, bin, e).waitIdle(b)
			}
			var truth, help, linked, verified series
			for b.Loop() {
				truth.add(runExec(b, exec.Command("/bin/true")))
				r := runExec(b, gate(verifier))
				if r.code != 0 || !strings.Contains(r.stdout, "allowed") {
					b.Fatalf("trustd-verifier: exit %d: %s", r.code, r.stdout)
				}
				verified.add(r)
				if c.daemon {
					help.add(runExec(b, exec.Command(bin, "help")))
					r := runExec(b, gate(link))
					if r.code != 0 || !strings.Contains(r.stdout, "allowed") {
						b.Fatalf("trustd as trustd-verifier: exit %d: %s", r.code, r.stdout)
					}
					linked.add(r)
				}
			}
			b.StopTimer()
			verified.rss = maxRSS(b, gate(verifier))
			truth.report(b, "true")
			verified.report(b, "verifier")
			gen.ReportMS(b, median(verified.wall)-median(truth.wall), "added-ms")
			if c.daemon {
				// The trustd binary doing nothing, and as the pull gate.
				help.rss = maxRSS(b, exec.Command(bin, "help"))
				help.report(b, "trustd-help")
				linked.rss = maxRSS(b, gate(link))
				linked.report(b, "link")
				gen.ReportMS(b, median(linked.wall)-median(truth.wall), "link-added-ms")
			}
		})
	}
}

// BenchmarkDaemonStart measures `trustd run` from exec until its control
// socket accepts connections: policy, cache load (every cached source
// verified offline) and the socket, everything the daemon does before it
// connects to containerd and NRI and says READY. It reports that time
// (listen-ms) and the peak RSS then (VmHWM, listen-rss-MiB); the process
// is stopped after each iteration.
func BenchmarkDaemonStart(b *testing.B) {
	d := gen.BenchDataset(b)
	bin := benchBinary(b)
	for _, c := range []struct {
		name    string
		sources gen.Sources
	}{
		{"tuf-100k", gen.SourcesTUF},
		{"notary-100k", gen.SourcesNotary},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := newBenchEnv(b, d, d.CacheDir(), c.sources)
			var listen []time.Duration
			var hwm []int64
			for b.Loop() {
				dm := startDaemon(b, bin, e)
				listen = append(listen, dm.listened)
				hwm = append(hwm, dm.hwm)
				b.StopTimer()
				dm.stop()
				b.StartTimer()
			}
			gen.ReportMS(b, median(listen), "listen-ms")
			b.ReportMetric(float64(median(hwm))/(1<<20), "listen-rss-MiB")
		})
	}
}

// BenchmarkVerifyArchive compares `trustd verify --archive` with `openssl
// dgst -sha256` on the same docker save tar (512 MiB, uncompressed layers,
// in the page cache), interleaved, and reports each one's throughput and
// their ratio (archive-vs-openssl, 1 = as fast). The policy's cache is
// empty, so the time is the archive's (the cache load is BenchmarkColdStart's).
func BenchmarkVerifyArchive(b *testing.B) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		b.Skip("openssl not installed")
	}
	d := gen.BenchDataset(b)
	bin := benchBinary(b)
	e := newBenchEnv(b, d, "", gen.SourcesTUF)
	path := filepath.Join(e.dir, "image.tar")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	const layer = 64 << 20
	info, err := gen.WriteDockerArchive(w, gen.ArchiveOptions{Ref: gen.RepoName(gen.DefaultRegistry, 1) + ":" + gen.Tag(1), Layers: 8, LayerSize: layer - 4096, Seed: 1})
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		b.Fatal(err)
	}
	mbps := func(d time.Duration) float64 { return float64(info.Size) / d.Seconds() / 1e6 }
	var ossl, trustd series
	b.SetBytes(info.Size)
	for b.Loop() {
		r := runExec(b, exec.Command(openssl, "dgst", "-sha256", path))
		if r.code != 0 {
			b.Fatalf("openssl: exit %d", r.code)
		}
		ossl.add(r)
		r = runExec(b, exec.Command(bin, "verify", "--config", e.policy, "--archive", path))
		if r.code == 2 || !strings.Contains(r.stdout, info.ConfigDigest.String()) {
			b.Fatalf("trustd verify --archive: exit %d: %s", r.code, r.stdout)
		}
		trustd.add(r)
	}
	b.ReportMetric(mbps(median(ossl.wall)), "openssl-MB/s")
	b.ReportMetric(mbps(median(trustd.wall)), "archive-MB/s")
	b.ReportMetric(float64(median(ossl.wall))/float64(median(trustd.wall)), "archive-vs-openssl")
	b.StopTimer()
	trustd.rss = maxRSS(b, exec.Command(bin, "verify", "--config", e.policy, "--archive", path))
	trustd.report(b, "archive")
}
