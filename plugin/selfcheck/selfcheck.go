package selfcheck

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/trustd/trustd/plugin/gate"
	"github.com/trustd/trustd/plugin/nri"

	"github.com/pelletier/go-toml/v2"
)

// Finding severities. An error means containers can be created without
// trustd's judgement (fail open) or that trustd cannot work at all; a
// warning means the pull gate is bypassed or weakened (creation, the
// guarantee, is still judged).
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Finding is one problem in the node's containerd configuration, written
// for the operator: what is wrong, what follows, and what to change.
type Finding struct {
	Severity string `json:"severity"`
	Message  string `json:"message"`
	// Registration is set on findings that mean trustd cannot register
	// with NRI: a live NRI connection disproves them (the file read is
	// then not the one containerd runs with).
	Registration bool `json:"-"`
}

func (f Finding) String() string { return f.Severity + ": " + f.Message }

// DefaultContainerdConfig is containerd's default configuration file.
const DefaultContainerdConfig = "/etc/containerd/config.toml"

// containerd plugin IDs and defaults (containerd 2.4).
const (
	nriPluginID        = "io.containerd.nri.v1.nri"
	bindirPluginID     = "io.containerd.image-verifier.v1.bindir"
	criImagesPluginID  = "io.containerd.cri.v1.images"
	criGRPCPluginID    = "io.containerd.grpc.v1.cri"
	defaultNRISocket   = "/var/run/nri/nri.sock"
	defaultBinDir      = "/opt/containerd/image-verifier/bin"
	defaultMaxVerifier = 10
	// containerdConfigVersion is the newest containerd configuration
	// version (containerd 2.4); older files are migrated to it.
	containerdConfigVersion = 4
	// maxContainerdConfig bounds each configuration file read.
	maxContainerdConfig = 4 << 20
)

// CheckContainerdConfig reads containerd's configuration at path the way
// containerd 2.x does — the file, then its `imports` (globs and paths
// relative to the importing file) breadth-first, each migrated from its
// `version` and merged over the previous ones table by table, later values
// winning — and reports the settings that let containers or pulls past
// trustd: NRI disabled or closed to external plugins, an NRI socket other
// than nriSocket (trustd's daemon.nri_socket; empty means the default), no
// default validator requiring the plugin "trustd" (a crash of trustd then
// lets containers through), a missing trustd-verifier in the image
// verifier's bin_dir, and the CRI settings that make pulls bypass the
// image verifier.
//
// A missing file at path is checked as containerd's defaults (with a
// warning). The error is non-nil when the configuration cannot be read or
// parsed, or names an import that does not exist; containerd would not
// start with it either. It only reads files.
func CheckContainerdConfig(path, nriSocket string) ([]Finding, error) {
	return checkContainerdConfig("", path, nriSocket)
}

// CheckContainerdConfigAt is CheckContainerdConfig of the file that
// LocateContainerdConfig found, read in containerd's own file system.
func CheckContainerdConfigAt(loc ConfigLocation, nriSocket string) ([]Finding, error) {
	return checkContainerdConfig(loc.Root, loc.Path, nriSocket)
}

// Disproved returns findings as they stand once trustd knows whether it is
// connected to NRI: while it is, every finding that says it cannot
// register is false of the running containerd, and is replaced by one
// warning that the file read is not the one containerd uses.
func Disproved(findings []Finding, nriConnected bool, loc ConfigLocation) []Finding {
	if !nriConnected || !slices.ContainsFunc(findings, func(f Finding) bool { return f.Registration }) {
		return findings
	}
	out := slices.DeleteFunc(slices.Clone(findings), func(f Finding) bool { return f.Registration })
	return append(out, Finding{Severity: SeverityWarning, Message: fmt.Sprintf("containerd configuration %s (%s) says trustd cannot register with NRI, yet trustd is connected: containerd runs with another configuration, and the findings about this file may not apply; point --containerd-config or TRUSTD_CONTAINERD_CONFIG at the file containerd uses", loc.Path, loc.How)})
}

