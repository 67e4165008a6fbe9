package packaging

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// debEntry is one line of `dpkg-deb --contents`.
type debEntry struct {
	mode  string // e.g. -rwxr-xr-x, drwx------, lrwxrwxrwx
	owner string // user/group
	link  string // symlink target
}

func debContents(t *testing.T, deb string) map[string]debEntry {
	t.Helper()
	out := run(t, "", nil, needTool(t, "dpkg-deb", "dpkg"), "--contents", deb)
	entries := map[string]debEntry{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb --contents: unexpected line %q", line)
		}
		e := debEntry{mode: f[0], owner: f[1]}
		name := f[5]
		if len(f) >= 8 && f[6] == "->" {
			e.link = f[7]
		}
		name = strings.TrimSuffix(strings.TrimPrefix(name, "."), "/")
		if name == "" {
			name = "/"
		}
		entries[name] = e
	}
	return entries
}

// TestDebContents checks every file of the package: path, mode, owner, the
// verifier link, and that shipped files are the repository's.
func TestDebContents(t *testing.T) {
	deb, dist := buildPackage(t)
	root := repoRoot(t)
	got := debContents(t, deb)

	type want struct {
		mode string
		link string
		src  string // repository file it must equal
	}
	wants := map[string]want{
		"/usr/bin/trustd":                                    {mode: "-rwxr-xr-x", src: filepath.Join(dist, "trustd")},
		"/usr/libexec/trustd/trustd-verifier":                {mode: "-rwxr-xr-x", src: filepath.Join(dist, "trustd-verifier")},
		"/opt/containerd/image-verifier/bin/trustd-verifier": {mode: "lrwxrwxrwx", link: "/usr/libexec/trustd/trustd-verifier"},
		"/lib/systemd/system/trustd.service":                 {mode: "-rw-r--r--", src: filepath.Join(root, "systemd", "trustd.service")},
		"/etc/trustd/policy.toml":                            {mode: "-rw-r--r--", src: filepath.Join(root, "packaging", "policy.toml")},
		"/usr/share/trustd/containerd-trustd.toml":           {mode: "-rw-r--r--", src: filepath.Join(root, "packaging", "containerd", "trustd.toml")},
		"/usr/share/trustd/docker-trustd.conf":               {mode: "-rw-r--r--", src: filepath.Join(root, "packaging", "docker", "trustd.conf")},
		"/usr/share/trustd/docker-trustd.spec":               {mode: "-rw-r--r--", src: filepath.Join(root, "packaging", "docker", "trustd.spec")},
		"/var/lib/trustd":                                    {mode: "drwx------"},
		"/etc/trustd":                                        {mode: "drwxr-xr-x"},
		"/opt/containerd/image-verifier/bin":                 {mode: "drwxr-xr-x"},
		"/usr/share/doc/trustd/README.md":                    {mode: "-rw-r--r--", src: filepath.Join(root, "README.md")},
		"/usr/share/doc/trustd/copyright":                    {mode: "-rw-r--r--", src: filepath.Join(root, "packaging", "deb", "copyright")},
		"/usr/share/doc/trustd/THIRD_PARTY_NOTICES":          {mode: "-rw-r--r--", src: filepath.Join(dist, "THIRD_PARTY_NOTICES")},
		"/usr/share/doc/trustd/changelog.Debian.gz":          {mode: "-rw-r--r--"},
		"/usr/share/man/man1/trustd.1.gz":                    {mode: "-rw-r--r--"},
		"/usr/share/lintian/overrides/trustd":                {mode: "-rw-r--r--", src: filepath.Join(root, "packaging", "deb", "lintian-overrides")},
	}
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if len(docs) == 0 {
		t.Fatal("no docs/*.md (docs/INSTALL.md is shipped)")
	}
	for _, d := range docs {
		wants["/usr/share/doc/trustd/"+filepath.Base(d)] = want{mode: "-rw-r--r--", src: d}
	}

	for path, w := range wants {
		e, ok := got[path]
		if !ok {
			t.Errorf("%s is not in the package", path)
			continue
		}
		if e.mode != w.mode || e.owner != "root/root" && e.owner != "0/0" {
			t.Errorf("%s: %s %s, want %s root/root", path, e.mode, e.owner, w.mode)
		}
		if e.link != w.link {
			t.Errorf("%s: link to %q, want %q", path, e.link, w.link)
		}
	}
	// Nothing else but the directories leading to those files.
	for path, e := range got {
		if _, ok := wants[path]; ok || strings.HasPrefix(e.mode, "d") {
			continue
		}
		t.Errorf("unexpected file in the package: %s (%s)", path, e.mode)
	}

	// Shipped files are the repository's, byte for byte.
	x := t.TempDir()
	run(t, "", nil, "dpkg-deb", "--extract", deb, x)
	for path, w := range wants {
		if w.src == "" {
			continue
		}
		if a, b := readFile(t, filepath.Join(x, path)), readFile(t, w.src); a != b {
			t.Errorf("%s differs from %s", path, w.src)
		}
	}
	// Every module linked into trustd ships its license (and NOTICE, where
	// it has one: Apache-2.0 section 4(d)).
	notices := readFile(t, filepath.Join(x, "usr/share/doc/trustd/THIRD_PARTY_NOTICES"))
	mods, err := exec.Command("go", "version", "-m", filepath.Join(x, "usr/bin/trustd")).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	for _, line := range strings.Split(string(mods), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "dep" && !strings.Contains(notices, "\n"+f[1]+" "+f[2]+": ") {
			t.Errorf("THIRD_PARTY_NOTICES has no license of %s %s", f[1], f[2])
		}
	}
	if !strings.Contains(notices, "github.com/containerd/containerd/v2 v2.4.2: NOTICE") {
		t.Error("THIRD_PARTY_NOTICES lacks containerd's NOTICE")
	}
	// The binaries are static: containerd runs trustd-verifier (which may
	// exec trustd) with whatever libraries the node has, and the DaemonSet
	// copies both onto the host.
	for _, bin := range []string{"usr/bin/trustd", "usr/libexec/trustd/trustd-verifier"} {
		if out, err := exec.Command("ldd", filepath.Join(x, bin)).CombinedOutput(); err == nil && !strings.Contains(string(out), "not a dynamic executable") {
			t.Errorf("/%s is dynamically linked:\n%s", bin, out)
		}
	}
	t.Logf("package %s: %d entries", filepath.Base(deb), len(got))
}

