package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	gzip "github.com/klauspost/compress/gzip"
	"hash"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
)

type entryKind uint8

const (
	kindFile entryKind = iota
	kindSymlink
	kindHardlink
)

// jsonClass is what a kept JSON entry was recognised as.
type jsonClass uint8

const (
	classNone      jsonClass = iota
	classSpecial             // manifest.json, index.json, oci-layout, repositories
	classManifest            // an image manifest (has config or layers)
	classIndex               // an image index (has manifests)
	classConfig              // an image config (has rootfs)
	classSignature           // a cosign simple-signing payload or a Sigstore bundle
)

// specialFiles are the archive's own metadata files, at its root.
var specialFiles = map[string]bool{
	"manifest.json": true,
	"index.json":    true,
	"oci-layout":    true,
	"repositories":  true,
}

// entry is what is remembered of one file or link of the tar.
type entry struct {
	name string
	kind entryKind
	// target is the path a link points to (cleaned, relative to the
	// archive's root); linkErr says why it points nowhere usable.
	target  string
	linkErr string

	size   int64
	sha256 digest.Digest // of the bytes as stored
	// digest is the digest in the algorithm of the entry's name when it
	// is blobs/<alg>/<hex> (want is that name's digest); else sha256.
	digest digest.Digest
	want   digest.Digest
	// diffID is the sha256 of the uncompressed content (sha256 itself
	// when the entry is not compressed); "" when it could not be computed,
	// and diffErr says why.
	diffID      digest.Digest
	compression string
	diffErr     string

	data    []byte // kept JSON
	class   jsonClass
	dropped string // why a JSON-looking entry was not kept
	// conflict: the path appears more than once with different content.
	conflict bool
}

// scanner holds the state of one Read.
type scanner struct {
	opts     Options
	entries  map[string]*entry
	kept     int64 // bytes of kept JSON
	size     int64
	problems []string // archive-wide
	seenProb map[string]bool
	// Memos of the analysis, so that shared content is checked once.
	described map[descKey]described
	checked   map[descKey]checkedManifest

	buf  []byte
	head [512]byte
	br   *bufio.Reader // the decompressors' input
	gz   *gzip.Reader
	zd   *zstd.Decoder
}

func newScanner(o Options) *scanner {
	return &scanner{
		opts:      o,
		entries:   map[string]*entry{},
		seenProb:  map[string]bool{},
		described: map[descKey]described{},
		checked:   map[descKey]checkedManifest{},
		buf:       make([]byte, 256<<10),
	}
}

// problem records an archive-wide problem once.
func (s *scanner) problem(format string, args ...any) {
	p := fmt.Sprintf(format, args...)
	if !s.seenProb[p] {
		s.seenProb[p] = true
		s.problems = append(s.problems, p)
	}
}

// countReader counts the bytes read, reports progress and keeps the
// underlying reader's error (to tell it from a malformed tar).
type countReader struct {
	r        io.Reader
	n, next  int64
	progress func(int64)
	err      error
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.progress != nil && c.n >= c.next {
		c.progress(c.n)
		c.next = c.n + 1<<20
	}
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// scan reads the whole tar once, recording and hashing every entry.
func (s *scanner) scan(r io.Reader) (err error) {
	cr := &countReader{r: r, progress: s.opts.Progress}
	defer func() {
		if s.zd != nil {
			s.zd.Close()
		}
		s.size = cr.n
		if cr.progress != nil {
			cr.progress(cr.n)
		}
		if cr.err != nil {
			err = fmt.Errorf("reading the archive: %w", cr.err)
		}
	}()
	in := bufio.NewReaderSize(cr, 256<<10)
	// A compressed archive (docker save | gzip) is read through its
	// decompressor, as docker load does.
	var src io.Reader = in
	magic, _ := in.Peek(6)
	switch compressionOf(magic) {
	case "gzip":
		gz, err := gzip.NewReader(in)
		if err != nil {
			return fmt.Errorf("%w: gzip: %v", ErrFormat, err)
		}
		src = gz
	case "zstd":
		zd, err := newZstd() // its own: s.zd decompresses layers
		if err != nil {
			return err
		}
		defer zd.Close()
		if err := zd.Reset(in); err != nil {
			return fmt.Errorf("%w: zstd: %v", ErrFormat, err)
		}
		src = zd
	case "bzip2", "xz":
		return fmt.Errorf("%w: the archive is %s-compressed; decompress it first", ErrFormat, compressionOf(magic))
	}
	tr := tar.NewReader(src)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrFormat, err)
		}
		if err := s.entry(tr, hdr); err != nil {
			return err
		}
	}
}

