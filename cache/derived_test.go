package cache

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/trustd/trustd/test/harness"
)

// The derived index spares a restart the full verification, and is never
// trusted when it does not match the bundle's bytes and the pinned root.
func TestDerivedIndex(t *testing.T) {
	repo, src, _ := newTUF(t)
	repo.SetTarget("127.0.0.1:5000/demo/hello:1.0", manifest("a"))
	if err := repo.Publish(); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Sync(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(src.derivedPath()); err != nil {
		t.Fatalf("no derived index after a sync: %v", err)
	}
	ix, err := src.Load()
	if err != nil || ix.Repo("127.0.0.1:5000/demo/hello") == nil {
		t.Fatalf("load from the derived index: %v", err)
	}

	// A derived index that does not decode is ignored, and rewritten.
	os.WriteFile(src.derivedPath(), []byte("garbage"), 0o600)
	if ix, err := src.Load(); err != nil || ix.Repo("127.0.0.1:5000/demo/hello") == nil {
		t.Fatalf("load with a broken derived index: %v", err)
	}
	if _, err := readDerived(src.derivedPath(), "x"); err == nil {
		t.Fatal("a stale key was accepted")
	}

	// A derived index forged to claim another tag does not match the
	// bundle once the pinned root differs: the bundle is verified in full
	// against the new root and refused.
	other := harness.NewTUFRepo(t)
	otherRoot, _ := os.ReadFile(other.RootPath())
	src.Root = otherRoot
	if _, err := src.Load(); err == nil {
		t.Fatal("cached data accepted under another pinned root")
	}
}