// TestDebControl checks the control data: the policy is the only conffile,
// the metadata fields and the maintainer scripts.
func TestDebControl(t *testing.T) {
	deb, _ := buildPackage(t)
	dpkgDeb := needTool(t, "dpkg-deb", "dpkg")
	if got := run(t, "", nil, dpkgDeb, "--info", deb, "conffiles"); strings.TrimSpace(got) != "/etc/trustd/policy.toml" {
		t.Errorf("conffiles = %q, want only /etc/trustd/policy.toml", got)
	}
	fields := map[string]string{}
	for _, f := range []string{"Package", "Version", "Architecture", "Depends", "Section", "Maintainer"} {
		fields[f] = strings.TrimSpace(run(t, "", nil, dpkgDeb, "--field", deb, f))
	}
	if fields["Package"] != "trustd" || fields["Section"] != "admin" {
		t.Errorf("fields %v", fields)
	}
	arch := strings.TrimSpace(run(t, "", nil, "go", "env", "GOARCH"))
	if arch == "386" {
		arch = "i386"
	}
	if fields["Architecture"] != arch {
		t.Errorf("Architecture %q, want %q", fields["Architecture"], arch)
	}
	// ExecReload runs /bin/kill (procps, not Essential).
	if !strings.Contains(fields["Depends"], "procps") {
		t.Errorf("Depends %q lacks procps (/bin/kill for ExecReload)", fields["Depends"])
	}
	if v := fields["Version"]; v == "" || v[0] < '0' || v[0] > '9' || !strings.HasSuffix(v, "-1") {
		t.Errorf("Version %q: want a Debian version <upstream>-1", v)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		b := run(t, "", nil, dpkgDeb, "--info", deb, s)
		if !strings.HasPrefix(b, "#!/bin/sh\n") || !strings.Contains(b, "set -e") {
			t.Errorf("%s is not a /bin/sh script with set -e", s)
		}
		if m := regexp.MustCompile(`(?m)^\s*(systemctl|deb-systemd-invoke|invoke-rc\.d|service)\b[^\n]*containerd`).FindString(b); m != "" {
			t.Errorf("%s manages containerd (%q): the package must never restart it", s, m)
		}
	}
}

