package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The dump of a policy in golden files: stable, readable JSON.
type (
	dumpDoc struct {
		Policy   *dumpPolicy `json:"policy"`
		Warnings []string    `json:"warnings"`
	}
	dumpPolicy struct {
		File    string       `json:"file"`
		Version int          `json:"version"`
		Mode    Mode         `json:"mode"`
		Daemon  dumpDaemon   `json:"daemon"`
		Sources []dumpSource `json:"sources"`
		Rules   []dumpRule   `json:"rules"`
		Mirrors []dumpMirror `json:"mirrors"`
	}
	dumpDaemon struct {
		CacheDir            string `json:"cache_dir"`
		Refresh             string `json:"refresh"`
		OfflineGrace        string `json:"offline_grace"`
		NRISocket           string `json:"nri_socket"`
		ContainerdAddress   string `json:"containerd_address"`
		ContainerdNamespace string `json:"containerd_namespace"`
		ControlSocket       string `json:"control_socket"`
		MetricsAddress      string `json:"metrics_address"`
	}
	dumpSource struct {
		Pos             string    `json:"pos,omitempty"`
		Name            string    `json:"name"`
		Kind            string    `json:"kind"`
		URL             string    `json:"url"`
		Root            string    `json:"root,omitempty"`
		Repositories    []string  `json:"repositories"`
		TrustOnFirstUse bool      `json:"trust_on_first_use"`
		OfflineGrace    *string   `json:"offline_grace,omitempty"`
		Pins            []dumpPin `json:"pins,omitempty"`
		TrustedRoot     string    `json:"trusted_root,omitempty"`
	}
	dumpPin struct {
		Pos          string   `json:"pos,omitempty"`
		Repositories []string `json:"repositories"`
		RootKeys     []string `json:"root_keys,omitempty"`
		CA           string   `json:"ca,omitempty"`
	}
	dumpRule struct {
		Pos        string     `json:"pos,omitempty"`
		Name       string     `json:"name,omitempty"`
		Index      int        `json:"index"`
		Images     []string   `json:"images"`
		Namespaces []string   `json:"namespaces"`
		Action     Action     `json:"action"`
		Source     string     `json:"source,omitempty"`
		Signers    []string   `json:"signers,omitempty"`
		Threshold  int        `json:"threshold"`
		Mode       Mode       `json:"mode,omitempty"`
		Also       []dumpRule `json:"also,omitempty"`
	}
	dumpMirror struct {
		Pos  string `json:"pos,omitempty"`
		From string `json:"from"`
		To   string `json:"to"`
	}
)

func dumpPatterns(ps []Pattern) []string {
	out := []string{}
	for _, p := range ps {
		if p.String() == p.Normalized() {
			out = append(out, p.String())
		} else {
			out = append(out, p.String()+" -> "+p.Normalized())
		}
	}
	return out
}

// dump returns a JSON-able view of p; without positions when withPos is
// false (for comparing policies parsed from different texts).
func dump(p *Policy, withPos bool) *dumpPolicy {
	pos := func(x Position) string {
		if !withPos {
			return ""
		}
		return x.String()
	}
	d := &dumpPolicy{
		Version: p.Version,
		Mode:    p.Mode,
		Daemon: dumpDaemon{
			CacheDir:            p.Daemon.CacheDir,
			Refresh:             p.Daemon.Refresh.String(),
			OfflineGrace:        p.Daemon.OfflineGrace.String(),
			NRISocket:           p.Daemon.NRISocket,
			ContainerdAddress:   p.Daemon.ContainerdAddress,
			ContainerdNamespace: p.Daemon.ContainerdNamespace,
			ControlSocket:       p.Daemon.ControlSocket,
			MetricsAddress:      p.Daemon.MetricsAddress,
		},
		Sources: []dumpSource{},
		Rules:   []dumpRule{},
		Mirrors: []dumpMirror{},
	}
	if withPos {
		d.File = p.File
	}
	for _, s := range p.Sources {
		ds := dumpSource{
			Pos: pos(s.Pos), Name: s.Name, Kind: s.Kind, URL: s.URL, Root: s.Root,
			Repositories: dumpPatterns(s.Repositories), TrustOnFirstUse: s.TrustOnFirstUse, TrustedRoot: s.TrustedRoot,
		}
		if s.OfflineGrace != nil {
			g := s.OfflineGrace.String()
			ds.OfflineGrace = &g
		}
		for _, pin := range s.Pins {
			ds.Pins = append(ds.Pins, dumpPin{Pos: pos(pin.Pos), Repositories: dumpPatterns(pin.Repositories), RootKeys: pin.RootKeys, CA: pin.CA})
		}
		d.Sources = append(d.Sources, ds)
	}
	for _, r := range p.Rules {
		dr := dumpRule{
			Pos: pos(r.Pos), Index: r.Index, Images: dumpPatterns(r.Images), Namespaces: r.Namespaces,
			Action: r.Action, Source: r.Source, Signers: r.Signers, Threshold: r.Threshold, Mode: r.Mode,
		}
		if withPos {
			dr.Name = r.String()
		}
		for _, a := range r.Also {
			da := dumpRule{Pos: pos(a.Pos), Index: a.Index, Action: a.Action, Source: a.Source, Signers: a.Signers, Threshold: a.Threshold}
			if withPos {
				da.Name = a.String()
			}
			dr.Also = append(dr.Also, da)
		}
		d.Rules = append(d.Rules, dr)
	}
	for _, m := range p.Mirrors {
		d.Mirrors = append(d.Mirrors, dumpMirror{Pos: pos(m.Pos), From: m.From, To: m.To})
	}
	return d
}

func checkGolden(t *testing.T, file string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update if the change is intended):\n got:\n%s\nwant:\n%s", file, got, want)
	}
}

func goldenFiles(t *testing.T, dir string) []string {
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/%s/*.toml: %v", dir, err)
	}
	return files
}

func TestGoldenValid(t *testing.T) {
	for _, file := range goldenFiles(t, "valid") {
		t.Run(filepath.Base(file), func(t *testing.T) {
			p, err := Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			doc := dumpDoc{Policy: dump(p, true), Warnings: []string{}}
			for _, w := range p.Check() {
				doc.Warnings = append(doc.Warnings, w.String())
			}
			var got bytes.Buffer
			enc := json.NewEncoder(&got)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(doc); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, strings.TrimSuffix(file, ".toml")+".golden", got.Bytes())
		})
	}
}

func TestGoldenInvalid(t *testing.T) {
	for _, file := range goldenFiles(t, "invalid") {
		t.Run(filepath.Base(file), func(t *testing.T) {
			p, err := Load(file)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", dump(p, true))
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error is not ErrInvalid: %v", err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, file+":") {
					t.Errorf("error line without the file's position: %q", line)
				}
			}
			checkGolden(t, strings.TrimSuffix(file, ".toml")+".golden", []byte(err.Error()+"\n"))
		})
	}
}
