package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/verify"
)

// MaxManifestSize bounds a manifest or index read from any source.
const MaxManifestSize = 4 << 20

// BlobReader reads content-addressed bytes by digest. Implementations need
// not verify the digest: the Resolver does.
type BlobReader interface {
	ReadBlob(ctx context.Context, d digest.Digest) ([]byte, error)
}

// Resolver finds what a signed manifest or index digest covers: itself,
// its platform manifests and their config digests. Results are memoised
// (content-addressed data never changes); it is safe for concurrent use.
type Resolver struct {
	// Readers are consulted in order (containerd's content store, then the
	// manifest cache).
	Readers []BlobReader
	// Cache, if set, receives every signed manifest or index that was read
	// from another reader.
	Cache *cache.ManifestCache

	mu   sync.Mutex
	memo map[digest.Digest][]digest.Digest
	// misses are the digests no reader had (or whose content did not
	// parse) when a decision asked, and when: asked again within missTTL
	// they are not read again. They are forgotten whenever content may
	// have arrived (ContentAdded: an image event, a sync, a fetch at a
	// pull) and after missTTL, so that a digest pulled since is read.
	misses map[digest.Digest]time.Time
	clock  func() time.Time // time.Now if nil (tests)
}

func (r *Resolver) now() time.Time {
	if r.clock != nil {
		return r.clock()
	}
	return time.Now()
}

const (
	maxMemo   = 1 << 16
	maxMisses = 1 << 16
	missTTL   = 5 * time.Second
)

// ContentAdded forgets every miss: content may have arrived (an image in
// containerd's store, a signed manifest in the manifest cache).
func (r *Resolver) ContentAdded() {
	r.mu.Lock()
	clear(r.misses)
	r.mu.Unlock()
}

// lookupTimeout bounds the content reads of one lookup made for a decision
// (Covered): NRI's own time limit is 2 s and fails closed.
const lookupTimeout = 2 * time.Second

var _ verify.ContentLookup = (*Resolver)(nil)

// Covered implements verify.ContentLookup for decisions: Covers, with its
// content reads (on a memo miss only) bounded by lookupTimeout.
func (r *Resolver) Covered(d digest.Digest) ([]digest.Digest, bool) {
	r.mu.Lock()
	c, ok := r.memo[d]
	missed, recent := r.misses[d]
	r.mu.Unlock()
	if ok {
		return c, true
	}
	if recent && r.now().Sub(missed) < missTTL {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	c, ok = r.Covers(ctx, d)
	if !ok && ctx.Err() == nil { // a time-out is not remembered
		r.mu.Lock()
		if r.misses == nil || len(r.misses) >= maxMisses {
			r.misses = map[digest.Digest]time.Time{}
		}
		r.misses[d] = r.now()
		r.mu.Unlock()
	}
	return c, ok
}

// Covers returns the digests covered by d, or ok=false when d's content is
// not available from any reader.
func (r *Resolver) Covers(ctx context.Context, d digest.Digest) ([]digest.Digest, bool) {
	r.mu.Lock()
	c, ok := r.memo[d]
	r.mu.Unlock()
	if ok {
		return c, true
	}
	data, err := r.read(ctx, d)
	if err != nil {
		return nil, false
	}
	covers := []digest.Digest{d}
	kids, cfg, err := parseManifest(data)
	if err != nil {
		return nil, false
	}
	if cfg != "" {
		covers = append(covers, cfg)
	}
	complete := true
	for _, k := range kids {
		covers = append(covers, k)
		kd, err := r.read(ctx, k)
		if err != nil {
			complete = false // a platform not pulled here: fine, but don't memoise
			continue
		}
		if _, kcfg, err := parseManifest(kd); err == nil && kcfg != "" {
			covers = append(covers, kcfg)
		}
	}
	if complete {
		r.mu.Lock()
		if r.memo == nil || len(r.memo) >= maxMemo {
			r.memo = map[digest.Digest][]digest.Digest{}
		}
		r.memo[d] = covers
		r.mu.Unlock()
	}
	return covers, true
}

// read returns the verified bytes of d from the first reader that has them,
// and keeps a copy in the manifest cache when another reader served them.
func (r *Resolver) read(ctx context.Context, d digest.Digest) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	for _, rd := range r.Readers {
		b, err := rd.ReadBlob(ctx, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(b) > MaxManifestSize || d.Algorithm().FromBytes(b) != d {
			errs = append(errs, fmt.Errorf("content of %s does not match its digest", d))
			continue
		}
		if r.Cache != nil {
			if _, isCache := rd.(*cache.ManifestCache); !isCache {
				_ = r.Cache.Put(d, b)
			}
		}
		return b, nil
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%s: no content source", d)
	}
	return nil, errors.Join(errs...)
}

// parseManifest returns an index's manifest digests or a manifest's config
// digest.
func parseManifest(b []byte) (kids []digest.Digest, config digest.Digest, err error) {
	var m struct {
		Manifests []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"manifests"`
		Config *struct {
			Digest digest.Digest `json:"digest"`
		} `json:"config"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, "", fmt.Errorf("not a manifest: %w", err)
	}
	for _, k := range m.Manifests {
		if k.Digest.Validate() == nil {
			kids = append(kids, k.Digest)
		}
	}
	if m.Config != nil && m.Config.Digest.Validate() == nil {
		config = m.Config.Digest
	}
	if len(kids) == 0 && config == "" {
		return nil, "", errors.New("neither a manifest nor an index")
	}
	return kids, config, nil
}
