package cache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// mountTmpfs mounts a small tmpfs at dir (root only; CI runs as root).
func mountTmpfs(t *testing.T, dir string, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (mount)")
		}
		t.Skip("needs root to mount a tmpfs")
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// TestSyncOnFullOrReadOnlyDisk: when the cache cannot be written — the
// disk is full, or the file system read-only — the sync fails with the
// error, and the last good data stays and loads.
func TestSyncOnFullOrReadOnlyDisk(t *testing.T) {
	for _, tc := range []struct {
		name      string
		breakDisk func(t *testing.T, dir string)
		want      string
	}{
		{"disk full", func(t *testing.T, dir string) {}, "no space left"},
		{"read-only file system", func(t *testing.T, dir string) {
			if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
				t.Fatalf("remount read-only: %v", err)
			}
		}, "read-only file system"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo, src, _ := newTUF(t)
			mnt := t.TempDir()
			mountTmpfs(t, mnt, "256k")
			src.Dir = filepath.Join(mnt, "corp")
			repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("a"))
			if err := repo.Publish(); err != nil {
				t.Fatal(err)
			}
			if _, err := src.Sync(context.Background(), time.Now()); err != nil {
				t.Fatal(err)
			}
			// Much more data than the file system holds.
			for i := range 3000 {
				repo.SetTargetDigest(fmt.Sprintf("127.0.0.1:5000/demo/app%d:1", i), digest.FromString(fmt.Sprint(i)), 100)
			}
			if err := repo.Publish(); err != nil {
				t.Fatal(err)
			}
			tc.breakDisk(t, mnt)
			_, err := src.Sync(context.Background(), time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("sync: %v, want %q", err, tc.want)
			}
			ix, err := src.Load()
			if err != nil || ix.Repo("127.0.0.1:5000/demo/hello") == nil || ix.Repo("127.0.0.1:5000/demo/app1") != nil {
				t.Fatalf("the last good data is not what loads: %v", err)
			}
		})
	}
}