// cleanName turns a tar path into a path relative to the archive's root,
// as an extraction would; ok is false for a path outside it.
func cleanName(name string) (string, bool) {
	name = path.Clean("/" + name)[1:]
	if name == "" {
		return "", false
	}
	return name, true
}

// escapes reports whether a tar path leaves the archive's root (../x).
func escapes(name string) bool {
	p := path.Clean(strings.TrimLeft(name, "/"))
	return p == ".." || strings.HasPrefix(p, "../")
}

func (s *scanner) entry(tr *tar.Reader, hdr *tar.Header) error {
	if escapes(hdr.Name) {
		s.problem("entry %q leaves the archive's root", hdr.Name)
		return nil
	}
	name, ok := cleanName(hdr.Name)
	if !ok {
		return nil
	}
	var e *entry
	switch hdr.Typeflag {
	case tar.TypeReg:
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				s.problem("entry %q is a sparse file, which image archives never hold", name)
				return nil
			}
		}
		if len(name) > maxNameLen {
			return nil
		}
		e = &entry{name: name, kind: kindFile, size: hdr.Size}
		if err := s.hashFile(tr, e); err != nil {
			return err
		}
	case tar.TypeSymlink, tar.TypeLink:
		if len(name) > maxNameLen {
			return nil
		}
		e = &entry{name: name, kind: kindSymlink}
		target := hdr.Linkname
		if hdr.Typeflag == tar.TypeLink {
			e.kind = kindHardlink
		} else if !path.IsAbs(target) {
			target = path.Join(path.Dir(name), target)
		} else {
			// Extraction resolves it from the archive's root, containerd's
			// import from the link's directory: ambiguous, so unusable.
			e.linkErr = fmt.Sprintf("symbolic link %s has an absolute target %q", name, hdr.Linkname)
		}
		if e.linkErr == "" {
			if escapes(target) {
				e.linkErr = fmt.Sprintf("link %s points outside the archive (%q)", name, hdr.Linkname)
			} else if e.target, ok = cleanName(target); !ok {
				e.linkErr = fmt.Sprintf("link %s points to the archive's root", name)
			}
		}
	case tar.TypeGNUSparse:
		s.problem("entry %q is a sparse file, which image archives never hold", name)
		return nil
	default:
		return nil // directories, devices, fifos: nothing an image loader reads
	}
	return s.add(e)
}

// add records e; a path seen before is replaced (an extraction keeps the
// last copy) and marked as a conflict when its content differs.
func (s *scanner) add(e *entry) error {
	if old, ok := s.entries[e.name]; ok {
		if old.conflict || old.kind != e.kind || old.target != e.target || old.sha256 != e.sha256 || old.size != e.size {
			e.conflict = true
		}
		if old.data != nil {
			s.kept -= int64(len(old.data))
		}
		if e.conflict && specialFiles[e.name] {
			s.problem("the archive holds %s more than once, with different content", e.name)
		}
	} else if len(s.entries) >= s.opts.MaxEntries {
		return fmt.Errorf("%w: more than %d files", ErrLimit, s.opts.MaxEntries)
	}
	s.entries[e.name] = e
	return nil
}