// checkContainerdConfig is CheckContainerdConfig with every absolute path
// (the configuration, its imports and bin_dir) taken under root (tests).
func checkContainerdConfig(root, path, nriSocket string) ([]Finding, error) {
	c := &containerdChecker{root: root}
	cfg, err := c.load(path)
	if err != nil {
		return nil, err
	}
	if cfg.missing {
		c.warn("containerd configuration %s does not exist: containerd runs with its defaults, which are checked here, and reads no drop-in file", path)
	}
	c.checkUnimported(cfg, path)
	c.checkNRI(cfg, nriSocket)
	c.checkVerifier(cfg)
	c.checkCRIPulls(cfg)
	return c.findings, nil
}

type containerdChecker struct {
	root     string
	findings []Finding
}

func (c *containerdChecker) add(sev, format string, args ...any) {
	c.findings = append(c.findings, Finding{Severity: sev, Message: fmt.Sprintf(format, args...)})
}
func (c *containerdChecker) fail(format string, args ...any) { c.add(SeverityError, format, args...) }

// failRegistration is fail for a setting that keeps trustd from
// registering with NRI at all.
func (c *containerdChecker) failRegistration(format string, args ...any) {
	c.fail(format, args...)
	c.findings[len(c.findings)-1].Registration = true
}
func (c *containerdChecker) warn(format string, args ...any) { c.add(SeverityWarning, format, args...) }

// host maps a path of the node to the file system being read.
func (c *containerdChecker) host(p string) string {
	if c.root == "" {
		return p
	}
	return filepath.Join(c.root, p)
}

