package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ReadDir reads an OCI image layout directory (as `cosign save --dir` or
// `oras copy --to-oci-layout` write it) as Read reads its tar: the tree
// is streamed as a tar, under the same bounds, so a directory gets the
// same checks as an archive. Symbolic links are read as links (never
// followed out of the tree); other special files are refused.
func ReadDir(dir string, opts Options) (*Archive, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeTree(dir, pw))
	}()
	a, err := Read(pr, opts)
	pr.CloseWithError(errors.New("archive read"))
	return a, err
}

// writeTree writes the files and links under dir to w as a tar, with
// paths relative to dir.
func writeTree(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: 0o755})
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: rel, Linkname: target})
		case !d.Type().IsRegular():
			return fmt.Errorf("%s: not a regular file, directory or link", rel)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: 0o644, Size: info.Size()}); err != nil {
			return err
		}
		_, err = io.Copy(tw, io.LimitReader(f, info.Size()))
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