// blobName returns the digest a path of the form blobs/<alg>/<encoded>
// names; ok is false for other paths. A path under blobs/ that names no
// valid digest is an archive-wide problem.
func (s *scanner) blobName(name string) (digest.Digest, bool) {
	rest, ok := strings.CutPrefix(name, "blobs/")
	if !ok {
		return "", false
	}
	alg, enc, ok := strings.Cut(rest, "/")
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), enc)
	if !ok || strings.Contains(enc, "/") || d.Validate() != nil {
		s.problem("entry %s is under blobs/ but is not named by a valid digest", name)
		return "", false
	}
	return d, true
}

// compressionOf names the compression of a stream by its magic bytes.
func compressionOf(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return "gzip"
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd"
	case bytes.HasPrefix(head, []byte("BZh")):
		return "bzip2"
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return "xz"
	}
	return ""
}

// looksJSON reports whether head starts (after white space) like a JSON
// object or array.
func looksJSON(head []byte) bool {
	t := bytes.TrimLeft(head, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// entryReader yields an entry's bytes (head first, then the rest from
// the tar) and passes everything it yields to write; it keeps the tar's
// error apart from a decompressor's.
type entryReader struct {
	head  []byte
	r     io.Reader
	write func([]byte)
	err   error
}

func (e *entryReader) Read(p []byte) (int, error) {
	if len(e.head) > 0 {
		n := copy(p, e.head)
		e.head = e.head[n:]
		e.write(p[:n])
		return n, nil
	}
	n, err := e.r.Read(p)
	e.write(p[:n])
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// hashFile streams one regular file: hashes it as stored (and with its
// blob name's algorithm), decompresses and hashes it when compressed, and
// keeps it when it is small JSON.
func (s *scanner) hashFile(tr io.Reader, e *entry) error {
	e.want, _ = s.blobName(e.name)
	head := s.head[:min(e.size, int64(len(s.head)))]
	if _, err := io.ReadFull(tr, head); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrFormat, e.name, err)
	}
	e.compression = compressionOf(head)

	if e.compression == "" && looksJSON(head) {
		switch {
		case e.size > s.opts.MaxMetadataEntry:
			e.dropped = fmt.Sprintf("it is larger than %d bytes", s.opts.MaxMetadataEntry)
		case s.kept+e.size > s.opts.MaxMetadata:
			e.dropped = fmt.Sprintf("the archive's metadata exceeds %d bytes", s.opts.MaxMetadata)
		default:
			s.kept += e.size
			e.data = make([]byte, 0, e.size)
		}
	}

	h := sha256.New()
	var ha hash.Hash
	if e.want != "" && e.want.Algorithm() != digest.SHA256 {
		ha = e.want.Algorithm().Hash()
	}
	write := func(p []byte) {
		h.Write(p)
		if ha != nil {
			ha.Write(p)
		}
		if e.data != nil {
			e.data = append(e.data, p...)
		}
	}

	if e.compression == "" {
		write(head)
		for {
			n, err := tr.Read(s.buf)
			write(s.buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrFormat, e.name, err)
			}
		}
	} else {
		src := &entryReader{head: head, r: tr, write: write}
		if err := s.decompress(e, src); src.err != nil {
			return fmt.Errorf("%w: %s: %v", ErrFormat, e.name, src.err)
		} else if err != nil {
			e.diffErr = fmt.Sprintf("%s: %v", e.compression, err)
		}
		// Whatever follows the compressed stream is part of the entry.
		for {
			_, err := src.Read(s.buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrFormat, e.name, err)
			}
		}
	}

	e.sha256 = digest.NewDigest(digest.SHA256, h)
	e.digest = e.sha256
	if ha != nil {
		e.digest = digest.NewDigest(e.want.Algorithm(), ha)
	}
	if e.compression == "" {
		e.diffID = e.sha256
	}
	if e.data != nil {
		e.class = classify(e.name, e.data)
		if e.class == classNone {
			s.kept -= e.size
			e.data = nil
		}
	}
	return nil
}

