// Package testimage is the one builder of image archives for trustd's tests,
// benchmarks and data sets: tar files entry by entry (hostile entries
// included), OCI image layouts and `docker save` tars of go-containerregistry
// images, and Docker's legacy save format of generated layers.
//
// It is test support: it returns errors rather than failing a test, so that
// internal/gen (benchmarks, data sets), test/harness (e2e) and package tests
// all use it.
package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Epoch is the modification time of every entry the builders write, so that
// the same input gives the same bytes.
var Epoch = time.Unix(0, 0).UTC()

// Entry is one entry of a tar: a regular file (the default), a directory,
// or a symbolic or hard link.
type Entry struct {
	Name string
	Data []byte
	// Mode is the permission bits (default 0644, 0755 for a directory).
	Mode int64
	// Dir makes a directory entry.
	Dir bool
	// Link makes a symbolic link to Link, or a hard link when Hard is set.
	Link string
	Hard bool
}

func (e Entry) header() *tar.Header {
	h := &tar.Header{Name: e.Name, Mode: e.Mode, ModTime: Epoch, Typeflag: tar.TypeReg, Size: int64(len(e.Data))}
	switch {
	case e.Dir:
		h.Typeflag, h.Size = tar.TypeDir, 0
		if h.Mode == 0 {
			h.Mode = 0o755
		}
	case e.Link != "" && e.Hard:
		h.Typeflag, h.Linkname, h.Size = tar.TypeLink, e.Link, 0
	case e.Link != "":
		h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.Link, 0
	}
	if h.Mode == 0 {
		h.Mode = 0o644
	}
	return h
}

// Writer writes a tar entry by entry, holding nothing but the entry it
// writes, and counts the bytes written.
type Writer struct {
	tw *tar.Writer
	cw *countWriter
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// NewWriter starts a tar on w.
func NewWriter(w io.Writer) *Writer {
	cw := &countWriter{w: w}
	return &Writer{tw: tar.NewWriter(cw), cw: cw}
}

// Add writes e.
func (w *Writer) Add(e Entry) error {
	h := e.header()
	if err := w.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("tar entry %s: %w", e.Name, err)
	}
	if h.Typeflag == tar.TypeReg {
		if _, err := w.tw.Write(e.Data); err != nil {
			return fmt.Errorf("tar entry %s: %w", e.Name, err)
		}
	}
	return nil
}

// Close ends the tar (it does not close the underlying writer).
func (w *Writer) Close() error { return w.tw.Close() }

// Size is the number of bytes written so far (after Close, the tar's size).
func (w *Writer) Size() int64 { return w.cw.n }

// Tar is the tar of entries, in order.
func Tar(entries ...Entry) ([]byte, error) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, e := range entries {
		if err := w.Add(e); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// TarDir writes the tree under dir (directories and regular files, with
// their modes and modification times) as a tar to w, with paths relative
// to dir.
func TarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	return tw.Close()
}

// Rewrite copies the tar in to a new tar, passing each regular file's
// content through fn (which may change it).
func Rewrite(in []byte, fn func(name string, data []byte) []byte) ([]byte, error) {
	tr := tar.NewReader(bytes.NewReader(in))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		data = fn(h.Name, data)
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Layout is one entry of an OCI image layout's index.json: an image or an
// index, with its annotations.
type Layout struct {
	Image       v1.Image
	Index       v1.ImageIndex
	Annotations map[string]string
}

// Named is the Layout entry of img under a full tag reference, with the
// annotations containerd's import reads (io.containerd.image.name: the
// full reference; org.opencontainers.image.ref.name: the tag).
func Named(ref string, img v1.Image) (Layout, error) {
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		return Layout{}, err
	}
	return Layout{Image: img, Annotations: map[string]string{
		"io.containerd.image.name":          tag.Name(),
		"org.opencontainers.image.ref.name": tag.TagStr(),
	}}, nil
}

// OCILayout writes entries as an OCI image layout tar to w, as
// go-containerregistry's layout package writes the layout (the manifests
// keep their bytes, so their digests). drop are blobs left out of the tar,
// as a single-platform save leaves out the other platforms' manifests.
func OCILayout(w io.Writer, entries []Layout, drop ...v1.Hash) error {
	dir, err := os.MkdirTemp("", "trustd-oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout: %w", err)
	}
	for _, e := range entries {
		opt := layout.WithAnnotations(e.Annotations)
		if e.Index != nil {
			err = p.AppendIndex(e.Index, opt)
		} else {
			err = p.AppendImage(e.Image, opt)
		}
		if err != nil {
			return fmt.Errorf("OCI layout: %w", err)
		}
	}
	for _, h := range drop {
		if err := os.Remove(filepath.Join(dir, "blobs", h.Algorithm, h.Hex)); err != nil {
			return fmt.Errorf("OCI layout: drop %s: %w", h, err)
		}
	}
	return TarDir(w, dir)
}

// DockerSave writes images, by tag reference, as go-containerregistry's
// tarball package writes a `docker save` tar (legacy manifest.json with
// RepoTags, gzip layers, config named sha256:<hex>). Importing it gives a
// new manifest (and manifest digest) but keeps each image's config digest.
func DockerSave(w io.Writer, images map[string]v1.Image) error {
	refs := make(map[name.Reference]v1.Image, len(images))
	for ref, img := range images {
		tag, err := name.NewTag(ref, name.Insecure)
		if err != nil {
			return fmt.Errorf("docker save tar: %w", err)
		}
		refs[tag] = img
	}
	return tarball.MultiRefWrite(refs, w)
}

// FillText fills b with compressible text, like a file system's (about 2:1
// by gzip): each byte one of 16 symbols, four bits of next() a byte.
func FillText(b []byte, next func() uint64) {
	for j := 0; j < len(b); j += 16 {
		r := next()
		for k := j; k < min(j+16, len(b)); k++ {
			b[k] = "abcdefghijklmn \n"[r&15]
			r >>= 4
		}
	}
}
