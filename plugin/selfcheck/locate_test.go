package selfcheck

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeProc writes a /proc with one process (pid 4242, comm containerd)
// that listens on sock with the given command line and working directory.
func fakeProc(t *testing.T, sock string, cmdline []string, cwd string) string {
	t.Helper()
	proc := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(proc, "net"), 0o755))
	must(os.WriteFile(filepath.Join(proc, "net", "unix"), []byte(
		"Num       RefCount Protocol Flags    Type St Inode Path\n"+
			"0000000000000000: 00000003 00000000 00000000 0001 03 1111 "+sock+"\n"+ // a connection, not the listener
			"0000000000000000: 00000002 00000000 00010000 0001 01 4567 "+sock+"\n"), 0o644))
	for _, pid := range []string{"1", "4242"} {
		must(os.MkdirAll(filepath.Join(proc, pid, "fd"), 0o755))
	}
	must(os.WriteFile(filepath.Join(proc, "1", "comm"), []byte("systemd\n"), 0o644))
	must(os.Symlink("socket:[1111]", filepath.Join(proc, "1", "fd", "7")))
	must(os.WriteFile(filepath.Join(proc, "4242", "comm"), []byte("containerd\n"), 0o644))
	must(os.Symlink("socket:[4567]", filepath.Join(proc, "4242", "fd", "3")))
	must(os.WriteFile(filepath.Join(proc, "4242", "cmdline"), []byte(strings.Join(cmdline, "\x00")+"\x00"), 0o644))
	must(os.Symlink(cwd, filepath.Join(proc, "4242", "cwd")))
	return proc
}

// TestLocateContainerdConfig: the file containerd runs with is found from
// its command line, in each spelling of the flag, the way k3s and RKE2
// start it; an explicit path wins; with no process, containerd's default
// is checked and the location says it is not known.
func TestLocateContainerdConfig(t *testing.T) {
	const sock = "/run/k3s/containerd/containerd.sock"
	tests := []struct {
		name     string
		explicit string
		cmdline  []string
		address  string
		want     string
		known    bool
		how      string
	}{
		{name: "k3s: -c PATH", cmdline: []string{"containerd", "-c", "/var/lib/rancher/k3s/agent/etc/containerd/config.toml", "-a", sock}, want: "/var/lib/rancher/k3s/agent/etc/containerd/config.toml", known: true, how: "command line of containerd (pid 4242)"},
		{name: "--config=PATH", cmdline: []string{"/usr/bin/containerd", "--config=/etc/rke2/containerd.toml"}, want: "/etc/rke2/containerd.toml", known: true},
		{name: "--config PATH", cmdline: []string{"containerd", "--log-level", "debug", "--config", "/opt/c.toml"}, want: "/opt/c.toml", known: true},
		{name: "relative to its working directory", cmdline: []string{"containerd", "-c", "conf/c.toml"}, want: "/srv/node/conf/c.toml", known: true},
		{name: "no flag: containerd's default", cmdline: []string{"containerd"}, want: DefaultContainerdConfig, known: true, how: "without --config"},
		{name: "explicit path wins", explicit: "/etc/other.toml", cmdline: []string{"containerd", "-c", "/x.toml"}, want: "/etc/other.toml", known: true},
		{name: "no process on the address", cmdline: []string{"containerd", "-c", "/x.toml"}, address: "/run/containerd/containerd.sock", want: DefaultContainerdConfig, how: "not known"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proc := fakeProc(t, sock, tc.cmdline, "/srv/node")
			addr := tc.address
			if addr == "" {
				addr = sock
			}
			loc := locateContainerdConfig(proc, tc.explicit, addr)
			if loc.Path != tc.want || loc.Known != tc.known || !strings.Contains(loc.How, tc.how) {
				t.Errorf("got %+v, want path %s known %v how ~%q", loc, tc.want, tc.known, tc.how)
			}
		})
	}
}

// TestLocateRealProcess finds this test process by a socket it listens on,
// through the real /proc.
func TestLocateRealProcess(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "c.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	loc := LocateContainerdConfig("", sock)
	if !loc.Known || loc.Path != DefaultContainerdConfig || !strings.Contains(loc.How, "without --config") {
		t.Errorf("got %+v, want this process found, started without --config", loc)
	}
	if want := filepath.Join("/proc", strconv.Itoa(os.Getpid()), "root"); loc.Root != want {
		t.Errorf("root %q, want %q", loc.Root, want)
	}
}

// TestDisprovedFindings: while trustd is connected to NRI, findings that
// say it cannot register are false of the running containerd; they become
// one warning naming the file, and the others stay.
func TestDisprovedFindings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte("version = 3\n[plugins.'io.containerd.nri.v1.nri']\n  disable_connections = true\n  socket_path = '/elsewhere.sock'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	loc := ConfigLocation{Path: path, How: "test"}
	findings, err := CheckContainerdConfigAt(loc, "/var/run/nri/nri.sock")
	if err != nil {
		t.Fatal(err)
	}
	reg := 0
	for _, f := range findings {
		if f.Registration {
			reg++
		}
	}
	if reg != 2 {
		t.Fatalf("%d registration findings, want 2 (connections closed, other socket): %v", reg, findings)
	}
	if got := Disproved(findings, false, loc); len(got) != len(findings) {
		t.Errorf("not connected: %d findings, want all %d", len(got), len(findings))
	}
	got := Disproved(findings, true, loc)
	if len(got) != len(findings)-reg+1 {
		t.Fatalf("connected: %v", got)
	}
	for _, f := range got {
		if strings.Contains(f.Message, "cannot register:") || f.Registration {
			t.Errorf("a disproved finding remains: %s", f)
		}
	}
	if last := got[len(got)-1]; last.Severity != SeverityWarning || !strings.Contains(last.Message, "yet trustd is connected") || !strings.Contains(last.Message, path) {
		t.Errorf("the replacing warning: %s", last)
	}
}
