package local

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/trustd/trustd/plugin/engine"

	"github.com/pelletier/go-toml/v2"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// Local is trustd without a daemon: the policy and the cache loaded into
// this process, for the command line and for the verifier when no daemon
// answers. It never touches the network unless Sync is called.
type Local struct {
	Policy *policy.Policy
	Store  *cache.Store
	Engine *engine.Engine
	// LoadErrors lists sources whose cached data could not be used.
	LoadErrors []error
}

// LoadPolicy loads and validates the policy file; its errors wrap ErrConfig.
func LoadPolicy(path string) (*policy.Policy, error) {
	p, err := policy.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", engine.ErrConfig, err)
	}
	return p, nil
}

// OpenStore loads the policy and opens its cache (no network I/O, nothing
// verified yet): what the cache and publishing commands start from.
func OpenStore(configPath string) (*policy.Policy, *cache.Store, error) {
	p, err := LoadPolicy(configPath)
	if err != nil {
		return nil, nil, err
	}
	store, err := cache.Open(p, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", engine.ErrConfig, err)
	}
	return p, store, nil
}

// OpenLocal loads the policy and verifies the cache offline.
func OpenLocal(configPath string, log *slog.Logger) (*Local, error) {
	p, err := LoadPolicy(configPath)
	if err != nil {
		return nil, err
	}
	return OpenLocalPolicy(p, log)
}

// OpenLocalPolicy is OpenLocal for an already loaded policy.
func OpenLocalPolicy(p *policy.Policy, log *slog.Logger) (*Local, error) {
	store, err := cache.Open(p, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", engine.ErrConfig, err)
	}
	ix, errs := store.LoadIndex()
	mc := store.Manifests
	e := &engine.Engine{Log: log, Resolver: &engine.Resolver{Readers: []engine.BlobReader{mc}}, Now: store.Clock.Now}
	e.Swap(&engine.Snapshot{Policy: p, Index: ix})
	return &Local{Policy: p, Store: store, Engine: e, LoadErrors: errs}, nil
}

// Decide decides from the local snapshot.
func (l *Local) Decide(ctx context.Context, f verify.Facts) (verify.Decision, error) {
	return l.Engine.Decide(ctx, f, engine.Context{Via: engine.ViaLocal}), nil
}

// Sync refreshes every source from the network now.
func (l *Local) Sync(ctx context.Context) []cache.SyncResult {
	return SyncStore(ctx, l.Store, l.Engine.SwapIndex)
}

// SyncStore syncs every source of store in turn and installs each result
// with swap: a source's new index after a (partly) successful sync, or its
// old one marked unreachable when the source could not be reached.
func SyncStore(ctx context.Context, store *cache.Store, swap func(func(*verify.Index) *verify.Index)) []cache.SyncResult {
	var out []cache.SyncResult
	for _, src := range store.Sources() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		if err := store.Clock.Observe(); err != nil {
			out = append(out, cache.SyncResult{Source: src.Name(), Error: "cache clock: " + err.Error()})
			cancel()
			continue
		}
		res, st, err := store.SyncSource(sctx, src, store.Clock.Now())
		cancel()
		r := cache.SyncResult{Source: src.Name(), OK: err == nil}
		if res != nil {
			r = *res
			r.Source, r.OK = src.Name(), err == nil
		}
		if err != nil {
			r.Error = err.Error()
		}
		switch {
		case res != nil && res.Index != nil:
			// Even a partly failed sync (some Notary repositories) installs
			// what did verify; failed repositories keep their cached data.
			si := res.Index
			if st != nil && st.Unreachable {
				si = si.WithReachability(true, st.UnreachableSince)
			}
			swap(func(ix *verify.Index) *verify.Index { return ix.With(si) })
		case st != nil && st.Unreachable:
			r.Unreachable = true
			swap(func(ix *verify.Index) *verify.Index {
				if old := ix.Source(src.Name()); old != nil {
					return ix.With(old.WithReachability(true, st.UnreachableSince))
				}
				return ix
			})
		}
		out = append(out, r)
	}
	return out
}

// ControlSocketOf reads only daemon.control_socket from a policy file,
// leniently, so that `trustd status` can still reach a daemon (which runs
// its last good policy) when the file on disk no longer validates. It
// returns the default socket when the file names none.
func ControlSocketOf(path string) string {
	var doc struct {
		Daemon struct {
			ControlSocket string `toml:"control_socket"`
		} `toml:"daemon"`
	}
	if b, err := os.ReadFile(path); err == nil {
		_ = toml.Unmarshal(b, &doc)
	}
	if doc.Daemon.ControlSocket == "" {
		return policy.DefaultControlSocket
	}
	return doc.Daemon.ControlSocket
}
