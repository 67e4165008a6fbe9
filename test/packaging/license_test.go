package packaging

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// apache2SHA256 is the SHA-256 of the Apache License 2.0 as published at
// https://www.apache.org/licenses/LICENSE-2.0.txt, without that file's leading
// blank line (the form containerd and NRI ship as LICENSE).
const apache2SHA256 = "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4"

// TestLicense checks that the project states its license, Apache-2.0, the
// same way everywhere: LICENSE holds the verbatim license text, the .deb's
// copyright file (Debian's machine-readable format) names it for every file
// and points to Debian's copy, and the README says so. It needs no tools.
func TestLicense(t *testing.T) {
	root := repoRoot(t)

	t.Run("LICENSE", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(root, "LICENSE"))
		if err != nil {
			t.Fatalf("the repository has no LICENSE: %v", err)
		}
		text := strings.TrimPrefix(string(b), "\n")
		if sum := sha256.Sum256([]byte(text)); hex.EncodeToString(sum[:]) != apache2SHA256 {
			t.Errorf("LICENSE is not the verbatim Apache License 2.0 text (sha256 %x, want %s)", sum, apache2SHA256)
		}
		// Debian's copy, which the copyright file points to, is the same text.
		if deb, err := os.ReadFile("/usr/share/common-licenses/Apache-2.0"); err == nil && strings.TrimPrefix(string(deb), "\n") != text {
			t.Error("LICENSE differs from /usr/share/common-licenses/Apache-2.0")
		}
	})

	t.Run("copyright", func(t *testing.T) {
		path := filepath.Join(root, "packaging", "deb", "copyright")
		paras := strings.Split(strings.TrimSpace(readFile(t, path)), "\n\n")
		if !strings.HasPrefix(paras[0], "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n") {
			t.Errorf("%s: the first paragraph does not start with the Format field of the machine-readable format", path)
		}
		files, standalone := 0, false
		for _, p := range paras[1:] {
			license, ok := field(p, "License")
			if !ok {
				t.Errorf("%s: paragraph without a License field:\n%s", path, p)
				continue
			}
			if license != "Apache-2.0" {
				t.Errorf("%s: License %q, want Apache-2.0", path, license)
			}
			if _, ok := field(p, "Files"); ok {
				files++
				continue
			}
			standalone = standalone || strings.Contains(p, `"/usr/share/common-licenses/Apache-2.0"`)
		}
		if files == 0 {
			t.Errorf("%s: no Files paragraph", path)
		}
		if !standalone {
			t.Errorf("%s: no License paragraph pointing to /usr/share/common-licenses/Apache-2.0", path)
		}
	})

	t.Run("README", func(t *testing.T) {
		readme := readFile(t, filepath.Join(root, "README.md"))
		if i := strings.Index(readme, "\n## License\n"); i < 0 || !strings.Contains(readme[i:], "Apache License, Version 2.0") {
			t.Error("README.md has no License section naming the Apache License, Version 2.0")
		}
	})
}

// field returns the first line of a field of a deb822 paragraph.
func field(para, name string) (string, bool) {
	for _, line := range strings.Split(para, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
