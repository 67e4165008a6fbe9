package archive

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Annotations naming an image in an index.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
	// BuildKit marks the attestation manifests of an index so.
	annotationRefType     = "vnd.docker.reference.type"
	refTypeAttestation    = "attestation-manifest"
	ociLayoutVersion      = "1.0.0"
	mediaTypeOCIIndex     = "application/vnd.oci.image.index.v1+json"
	mediaTypeDockerList   = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeOCIConfig    = "application/vnd.oci.image.config.v1+json"
	mediaTypeDockerConfig = "application/vnd.docker.container.image.v1+json"
	maxIndexDepth         = 4
	// maxPlatforms bounds the manifests of one index, nested ones included.
	maxPlatforms = 1024
	// maxImageProblems bounds the problems listed for one image, and
	// maxArchiveProblems the archive-wide ones.
	maxImageProblems   = 20
	maxArchiveProblems = 100

	// cosign's OCI layouts (`cosign save`) mark each manifest of their
	// index.json with its kind: the image, its signatures (tag scheme),
	// its attestations.
	annotationCosignKind = "kind"
	cosignKindSigs       = "dev.cosignproject.cosign/sigs"
	cosignKindAtts       = "dev.cosignproject.cosign/atts"
	sigstoreBundlePrefix = "application/vnd.dev.sigstore.bundle"
)

// descKey identifies what a descriptor points to and how it is read.
type descKey struct {
	d         digest.Digest
	mediaType string
	size      int64
}

// described is the outcome of describe, shared by the images of one index.
type described struct {
	platforms []Platform
	config    digest.Digest
	problems  []string
}

// checkedManifest is the outcome of manifest, computed once per manifest.
type checkedManifest struct {
	m                 *manifestJSON
	missing, problems []string
}

type platformJSON struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