// decompress hashes the uncompressed content of e into e.diffID.
func (s *scanner) decompress(e *entry, src io.Reader) error {
	if s.br == nil {
		s.br = bufio.NewReaderSize(src, 64<<10)
	} else {
		s.br.Reset(src)
	}
	var dec io.Reader
	switch e.compression {
	case "gzip":
		if s.gz == nil {
			gz, err := gzip.NewReader(s.br)
			if err != nil {
				return err
			}
			s.gz = gz
		} else if err := s.gz.Reset(s.br); err != nil {
			return err
		}
		dec = s.gz
	case "zstd":
		zd, err := s.zstd()
		if err != nil {
			return err
		}
		if err := zd.Reset(s.br); err != nil {
			return err
		}
		dec = zd
	case "bzip2":
		dec = bzip2.NewReader(s.br)
	default:
		return fmt.Errorf("trustd cannot decompress %s layers", e.compression)
	}
	if s.opts.maxUncompressed > 0 {
		dec = io.LimitReader(dec, s.opts.maxUncompressed)
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, onlyReader{dec}, s.buf); err != nil {
		return err
	}
	e.diffID = digest.NewDigest(digest.SHA256, h)
	return nil
}

// onlyReader hides a reader's WriterTo, so that io.CopyBuffer uses the
// scanner's buffer.
type onlyReader struct{ io.Reader }

func (s *scanner) zstd() (*zstd.Decoder, error) {
	if s.zd != nil {
		return s.zd, nil
	}
	zd, err := newZstd()
	if err != nil {
		return nil, err
	}
	s.zd = zd
	return zd, nil
}

// newZstd is a zstd decoder of bounded memory that starts no goroutines.
func newZstd() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(DefaultMaxZstdWindow))
}

// classify says what a JSON entry is, or classNone when it is nothing
// worth keeping.
func classify(name string, data []byte) jsonClass {
	if specialFiles[name] {
		return classSpecial
	}
	var p struct {
		Config    json.RawMessage `json:"config"`
		Layers    json.RawMessage `json:"layers"`
		Manifests json.RawMessage `json:"manifests"`
		RootFS    json.RawMessage `json:"rootfs"`
		// A cosign simple-signing payload, a Sigstore bundle.
		Critical  json.RawMessage `json:"critical"`
		MediaType string          `json:"mediaType"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return classNone
	}
	set := func(r json.RawMessage) bool { return len(r) > 0 && string(r) != "null" }
	switch {
	case set(p.RootFS):
		return classConfig
	case set(p.Manifests):
		return classIndex
	case set(p.Config) || set(p.Layers):
		return classManifest
	case set(p.Critical) || strings.HasPrefix(p.MediaType, sigstoreBundlePrefix):
		return classSignature
	}
	return classNone
}

// errNotFound marks a path the archive does not hold.
var errNotFound = errors.New("not in the archive")

// lookup finds the file a path names, following links (as an extraction
// would), and fails when it is absent or ambiguous.
func (s *scanner) lookup(name string) (*entry, error) {
	if escapes(name) {
		return nil, fmt.Errorf("path %q leaves the archive's root", name)
	}
	p, ok := cleanName(name)
	if !ok {
		return nil, fmt.Errorf("path %q names no file", name)
	}
	for hops := 0; ; hops++ {
		e := s.entries[p]
		switch {
		case e == nil:
			if hops > 0 {
				return nil, fmt.Errorf("it links to %s, which is not in the archive", p)
			}
			return nil, errNotFound
		case e.conflict:
			return nil, fmt.Errorf("the archive holds %s more than once, with different content", p)
		case e.kind == kindFile:
			return e, nil
		case e.linkErr != "":
			return nil, errors.New(e.linkErr)
		case hops >= 16:
			return nil, fmt.Errorf("too many links from %s", name)
		}
		p = e.target
	}
}