// dpkgRoot installs packages into a scratch root with dpkg, running the
// maintainer scripts outside a chroot with DPKG_ROOT set (which they
// honour: no service is started or stopped on this machine).
type dpkgRoot struct {
	t    *testing.T
	dpkg string
	dir  string
}

func newDpkgRoot(t *testing.T) *dpkgRoot {
	t.Helper()
	r := &dpkgRoot{t: t, dpkg: needTool(t, "dpkg", "dpkg"), dir: t.TempDir()}
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "etc/containerd"} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(r.dir, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *dpkgRoot) run(args ...string) string {
	r.t.Helper()
	base := []string{"--root=" + r.dir, "--force-script-chrootless", "--force-not-root", "--force-depends", "--log=/dev/null"}
	return run(r.t, "", nil, r.dpkg, append(base, args...)...)
}

func (r *dpkgRoot) path(p string) string { return filepath.Join(r.dir, p) }

func (r *dpkgRoot) exists(p string) bool {
	_, err := os.Lstat(r.path(p))
	return err == nil
}

// TestDebInstallUpgradeRemovePurge installs the package into a scratch
// root, checks what dpkg recorded and the installed files, runs the
// installed binary under both its names against the shipped policy,
// reinstalls over an edited policy (kept), then removes and purges.
func TestDebInstallUpgradeRemovePurge(t *testing.T) {
	deb, _ := buildPackage(t)
	r := newDpkgRoot(t)

	out := r.run("--install", deb)
	if !strings.Contains(out, "installed in audit mode") {
		t.Errorf("postinst did not explain the next steps:\n%s", out)
	}
	status := run(t, "", nil, r.dpkg, "--root="+r.dir, "--status", "trustd")
	if !strings.Contains(status, "Status: install ok installed") || !strings.Contains(status, "Conffiles:\n /etc/trustd/policy.toml ") {
		t.Errorf("dpkg --status:\n%s", status)
	}
	for _, p := range []string{"usr/bin/trustd", "usr/libexec/trustd/trustd-verifier", "lib/systemd/system/trustd.service", "etc/trustd/policy.toml", "usr/share/trustd/containerd-trustd.toml"} {
		if !r.exists(p) {
			t.Errorf("/%s not installed", p)
		}
	}
	if l, err := os.Readlink(r.path("opt/containerd/image-verifier/bin/trustd-verifier")); err != nil || l != "/usr/libexec/trustd/trustd-verifier" {
		t.Errorf("trustd-verifier link: %q, %v", l, err)
	}
	if fi, err := os.Stat(r.path("var/lib/trustd")); err != nil || fi.Mode().Perm() != 0o700 || !fi.IsDir() {
		t.Errorf("/var/lib/trustd: %v, %v; want a 0700 directory", fi, err)
	}
	// containerd's configuration is untouched; the unit is enabled (when
	// deb-systemd-helper is there, as on every Debian system).
	if entries, _ := os.ReadDir(r.path("etc/containerd")); len(entries) != 0 {
		t.Errorf("the package wrote into /etc/containerd: %v", entries)
	}
	if _, err := exec.LookPath("deb-systemd-helper"); err == nil {
		if l, err := os.Readlink(r.path("etc/systemd/system/multi-user.target.wants/trustd.service")); err != nil || l != "/lib/systemd/system/trustd.service" {
			t.Errorf("trustd.service not enabled in the root: %q, %v", l, err)
		}
	}

	// The shipped policy is valid, and installing the package blocks no
	// pull: an unsigned image is audited, not denied (exit 0).
	bin := r.path("usr/bin/trustd")
	policyFile := r.path("etc/trustd/policy.toml")
	if out, err := runErr("", nil, bin, "policy", "check", policyFile); err != nil || !strings.Contains(out, "OK (0 sources, 2 rules, mode audit)") {
		t.Errorf("trustd policy check on the shipped policy: %v\n%s", err, out)
	}
	// The installed verifier, with no daemon, execs the installed trustd
	// (TRUSTD_BIN: the scratch root's /usr/bin/trustd); so does the trustd
	// binary under the verifier's name, as older packages linked it.
	link := filepath.Join(t.TempDir(), "trustd-verifier")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	env := []string{"TRUSTD_CONFIG=" + policyFile, "TRUSTD_BIN=" + bin}
	for _, verifier := range []string{r.path("usr/libexec/trustd/trustd-verifier"), link} {
		for _, ref := range []string{"registry.k8s.io/pause:3.10", "docker.io/library/nginx:1.27"} {
			cmd := exec.Command(verifier, "-name", ref, "-digest", "sha256:"+strings.Repeat("ab", 32), "-stdin-media-type", "application/vnd.oci.descriptor.v1+json")
			cmd.Env = append(os.Environ(), env...)
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "trustd: ") {
				t.Errorf("%s %s with the shipped policy: %v\n%s", verifier, ref, err, out)
			}
			t.Logf("%s %s: %s", verifier, ref, strings.TrimSpace(string(out)))
		}
	}

	// Reinstall (an upgrade to the same version) keeps an edited policy.
	edited := readFile(t, policyFile) + "\n# edited by the operator\n"
	if err := os.WriteFile(policyFile, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	r.run("--force-confold", "--install", deb)
	if got := readFile(t, policyFile); got != edited {
		t.Error("reinstalling replaced the operator's policy")
	}

	// Removal with containerd still requiring trustd warns; the conffile
	// stays until purge.
	if err := os.MkdirAll(r.path("etc/containerd/conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	dropIn := readFile(t, r.path("usr/share/trustd/containerd-trustd.toml"))
	if err := os.WriteFile(r.path("etc/containerd/conf.d/50-trustd.toml"), []byte(dropIn), 0o644); err != nil {
		t.Fatal(err)
	}
	out = r.run("--remove", "trustd")
	if !strings.Contains(out, "still lists trustd in\nrequired_plugins") {
		t.Errorf("removal did not warn that containerd still requires trustd:\n%s", out)
	}
	for _, p := range []string{"usr/bin/trustd", "usr/libexec/trustd/trustd-verifier", "opt/containerd/image-verifier/bin/trustd-verifier", "lib/systemd/system/trustd.service"} {
		if r.exists(p) {
			t.Errorf("/%s left after removal", p)
		}
	}
	if !r.exists("etc/trustd/policy.toml") {
		t.Error("removal deleted the policy (a conffile stays until purge)")
	}

	if err := os.MkdirAll(r.path("var/lib/trustd/tuf"), 0o700); err != nil {
		t.Fatal(err)
	}
	r.run("--purge", "trustd")
	for _, p := range []string{"etc/trustd", "var/lib/trustd", "etc/systemd/system/multi-user.target.wants/trustd.service"} {
		if r.exists(p) {
			t.Errorf("/%s left after purge", p)
		}
	}
	if !r.exists("etc/containerd/conf.d/50-trustd.toml") {
		t.Error("purge removed the operator's containerd drop-in")
	}
	var left []string
	filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(r.dir, p)
		if err == nil && !d.IsDir() && !strings.HasPrefix(rel, "var/lib/dpkg") && !strings.HasPrefix(rel, "etc/containerd") {
			left = append(left, rel)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("files left after purge: %v", left)
	}
}

// TestDebLintian runs lintian on the package; any error or warning that
// packaging/deb/lintian-overrides does not explain fails.
func TestDebLintian(t *testing.T) {
	deb, _ := buildPackage(t)
	lintian := needTool(t, "lintian", "lintian")
	out, err := runErr("", nil, lintian, "--fail-on", "error,warning", "--tag-display-limit", "0", deb)
	var tags []string
	for _, l := range strings.Split(out, "\n") {
		if len(l) > 2 && l[1] == ':' && slices.Contains([]byte("EWIP"), l[0]) {
			tags = append(tags, l)
		}
	}
	if err != nil {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
	t.Logf("lintian: %d tags shown (errors and warnings fail): %v", len(tags), tags)
}