// stat is os.Stat of a path of the node: symbolic links (the package's
// trustd-verifier → /usr/libexec/trustd/trustd-verifier, the DaemonSet's
// → ../libexec/trustd-verifier) are followed within the node's file system.
func (c *containerdChecker) stat(p string) (fs.FileInfo, error) {
	for range 16 {
		fi, err := os.Lstat(c.host(p))
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			return fi, err
		}
		target, err := os.Readlink(c.host(p))
		if err != nil {
			return nil, err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	return nil, fmt.Errorf("%s: too many levels of symbolic links", p)
}

// containerdConfig is the merged configuration, decoded leniently.
type containerdConfig struct {
	missing  bool
	files    map[string]bool // the files merged
	disabled []string
	plugins  map[string]any
}

// containerdDropIns is where containerd's packaging and trustd's
// documentation put drop-in files (containerd's DefaultConfigIncludePattern).
const containerdDropIns = "/etc/containerd/conf.d/*.toml"

// checkUnimported warns about drop-in files that containerd does not read.
func (c *containerdChecker) checkUnimported(cfg *containerdConfig, path string) {
	matches, _ := filepath.Glob(c.host(containerdDropIns))
	for _, m := range matches {
		p := m
		if c.root != "" {
			rel, err := filepath.Rel(c.root, m)
			if err != nil {
				continue
			}
			p = "/" + rel
		}
		if !cfg.files[p] {
			c.warn("%s is not imported by %s, so containerd ignores it; add imports = ['%s'] at the top of %s", p, path, containerdDropIns, path)
		}
	}
}

func (c *containerdChecker) load(path string) (*containerdConfig, error) {
	cfg := &containerdConfig{plugins: map[string]any{}, files: map[string]bool{}}
	loaded := cfg.files
	pending := []string{path}
	for first := true; len(pending) > 0; first = false {
		p := pending[0]
		pending = pending[1:]
		if loaded[p] {
			continue
		}
		doc, err := c.readTOML(p)
		if first && errors.Is(err, fs.ErrNotExist) {
			cfg.missing = true
			return cfg, nil
		}
		if err != nil {
			return nil, err
		}
		migrateContainerdConfig(doc)
		if d, ok := doc["disabled_plugins"].([]any); ok {
			for _, v := range d {
				if s, ok := v.(string); ok && !slices.Contains(cfg.disabled, s) {
					cfg.disabled = append(cfg.disabled, s)
				}
			}
		}
		if pl, ok := doc["plugins"].(map[string]any); ok {
			mergeTOML(cfg.plugins, pl)
		}
		imports, err := c.resolveImports(p, doc["imports"])
		if err != nil {
			return nil, err
		}
		loaded[p] = true
		pending = append(pending, imports...)
	}
	return cfg, nil
}

func (c *containerdChecker) readTOML(path string) (map[string]any, error) {
	f, err := os.Open(c.host(path))
	if err != nil {
		return nil, fmt.Errorf("containerd configuration: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxContainerdConfig+1))
	if err != nil {
		return nil, fmt.Errorf("containerd configuration %s: %w", path, err)
	}
	if len(b) > maxContainerdConfig {
		return nil, fmt.Errorf("containerd configuration %s: larger than %d bytes", path, maxContainerdConfig)
	}
	doc := map[string]any{}
	if err := toml.Unmarshal(b, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, fmt.Errorf("%s:%d:%d: %s", path, row, col, de.Error())
		}
		return nil, fmt.Errorf("containerd configuration %s: %w", path, err)
	}
	return doc, nil
}

// resolveImports follows containerd's resolveImports: paths relative to
// the importing file's directory, globs expanded (sorted), others kept
// (and required to exist when read).
func (c *containerdChecker) resolveImports(parent string, v any) ([]string, error) {
	list, _ := v.([]any)
	var out []string
	for _, it := range list {
		p, ok := it.(string)
		if !ok {
			return nil, fmt.Errorf("containerd configuration %s: imports must be strings, got %T", parent, it)
		}
		p = filepath.Clean(p)
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(parent), p)
		}
		if !strings.Contains(p, "*") {
			out = append(out, p)
			continue
		}
		matches, err := filepath.Glob(c.host(p))
		if err != nil {
			return nil, fmt.Errorf("containerd configuration %s: import %q: %w", parent, p, err)
		}
		for _, m := range matches {
			if c.root != "" {
				rel, err := filepath.Rel(c.root, m)
				if err != nil {
					return nil, err
				}
				m = "/" + rel
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// migrateContainerdConfig moves, in one file's plugins, the settings this
// check reads to where containerd 2.4 reads them: version 1 (and
// unversioned) files name the CRI plugin "cri"; files older than version 4
// have the CRI image settings under io.containerd.grpc.v1.cri, which
// containerd's CRI images plugin migrates to io.containerd.cri.v1.images
// (plugins/cri/images.configMigration).
func migrateContainerdConfig(doc map[string]any) {
	version, _ := doc["version"].(int64)
	plugins, _ := doc["plugins"].(map[string]any)
	if version < 2 {
		if plugins != nil {
			if v, ok := plugins["cri"]; ok {
				delete(plugins, "cri")
				plugins[criGRPCPluginID] = v
			}
		}
		if d, ok := doc["disabled_plugins"].([]any); ok {
			for i, v := range d {
				if v == "cri" {
					d[i] = criGRPCPluginID
				}
			}
		}
	}
	if version >= containerdConfigVersion || plugins == nil {
		return
	}
	src, ok := plugins[criGRPCPluginID].(map[string]any)
	if !ok {
		return
	}
	dst, ok := plugins[criImagesPluginID].(map[string]any)
	if !ok {
		dst = map[string]any{}
	}
	for _, k := range []string{"registry", "max_concurrent_downloads", "image_pull_with_sync_fs"} {
		if v, ok := src[k]; ok {
			dst[k] = v
		}
	}
	// containerd 2.4 moves these only from a containerd table that also
	// has runtimes (its migration returns early otherwise, and the
	// settings are then ignored): do the same.
	if ctrd, ok := src["containerd"].(map[string]any); ok {
		if _, ok := ctrd["runtimes"]; ok {
			for _, k := range []string{"disable_snapshot_annotations", "discard_unpacked_layers"} {
				if v, ok := ctrd[k]; ok {
					dst[k] = v
				}
			}
		}
	}
	if len(dst) > 0 {
		plugins[criImagesPluginID] = dst
	}
}

// mergeTOML merges src over dst as containerd merges plugin configuration
// (mergo with override): tables merge key by key, recursively; any other
// value, arrays included, replaces dst's.
func mergeTOML(dst, src map[string]any) {
	for k, sv := range src {
		if sm, ok := sv.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeTOML(dm, sm)
				continue
			}
			cp := map[string]any{}
			mergeTOML(cp, sm)
			dst[k] = cp
			continue
		}
		dst[k] = sv
	}
}

// lookup returns the value at a path of tables.
func lookup(m map[string]any, keys ...string) (any, bool) {
	var v any = m
	for _, k := range keys {
		t, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = t[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

func lookupBool(m map[string]any, keys ...string) (value, set bool) {
	v, ok := lookup(m, keys...)
	if !ok {
		return false, false
	}
	b, ok := v.(bool)
	return b, ok
}

func lookupString(m map[string]any, keys ...string) (string, bool) {
	v, ok := lookup(m, keys...)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// sameSocket compares socket paths, taking /var/run as the /run it links
// to on every systemd distribution.
func sameSocket(a, b string) bool {
	norm := func(p string) string {
		p = filepath.Clean(p)
		if rest, ok := strings.CutPrefix(p, "/var/run/"); ok {
			return "/run/" + rest
		}
		return p
	}
	return norm(a) == norm(b)
}

func (c *containerdChecker) checkNRI(cfg *containerdConfig, nriSocket string) {
	table := fmt.Sprintf("plugins.'%s'", nriPluginID)
	if slices.Contains(cfg.disabled, nriPluginID) {
		c.failRegistration("NRI is disabled (disabled_plugins lists %q): trustd never sees a container creation, so nothing is judged at creation; remove it from disabled_plugins", nriPluginID)
		return
	}
	if off, _ := lookupBool(cfg.plugins, nriPluginID, "disable"); off {
		c.failRegistration("NRI is disabled (%s.disable = true): trustd never sees a container creation, so nothing is judged at creation; set disable = false", table)
		return
	}
	if closed, _ := lookupBool(cfg.plugins, nriPluginID, "disable_connections"); closed {
		c.failRegistration("NRI accepts no external plugins (%s.disable_connections = true): trustd cannot register; set disable_connections = false", table)
	}
	if nriSocket == "" {
		nriSocket = defaultNRISocket
	}
	sock, ok := lookupString(cfg.plugins, nriPluginID, "socket_path")
	if !ok || sock == "" {
		sock = defaultNRISocket
	}
	if !sameSocket(sock, nriSocket) {
		c.failRegistration("NRI listens on %s (%s.socket_path) but trustd connects to %s (daemon.nri_socket in the policy): trustd cannot register; make them equal", sock, table, nriSocket)
	}
	enabled, _ := lookupBool(cfg.plugins, nriPluginID, "default_validator", "enable")
	if !enabled {
		c.fail("NRI's default validator is not enabled (%s.default_validator.enable): while trustd is stopped, crashed, restarting or too slow, containers are created unchecked (fail open); enable it with required_plugins = ['%s']", table, nri.PluginName)
	} else {
		var required []string
		if v, ok := lookup(cfg.plugins, nriPluginID, "default_validator", "required_plugins"); ok {
			list, _ := v.([]any)
			for _, it := range list {
				if s, ok := it.(string); ok {
					required = append(required, s)
				}
			}
		}
		if !slices.Contains(required, nri.PluginName) {
			c.fail("NRI's default validator does not require trustd (%s.default_validator.required_plugins = %q): while trustd is not connected, containers are created unchecked (fail open); add '%s'", table, required, nri.PluginName)
		}
	}
	if ann, _ := lookupString(cfg.plugins, nriPluginID, "default_validator", "tolerate_missing_plugins_annotation"); ann != "" {
		c.warn("NRI's default validator lets pods annotated %q = \"true\" start without required plugins (%s.default_validator.tolerate_missing_plugins_annotation): such pods run unchecked whenever trustd is down; allow that annotation only where it is needed (admission control), or remove the setting", ann, table)
	}
}

func (c *containerdChecker) checkVerifier(cfg *containerdConfig) {
	if slices.Contains(cfg.disabled, bindirPluginID) {
		c.warn("the image verifier is disabled (disabled_plugins lists %q): pulls are not gated by trustd-verifier (creation still is); remove it from disabled_plugins", bindirPluginID)
		return
	}
	dir, ok := lookupString(cfg.plugins, bindirPluginID, "bin_dir")
	if !ok || dir == "" {
		dir = defaultBinDir
	}
	maxVerifiers := int64(defaultMaxVerifier)
	if v, ok := lookup(cfg.plugins, bindirPluginID, "max_verifiers"); ok {
		if n, ok := v.(int64); ok {
			maxVerifiers = n
		}
	}
	entries, err := os.ReadDir(c.host(dir))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.warn("the image verifier directory %s (bin_dir) does not exist: containerd allows every pull unchecked; link %s there (the package installs /opt/containerd/image-verifier/bin/%s)", dir, gate.VerifierName, gate.VerifierName)
		return
	case err != nil:
		c.warn("the image verifier directory %s (bin_dir) cannot be read: %v", dir, err)
		return
	case len(entries) == 0:
		c.warn("the image verifier directory %s (bin_dir) is empty: containerd allows every pull unchecked; link %s there", dir, gate.VerifierName)
		return
	}
	idx := slices.IndexFunc(entries, func(e fs.DirEntry) bool { return e.Name() == gate.VerifierName })
	if idx < 0 {
		c.warn("the image verifier directory %s (bin_dir) has no %s: pulls are not gated by trustd (creation still is); link it to the trustd-verifier executable (the package installs /usr/libexec/trustd/%s)", dir, gate.VerifierName, gate.VerifierName)
		return
	}
	bin := filepath.Join(dir, gate.VerifierName)
	fi, err := c.stat(bin)
	switch {
	case err != nil:
		c.warn("%s cannot be run: %v; containerd then fails every pull (\"failed to call verifier\")", bin, err)
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		c.warn("%s is not an executable file (mode %s); containerd then fails every pull (\"failed to call verifier\")", bin, fi.Mode())
	}
	if maxVerifiers >= 0 && int64(idx) >= maxVerifiers {
		c.warn("containerd runs only the first %d entries of %s (max_verifiers) in name order, and %s is entry %d: pulls are not gated by trustd; raise max_verifiers or remove other entries", maxVerifiers, dir, gate.VerifierName, idx+1)
	}
}

func (c *containerdChecker) checkCRIPulls(cfg *containerdConfig) {
	img, _ := cfg.plugins[criImagesPluginID].(map[string]any)
	if img == nil {
		return
	}
	where := fmt.Sprintf("plugins.'%s'", criImagesPluginID)
	bypass := func(setting, why string) {
		c.warn("CRI pulls bypass the image verifier (containerd pulls locally instead of through the transfer service) because of %s in %s (or plugins.\"%s\" of a version 2 file): trustd-verifier is not run for Kubernetes pulls, only container creation is judged; %s", setting, where, criGRPCPluginID, why)
	}
	if on, _ := lookupBool(img, "use_local_image_pull"); on {
		bypass("use_local_image_pull = true", "remove it")
	}
	for _, k := range []string{"mirrors", "configs", "auths"} {
		if t, ok := img["registry"].(map[string]any); ok {
			if m, ok := t[k].(map[string]any); ok && len(m) > 0 {
				bypass("the deprecated registry."+k, "move them to hosts.toml files under registry.config_path")
			}
		}
	}
	if on, _ := lookupBool(img, "discard_unpacked_layers"); on {
		bypass("discard_unpacked_layers = true", "remove it")
	}
	if on, _ := lookupBool(img, "image_pull_with_sync_fs"); on {
		bypass("image_pull_with_sync_fs = true", "remove it")
	}
	if v, set := lookupBool(img, "disable_snapshot_annotations"); set && !v {
		bypass("disable_snapshot_annotations = false", "remove it (snapshotter annotations are configured on the snapshotter with the transfer service)")
	}
	if v, ok := img["max_concurrent_downloads"]; ok {
		if n, isInt := v.(int64); !isInt || n != 3 {
			bypass(fmt.Sprintf("max_concurrent_downloads = %v", v), "CRI uses the transfer service only with 3: remove it and set max_concurrent_downloads under plugins.'io.containerd.transfer.v1.local' instead")
		}
	}
}
