package gen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/policy"
)

// SourceDir is where trustd's cache keeps the data of a policy source.
func SourceDir(cacheDir, source string) string {
	return filepath.Join(cacheDir, "sources", source)
}

// CacheTUF serves the repository on loopback and syncs it into the cache
// directory as source `source`, with cache.TUFSource.Sync: what the cache
// holds afterwards is what `trustd sync` would have written.
func CacheTUF(ctx context.Context, cacheDir, source string, r *TUFRepo, now time.Time) (*cache.SyncResult, error) {
	srv := Serve(TUFServer(r.Dir))
	defer srv.Close()
	root, err := os.ReadFile(r.RootPath)
	if err != nil {
		return nil, err
	}
	src := &cache.TUFSource{Name: source, URL: srv.URL + "/metadata/", Root: root, Dir: SourceDir(cacheDir, source), Fetcher: &cache.HTTPFetcher{}}
	return src.Sync(ctx, now)
}

// NotarySource returns the cache's Notary source `source` for the
// generated repositories under NotaryPrefix, pinned to the CA in caPEM
// (trust on first use when caPEM is nil), fetching from url.
func NotarySource(cacheDir, source, url string, caPEM []byte) (*cache.NotarySource, error) {
	pat, err := policy.ParsePattern(NotaryPrefix + "**")
	if err != nil {
		return nil, err
	}
	ns := &cache.NotarySource{
		SourceName: source, URL: url, Dir: SourceDir(cacheDir, source),
		Fetcher: &cache.HTTPFetcher{}, Repositories: []policy.Pattern{pat},
	}
	if caPEM != nil {
		ns.Pins = []cache.NotaryPin{{Repositories: []policy.Pattern{pat}, CA: caPEM}}
	} else {
		ns.TOFU = true
	}
	return ns, nil
}

// CacheNotary serves the repositories on loopback and syncs each into the
// cache directory as source `source` with cache.NotarySource.SyncRepo,
// a few at a time.
func CacheNotary(ctx context.Context, cacheDir, source string, caPEM []byte, repos []*NotaryRepo, now time.Time) error {
	srv := Serve(NewNotaryServer(repos...))
	defer srv.Close()
	ns, err := NotarySource(cacheDir, source, srv.URL, caPEM)
	if err != nil {
		return err
	}
	sem := make(chan struct{}, 8)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, r := range repos {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := ns.SyncRepo(ctx, r.GUN, now); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", r.GUN, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// CopyDir copies a directory tree of regular files (a cache) to dst.
func CopyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o700)
		}
		if !d.Type().IsRegular() || d.Name() == "lock" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o600)
	})
}
