package selfcheck

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ConfigLocation says which containerd configuration file the self-check
// reads and how trustd knows it is the one containerd runs with.
type ConfigLocation struct {
	// Path is the file as containerd names it.
	Path string `json:"path"`
	// Root is the directory Path is read under: "" for this mount
	// namespace, /proc/<pid>/root for containerd's own when trustd found
	// the process.
	Root string `json:"-"`
	// How says how the path was found, for the operator.
	How string `json:"how"`
	// Known is false when trustd could not tell which file containerd
	// uses and checked containerd's default instead.
	Known bool `json:"known"`
}

func (l ConfigLocation) String() string { return l.Path + " (" + l.How + ")" }

// LocateContainerdConfig finds the configuration file of the containerd
// serving address: an explicit path (the --containerd-config flag or
// TRUSTD_CONTAINERD_CONFIG) wins; otherwise the process that listens on
// address is found through /proc and its command line read (`--config`,
// `-c`; containerd's default when it has neither), so that k3s, RKE2 and
// other layouts that start containerd with another file are checked
// against the file they use. When no process can be found, containerd's
// default is checked and Known is false. It only reads /proc.
func LocateContainerdConfig(explicit, address string) ConfigLocation {
	return locateContainerdConfig("/proc", explicit, address)
}

func locateContainerdConfig(proc, explicit, address string) ConfigLocation {
	if explicit != "" {
		return ConfigLocation{Path: explicit, How: "given by --containerd-config or TRUSTD_CONTAINERD_CONFIG", Known: true}
	}
	pid, err := socketOwner(proc, address)
	if err != nil {
		return ConfigLocation{Path: DefaultContainerdConfig, How: fmt.Sprintf("containerd's default: which file containerd uses is not known (%v); set --containerd-config or TRUSTD_CONTAINERD_CONFIG", err)}
	}
	cmdline, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ConfigLocation{Path: DefaultContainerdConfig, How: fmt.Sprintf("containerd's default: the command line of containerd (pid %d) cannot be read: %v", pid, err)}
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	root := filepath.Join(proc, strconv.Itoa(pid), "root")
	path, ok := configArg(args)
	if !ok {
		return ConfigLocation{Path: DefaultContainerdConfig, Root: root, How: fmt.Sprintf("containerd (pid %d) was started without --config", pid), Known: true}
	}
	if !filepath.IsAbs(path) {
		if cwd, err := os.Readlink(filepath.Join(proc, strconv.Itoa(pid), "cwd")); err == nil {
			path = filepath.Join(cwd, path)
		}
	}
	return ConfigLocation{Path: path, Root: root, How: fmt.Sprintf("from the command line of containerd (pid %d)", pid), Known: true}
}

// configArg finds containerd's --config (or -c) argument, in any of the
// spellings its flag parser takes.
func configArg(args []string) (string, bool) {
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		for _, name := range []string{"--config", "-config", "-c", "--c"} {
			if a == name && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// socketOwner returns the process that holds the listening Unix socket
// bound to path: its inode from <proc>/net/unix, then the process with a
// descriptor on it. Processes named like containerd are looked at first.
func socketOwner(proc, path string) (int, error) {
	if path == "" {
		return 0, fmt.Errorf("no containerd address")
	}
	inode, err := unixSocketInode(filepath.Join(proc, "net", "unix"), strings.TrimPrefix(path, "unix://"))
	if err != nil {
		return 0, err
	}
	want := "socket:[" + inode + "]"
	entries, err := os.ReadDir(proc)
	if err != nil {
		return 0, err
	}
	var likely, rest []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(proc, e.Name(), "comm"))
		if bytes.Contains(comm, []byte("containerd")) || bytes.Contains(comm, []byte("k3s")) || bytes.Contains(comm, []byte("rke2")) {
			likely = append(likely, pid)
		} else {
			rest = append(rest, pid)
		}
	}
	for _, pid := range append(likely, rest...) {
		dir := filepath.Join(proc, strconv.Itoa(pid), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && l == want {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process holds containerd's socket %s", path)
}

// unixSocketInode finds the inode of the listening socket bound to path in
// a /proc/net/unix table.
func unixSocketInode(table, path string) (string, error) {
	f, err := os.Open(table)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fields := strings.Fields(sc.Text())
		if len(fields) >= 8 && fields[7] == path && fields[3] == "00010000" { // __SO_ACCEPTCON: listening
			return fields[6], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no process listens on %s", path)
}
