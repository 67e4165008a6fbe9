package testimage

import (
	"encoding/json"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Legacy writes a `docker save` tar in Docker's legacy form (before Docker
// 25): <id>/VERSION, <id>/json and <id>/layer.tar per layer (uncompressed),
// <config hex>.json per image, then manifest.json and repositories. Entries
// are written in the order of the calls, so a test chooses the order (Docker
// writes the layers, then the config). It holds no layer after writing it.
type Legacy struct {
	w     *Writer
	seen  map[digest.Digest]string // a layer's diff ID → the path of its first copy
	mf    []LegacyManifest
	repos map[string]map[string]string
}

// LegacyManifest is one image of a legacy manifest.json.
type LegacyManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// NewLegacy starts a legacy `docker save` tar on w.
func NewLegacy(w *Writer) *Legacy {
	return &Legacy{w: w, seen: map[digest.Digest]string{}, repos: map[string]map[string]string{}}
}

// Layer writes the uncompressed layer tar under <id>/ and returns its path
// and diff ID. A layer with the content of an earlier one is a symbolic
// link to its first copy, as Docker saves a layer two images share.
func (l *Legacy) Layer(id string, layer []byte) (string, digest.Digest, error) {
	p := id + "/layer.tar"
	diffID := digest.FromBytes(layer)
	if err := l.w.Add(Entry{Name: id + "/VERSION", Data: []byte("1.0")}); err != nil {
		return "", "", err
	}
	if err := l.w.Add(Entry{Name: id + "/json", Data: []byte(`{"id":"` + id + `"}`)}); err != nil {
		return "", "", err
	}
	e := Entry{Name: p, Data: layer}
	if first, ok := l.seen[diffID]; ok {
		e = Entry{Name: p, Link: "../" + first}
	} else {
		l.seen[diffID] = p
	}
	return p, diffID, l.w.Add(e)
}

// Config writes an image config as <hex>.json and returns that name.
func (l *Legacy) Config(config []byte) (string, error) {
	name := digest.FromBytes(config).Encoded() + ".json"
	return name, l.w.Add(Entry{Name: name, Data: config})
}

// Image lists an image in manifest.json: its config (the name Config
// returned), its layers (the paths Layer returned) and the reference it
// is saved under ("" for an untagged image, `docker save <image ID>`).
func (l *Legacy) Image(ref, config string, layers []string) {
	m := LegacyManifest{Config: config, Layers: layers}
	if ref == "" {
		l.mf = append(l.mf, m)
		return
	}
	m.RepoTags = []string{ref}
	l.mf = append(l.mf, m)
	repo, tag := ref, "latest"
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		repo, tag = ref[:i], ref[i+1:]
	}
	if l.repos[repo] == nil {
		l.repos[repo] = map[string]string{}
	}
	var last string
	if len(layers) > 0 {
		last = strings.TrimSuffix(layers[len(layers)-1], "/layer.tar")
	}
	l.repos[repo][tag] = last
}

// Close writes manifest.json and repositories and ends the tar.
func (l *Legacy) Close() error {
	mf, err := json.Marshal(l.mf)
	if err != nil {
		return err
	}
	if err := l.w.Add(Entry{Name: "manifest.json", Data: mf}); err != nil {
		return err
	}
	repos, err := json.Marshal(l.repos)
	if err != nil {
		return err
	}
	if err := l.w.Add(Entry{Name: "repositories", Data: repos}); err != nil {
		return err
	}
	return l.w.Close()
}