func (p *platformJSON) String() string {
	if p == nil || p.OS == "" && p.Architecture == "" {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      digest.Digest     `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platformJSON     `json:"platform,omitempty"`
}

// manifestJSON is an image manifest or index (the fields trustd reads).
type manifestJSON struct {
	MediaType string       `json:"mediaType,omitempty"`
	Config    *descriptor  `json:"config,omitempty"`
	Layers    []descriptor `json:"layers,omitempty"`
	Manifests []descriptor `json:"manifests,omitempty"`
}

type configJSON struct {
	platformJSON
	RootFS *struct {
		DiffIDs []digest.Digest `json:"diff_ids"`
	} `json:"rootfs"`
}

// legacyManifest is one image of a docker save manifest.json.
type legacyManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// analyze turns the entries into images.
func (s *scanner) analyze() (*Archive, error) {
	a := &Archive{Size: s.size, blobs: map[digest.Digest][]byte{}, referrers: map[digest.Digest][]digest.Digest{}}
	s.checkBlobs()

	var images []*Image
	_, hasLayout := s.entries["oci-layout"]
	_, hasManifest := s.entries["manifest.json"]
	switch {
	case hasLayout:
		var layout struct {
			Version string `json:"imageLayoutVersion"`
		}
		if err := s.special("oci-layout", &layout); err != nil {
			return nil, err
		}
		if layout.Version != ociLayoutVersion {
			return nil, fmt.Errorf("%w: unsupported OCI image layout version %q", ErrFormat, layout.Version)
		}
		var index manifestJSON
		if err := s.special("index.json", &index); err != nil {
			return nil, err
		}
		a.Format = FormatOCI
		images, a.SignatureManifests = s.ociImages(index)
		if hasManifest {
			// Docker's classic image store loads manifest.json instead.
			a.Format = FormatDockerOCI
			legacy, err := s.legacyImages()
			if err != nil {
				return nil, err
			}
			images = merge(images, legacy)
		}
	case hasManifest:
		a.Format = FormatDocker
		legacy, err := s.legacyImages()
		if err != nil {
			return nil, err
		}
		images = legacy
	case s.entries["repositories"] != nil:
		return nil, fmt.Errorf("%w: a docker save archive from before Docker 1.10 (no manifest.json) is not supported", ErrFormat)
	default:
		return nil, fmt.Errorf("%w: neither an OCI image layout (oci-layout, index.json) nor a docker save archive (manifest.json)", ErrFormat)
	}

	a.Problems = capProblems(s.problems, maxArchiveProblems, "with the archive")
	for _, img := range images {
		img.Names = dedupe(img.Names)
		img.Problems = capProblems(dedupe(img.Problems), maxImageProblems, "with this image")
		img.Problems = append(img.Problems, a.Problems...)
		a.Images = append(a.Images, *img)
	}
	for _, name := range slices.Sorted(maps.Keys(s.entries)) {
		e := s.entries[name]
		if e.kind != kindFile || e.conflict || (e.class != classManifest && e.class != classIndex && e.class != classSignature) {
			continue
		}
		a.blobs[e.sha256] = e.data
		a.blobs[e.digest] = e.data
		if e.class != classManifest {
			continue
		}
		var m struct {
			Subject *descriptor `json:"subject"`
		}
		if json.Unmarshal(e.data, &m) == nil && m.Subject != nil && m.Subject.Digest.Validate() == nil && !slices.Contains(a.referrers[m.Subject.Digest], e.sha256) {
			a.referrers[m.Subject.Digest] = append(a.referrers[m.Subject.Digest], e.sha256)
		}
	}
	return a, nil
}

// checkBlobs reports every blob that does not hash to its name.
func (s *scanner) checkBlobs() {
	for _, name := range slices.Sorted(maps.Keys(s.entries)) {
		if e := s.entries[name]; e.kind == kindFile && e.want != "" && e.digest != e.want {
			s.problem("%s does not hash to its name: its content is %s (tampered or corrupt)", e.name, e.digest)
		}
	}
}

// special decodes one of the archive's own JSON files.
// Of several copies the last is read, as an extraction keeps it; that there
// were several is an archive-wide problem already.
func (s *scanner) special(name string, v any) error {
	e := s.entries[name]
	switch {
	case e == nil:
		return fmt.Errorf("%w: %s is missing", ErrFormat, name)
	case e.kind != kindFile:
		return fmt.Errorf("%w: %s is not a regular file", ErrFormat, name)
	}
	if e.data == nil {
		if e.dropped != "" {
			return fmt.Errorf("%w: %s cannot be read: %s", ErrLimit, name, e.dropped)
		}
		return fmt.Errorf("%w: %s is not JSON", ErrFormat, name)
	}
	if err := json.Unmarshal(e.data, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrFormat, name, err)
	}
	return nil
}

// blob finds the entry holding the content of descriptor d and checks it
// against d. absent is true when the archive does not hold it.
func (s *scanner) blob(what string, d descriptor) (e *entry, problem string, absent bool) {
	if err := d.Digest.Validate(); err != nil {
		return nil, fmt.Sprintf("%s has an invalid digest %q", what, d.Digest), false
	}
	name := "blobs/" + d.Digest.Algorithm().String() + "/" + d.Digest.Encoded()
	e, err := s.lookup(name)
	if err != nil {
		if errors.Is(err, errNotFound) {
			return nil, fmt.Sprintf("%s %s is not in the archive", what, d.Digest), true
		}
		return nil, fmt.Sprintf("%s %s: %v", what, d.Digest, err), false
	}
	got := e.digest
	if d.Digest.Algorithm() == digest.SHA256 {
		got = e.sha256
	}
	if got != d.Digest {
		return nil, fmt.Sprintf("%s %s: the archive's %s has content %s (tampered)", what, d.Digest, name, got), false
	}
	if e.size != d.Size {
		return nil, fmt.Sprintf("%s %s is %d bytes in the archive, %d in its descriptor", what, d.Digest, e.size, d.Size), false
	}
	return e, "", false
}

// metadata is blob for a manifest, index or config: it also wants the
// content, parsed.
func (s *scanner) metadata(what string, d descriptor) (e *entry, problem string, absent bool) {
	e, problem, absent = s.blob(what, d)
	if e == nil {
		return nil, problem, absent
	}
	if e.data == nil {
		if e.dropped != "" {
			return nil, fmt.Sprintf("%s %s cannot be read: %s", what, d.Digest, e.dropped), false
		}
		return nil, fmt.Sprintf("%s %s is not an image manifest, index or config", what, d.Digest), false
	}
	return e, "", false
}

// ociImages reports the images of an OCI layout's index.json, and the
// cosign signature manifests it lists (which are not images).
func (s *scanner) ociImages(index manifestJSON) (out []*Image, sigs []digest.Digest) {
	for _, d := range index.Manifests {
		switch d.Annotations[annotationCosignKind] {
		case cosignKindSigs:
			sigs = append(sigs, d.Digest)
			continue
		case cosignKindAtts:
			continue // attestations: neither an image nor a signature
		}
		img := &Image{ManifestDigest: d.Digest, MediaType: d.MediaType}
		if n := d.Annotations[annotationImageName]; n != "" {
			img.Names = append(img.Names, n)
		}
		// A ref name is a full reference or only a tag (as containerd reads it).
		if n := d.Annotations[annotationRefName]; n != "" {
			if strings.ContainsAny(n, "/:@") {
				img.Names = dedupe(append(img.Names, n))
			} else {
				img.Tags = append(img.Tags, n)
			}
		}
		key := descKey{d.Digest, d.MediaType, d.Size}
		r, ok := s.described[key]
		if !ok {
			var tmp Image
			s.describe(&tmp, d)
			r = described{tmp.Platforms, tmp.ConfigDigest, capProblems(dedupe(tmp.Problems), maxImageProblems, "with this image")}
			s.described[key] = r
		}
		// Platforms are shared by the images of one index: read only.
		img.Platforms, img.ConfigDigest, img.Problems = r.platforms, r.config, slices.Clone(r.problems)
		out = append(out, img)
	}
	return out, sigs
}

// describe checks the manifest or index d and fills img from it.
func (s *scanner) describe(img *Image, d descriptor) {
	e, problem, _ := s.metadata("manifest", d)
	if e == nil {
		img.Problems = append(img.Problems, problem)
		return
	}
	switch kindOf(d, e) {
	case classIndex:
		img.Platforms = []Platform{}
		s.index(img, d, e.data, 0, map[digest.Digest]bool{d.Digest: true})
		var complete int
		var configs []digest.Digest
		for _, p := range img.Platforms {
			if !p.Attestation && p.Complete {
				complete++
			}
			if !p.Attestation && p.Present {
				configs = append(configs, p.Config)
			}
		}
		if complete == 0 {
			img.Problems = append(img.Problems, fmt.Sprintf("none of the %d manifests of index %s is complete in the archive", len(img.Platforms), d.Digest))
		}
		if len(configs) == 1 {
			img.ConfigDigest = configs[0]
		}
	case classManifest:
		m, missing, problems := s.manifest(d, e.data)
		img.Problems = append(img.Problems, problems...)
		img.Problems = append(img.Problems, missing...)
		if m != nil && m.Config != nil {
			img.ConfigDigest = m.Config.Digest
		}
	default:
		img.Problems = append(img.Problems, fmt.Sprintf("manifest %s is not an image manifest or index", d.Digest))
	}
}

func isIndexType(mt string) bool { return mt == mediaTypeOCIIndex || mt == mediaTypeDockerList }

func isManifestType(mt string) bool {
	return mt == "application/vnd.oci.image.manifest.v1+json" || mt == "application/vnd.docker.distribution.manifest.v2+json"
}

// kindOf says whether d is a manifest or an index: by its media type, as
// containerd walks it, or by its content when the type is not one of those.
func kindOf(d descriptor, e *entry) jsonClass {
	switch {
	case isIndexType(d.MediaType):
		return classIndex
	case isManifestType(d.MediaType):
		return classManifest
	case e.class == classIndex || e.class == classManifest:
		return e.class
	}
	return classNone
}

// index checks the platform manifests of the index d (content data) and
// adds them to img.Platforms.
func (s *scanner) index(img *Image, d descriptor, data []byte, depth int, seen map[digest.Digest]bool) {
	var ix manifestJSON
	if err := json.Unmarshal(data, &ix); err != nil {
		img.Problems = append(img.Problems, fmt.Sprintf("index %s: %v", d.Digest, err))
		return
	}
	if ix.MediaType != "" && d.MediaType != "" && ix.MediaType != d.MediaType {
		img.Problems = append(img.Problems, fmt.Sprintf("index %s says it is a %s, its descriptor a %s", d.Digest, ix.MediaType, d.MediaType))
	}
	if len(ix.Manifests) == 0 {
		img.Problems = append(img.Problems, fmt.Sprintf("index %s lists no manifests", d.Digest))
	}
	for _, c := range ix.Manifests {
		// Each manifest once: an index listing one many times (or indexes
		// nested into each other) must not multiply the work.
		if seen[c.Digest] {
			continue
		}
		seen[c.Digest] = true
		if len(seen) > maxPlatforms {
			img.Problems = append(img.Problems, fmt.Sprintf("index %s: more than %d manifests", d.Digest, maxPlatforms))
			return
		}
		p := Platform{
			Manifest:    c.Digest,
			Platform:    c.Platform.String(),
			Attestation: c.Annotations[annotationRefType] == refTypeAttestation,
		}
		what := "platform manifest"
		if p.Platform != "" {
			what = p.Platform + " manifest"
		}
		e, problem, absent := s.metadata(what, c)
		switch {
		case absent:
			img.Platforms = append(img.Platforms, p)
			continue
		case e == nil:
			img.Problems = append(img.Problems, problem)
			img.Platforms = append(img.Platforms, p)
			continue
		}
		p.Present = true
		switch kindOf(c, e) {
		case classIndex:
			if depth+1 >= maxIndexDepth {
				img.Problems = append(img.Problems, fmt.Sprintf("index %s: indexes nested more than %d deep", c.Digest, maxIndexDepth))
				continue
			}
			s.index(img, c, e.data, depth+1, seen)
			continue
		case classManifest:
			m, missing, problems := s.manifest(c, e.data)
			img.Problems = append(img.Problems, problems...)
			if m != nil && m.Config != nil {
				p.Config = m.Config.Digest
			}
			// Absent layers of one platform: that platform is not loaded
			// from this archive (a single-platform save).
			p.Complete = len(missing) == 0 && len(problems) == 0
		default:
			img.Problems = append(img.Problems, fmt.Sprintf("%s %s is not an image manifest", what, c.Digest))
		}
		img.Platforms = append(img.Platforms, p)
	}
}

// manifest checks an image manifest: its config and layers are the
// archive's, of the sizes and digests it says, and the layers' content is
// what the config's diff_ids say. missing lists absent blobs; problems
// everything else.
func (s *scanner) manifest(d descriptor, data []byte) (m *manifestJSON, missing, problems []string) {
	key := descKey{d.Digest, d.MediaType, d.Size}
	if r, ok := s.checked[key]; ok {
		return r.m, r.missing, r.problems
	}
	m, missing, problems = s.checkManifest(d, data)
	s.checked[key] = checkedManifest{m, missing, problems}
	return m, missing, problems
}

func (s *scanner) checkManifest(d descriptor, data []byte) (m *manifestJSON, missing, problems []string) {
	m = &manifestJSON{}
	if err := json.Unmarshal(data, m); err != nil {
		return nil, nil, []string{fmt.Sprintf("manifest %s: %v", d.Digest, err)}
	}
	if m.MediaType != "" && d.MediaType != "" && m.MediaType != d.MediaType {
		problems = append(problems, fmt.Sprintf("manifest %s says it is a %s, its descriptor a %s", d.Digest, m.MediaType, d.MediaType))
	}
	if m.Config == nil {
		return m, nil, append(problems, fmt.Sprintf("manifest %s has no config", d.Digest))
	}
	var diffIDs []digest.Digest
	checkDiffs := false
	ce, problem, absent := s.metadata("config", *m.Config)
	switch {
	case absent:
		missing = append(missing, problem)
	case ce == nil:
		problems = append(problems, problem)
	case ce.class == classConfig:
		var cfg configJSON
		if err := json.Unmarshal(ce.data, &cfg); err != nil {
			problems = append(problems, fmt.Sprintf("config %s: %v", m.Config.Digest, err))
		} else if cfg.RootFS == nil {
			problems = append(problems, fmt.Sprintf("config %s has no rootfs", m.Config.Digest))
		} else {
			diffIDs, checkDiffs = cfg.RootFS.DiffIDs, true
		}
	case m.Config.MediaType == mediaTypeOCIConfig || m.Config.MediaType == mediaTypeDockerConfig:
		problems = append(problems, fmt.Sprintf("config %s is not an image config (it has no rootfs)", m.Config.Digest))
	}
	if checkDiffs && len(diffIDs) != len(m.Layers) {
		problems = append(problems, fmt.Sprintf("manifest %s lists %d layers, its config %s has %d diff_ids", d.Digest, len(m.Layers), m.Config.Digest, len(diffIDs)))
		checkDiffs = false
	}
	for i, l := range m.Layers {
		what := fmt.Sprintf("layer %d of %d", i+1, len(m.Layers))
		le, problem, absent := s.blob(what, l)
		switch {
		case absent:
			missing = append(missing, problem)
			continue
		case le == nil:
			problems = append(problems, problem)
			continue
		}
		if checkDiffs {
			if p := diffProblem(what+" "+string(l.Digest), le, diffIDs[i]); p != "" {
				problems = append(problems, p)
			}
		}
	}
	return m, missing, problems
}

// diffProblem compares a layer's uncompressed content with its diff_id.
func diffProblem(what string, e *entry, want digest.Digest) string {
	switch {
	case e.diffErr != "":
		return fmt.Sprintf("%s cannot be decompressed (%s), so its content cannot be checked against its diff_id %s", what, e.diffErr, want)
	case e.diffID != want:
		return fmt.Sprintf("%s does not match the image config: its content is %s, the config's diff_id is %s (tampered layer)", what, e.diffID, want)
	}
	return ""
}

// legacyImages reports the images of a docker save manifest.json.
func (s *scanner) legacyImages() ([]*Image, error) {
	var mfs []legacyManifest
	if err := s.special("manifest.json", &mfs); err != nil {
		return nil, err
	}
	var out []*Image
	for _, m := range mfs {
		img := &Image{Names: dedupe(slices.Clone(m.RepoTags))}
		img.Problems = s.legacy(img, m)
		out = append(out, img)
	}
	return out, nil
}

// legacy checks one image of manifest.json as Docker's loader reads it.
func (s *scanner) legacy(img *Image, m legacyManifest) (problems []string) {
	ce, err := s.lookup(m.Config)
	if err != nil {
		return []string{fmt.Sprintf("config file %s: %v", m.Config, err)}
	}
	img.ConfigDigest = ce.sha256
	if want := legacyConfigName(m.Config); want != "" {
		got := ce.sha256
		if want.Algorithm() != digest.SHA256 {
			got = ce.digest
		}
		if got != want {
			problems = append(problems, fmt.Sprintf("config file %s does not hash to its name: its content is %s (tampered config)", m.Config, got))
		}
	}
	if ce.class != classConfig {
		why := "it is not an image config"
		if ce.dropped != "" {
			why = ce.dropped
		}
		return append(problems, fmt.Sprintf("config file %s cannot be read: %s", m.Config, why))
	}
	var cfg configJSON
	if err := json.Unmarshal(ce.data, &cfg); err != nil {
		return append(problems, fmt.Sprintf("config file %s: %v", m.Config, err))
	}
	if cfg.RootFS == nil {
		return append(problems, fmt.Sprintf("config file %s has no rootfs", m.Config))
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(m.Layers) {
		return append(problems, fmt.Sprintf("manifest.json lists %d layers for config %s, which has %d diff_ids", len(m.Layers), m.Config, len(diffIDs)))
	}
	for i, l := range m.Layers {
		what := fmt.Sprintf("layer %d of %d (%s)", i+1, len(m.Layers), l)
		le, err := s.lookup(l)
		if errors.Is(err, errNotFound) {
			problems = append(problems, what+" is not in the archive")
			continue
		} else if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", what, err))
			continue
		}
		if p := diffProblem(what, le, diffIDs[i]); p != "" {
			problems = append(problems, p)
		}
	}
	return problems
}

// legacyConfigName is the digest a legacy config path names, if any:
// <hex>.json (docker), sha256:<hex> (go-containerregistry),
// blobs/sha256/<hex> (Docker 25+).
func legacyConfigName(p string) digest.Digest {
	p, _ = cleanName(p)
	if rest, ok := strings.CutPrefix(p, "blobs/"); ok {
		if alg, enc, ok := strings.Cut(rest, "/"); ok {
			if d := digest.NewDigestFromEncoded(digest.Algorithm(alg), enc); d.Validate() == nil {
				return d
			}
		}
		return ""
	}
	base := strings.TrimSuffix(path.Base(p), ".json")
	if d, err := digest.Parse(base); err == nil {
		return d
	}
	if d := digest.NewDigestFromEncoded(digest.SHA256, base); d.Validate() == nil {
		return d
	}
	return ""
}

// merge adds the legacy manifest.json images to the OCI images they are
// (the same config): their names join the OCI image's. A legacy image
// with no OCI counterpart stays an image of its own.
func merge(oci, legacy []*Image) []*Image {
	byConfig := map[digest.Digest]*Image{}
	for _, o := range oci {
		if o.ConfigDigest != "" && byConfig[o.ConfigDigest] == nil {
			byConfig[o.ConfigDigest] = o
		}
		for _, p := range o.Platforms {
			if p.Present && p.Config != "" && byConfig[p.Config] == nil {
				byConfig[p.Config] = o
			}
		}
	}
	out := oci
	for _, l := range legacy {
		into := byConfig[l.ConfigDigest]
		if l.ConfigDigest == "" || into == nil {
			out = append(out, l)
			continue
		}
		into.Names = append(into.Names, l.Names...) // deduplicated by analyze
		into.Problems = append(into.Problems, capProblems(l.Problems, maxImageProblems, "with this image")...)
	}
	return out
}

// capProblems keeps the first max problems and says how many more there are.
func capProblems(ps []string, max int, what string) []string {
	if len(ps) <= max {
		return ps
	}
	return append(ps[:max:max], fmt.Sprintf("and %d more problems %s", len(ps)-max, what))
}

// dedupe removes exact duplicates, keeping the first of each.
func dedupe(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	var out []string
	for _, x := range ss {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
