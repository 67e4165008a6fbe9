package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trustd/trustd/plugin/control"
	"github.com/trustd/trustd/plugin/ctrd"
	"github.com/trustd/trustd/plugin/docker"
	"github.com/trustd/trustd/plugin/engine"
	"github.com/trustd/trustd/plugin/local"
	"github.com/trustd/trustd/plugin/metrics"
	"github.com/trustd/trustd/plugin/nri"
	"github.com/trustd/trustd/plugin/selfcheck"
	"github.com/trustd/trustd/plugin/status"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/nri/pkg/api"
	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// Daemon is `trustd run`: it loads the policy and the cache, serves the
// control socket, registers the NRI plugin (reconnecting when containerd
// restarts), refreshes the cache in the background and reloads the policy
// on SIGHUP. Start-up order: policy → cache → control socket → NRI →
// READY=1.
type Daemon struct {
	ConfigPath string
	Log        *slog.Logger
	// ContainerdConfig is containerd's config file, checked at start and
	// on reload for settings that let images through; empty: the file of
	// the containerd serving the policy's containerd_address, found from
	// its command line (LocateContainerdConfig).
	ContainerdConfig string
	// Metrics, if set, records decisions, syncs and NRI state, served on
	// the policy's metrics_address.
	Metrics *metrics.Metrics

	engine  *engine.Engine
	store   atomic.Pointer[cache.Store]
	ctrd    *ctrd.Containerd
	control *control.ControlServer
	docker  *docker.Plugin // nil unless docker_authz

	mu         sync.Mutex
	findings   []selfcheck.Finding
	configFile selfcheck.ConfigLocation
	// registrationLogged: the findings about NRI registration (which the
	// connection proves or disproves) were logged for this self-check.
	registrationLogged bool
	policyLoaded       time.Time
	reloadErr          string
	reloadAt           time.Time
	nriConnected       bool
	nriSince           time.Time
	lastSyncLoop       time.Time
	refreshed          map[string]refreshed
	nriRuntime         string
	nriMode            nri.NRIMode
	syncNow            chan struct{}
}

// Run runs the daemon until ctx is done. It returns an error wrapping
// ErrConfig when the policy is invalid at start.
func (d *Daemon) Run(ctx context.Context) error {
	log := d.Log
	p, err := policy.Load(d.ConfigPath)
	if err != nil {
		return fmt.Errorf("%w: %w", engine.ErrConfig, err)
	}
	for _, w := range p.Check() {
		log.Warn("policy warning", "warning", w.String())
	}
	store, err := cache.Open(p, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", engine.ErrConfig, err)
	}
	d.store.Store(store)
	ix, errs := store.LoadIndex()
	for _, e := range errs {
		if cache.IsNoData(e) {
			log.Info("no cached trust data yet; will sync", "error", e.Error())
		} else {
			log.Warn("cached trust data not usable", "error", e.Error())
		}
	}
	d.ctrd = &ctrd.Containerd{Address: p.Daemon.ContainerdAddress, Namespace: p.Daemon.ContainerdNamespace}
	defer d.ctrd.Close()
	mc := store.Manifests
	d.engine = &engine.Engine{Log: log, Resolver: &engine.Resolver{Readers: []engine.BlobReader{d.ctrd, mc}, Cache: mc}, Now: store.Clock.Now}
	if back, by := store.Clock.SetBack(); back {
		log.Warn("the system clock is behind the latest time trustd has seen; using that time for expiry checks", "behind", by.String())
	}
	if d.Metrics != nil {
		d.engine.OnDecision = func(f verify.Facts, dec verify.Decision, c engine.Context, took time.Duration) {
			d.Metrics.ObserveDecision(f, dec, string(c.Via), took)
		}
	}
	d.engine.Swap(&engine.Snapshot{Policy: p, Index: ix})
	d.policyLoaded = time.Now()
	d.selfCheck(p)
	log.Info("policy loaded", "file", p.File, "mode", string(p.Mode), "rules", len(p.Rules), "sources", len(p.Sources))

	d.control = &control.ControlServer{Engine: d.engine, Status: func(ctx context.Context) any { return d.Status(ctx) }, Sync: d.syncRequest, Refresh: d.refreshForPull, ReloadCache: d.reloadCache}
	if err := d.control.Listen(p.Daemon.ControlSocket); err != nil {
		return err
	}
	defer d.control.Close()
	go func() {
		if err := d.control.Serve(); err != nil {
			log.Error("control socket stopped", "error", err.Error())
		}
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if p.Daemon.DockerAuthz {
		// dockerd refuses to start without its authorization plugin:
		// the plugin serves before READY, and waits for dockerd.
		d.docker = &docker.Plugin{Engine: d.engine, Docker: docker.NewClient(p.Daemon.DockerAddress), Log: log}
		if err := d.docker.Listen(p.Daemon.DockerAuthzSocket); err != nil {
			return err
		}
		defer d.docker.Close()
		go func() {
			if err := d.docker.Serve(); err != nil {
				log.Error("docker authorization socket stopped", "error", err.Error())
			}
		}()
		go d.docker.LogEngine(ctx)
	}
	d.syncNow = make(chan struct{}, 1)
	go d.syncLoop(ctx)
	if d.Metrics != nil && p.Daemon.MetricsAddress != "" {
		go func() {
			if err := metrics.ServeMetrics(ctx, p.Daemon.MetricsAddress, d.Metrics.Handler(), log, metrics.WithHealth(d.healthy)); err != nil {
				log.Error("metrics server stopped", "address", p.Daemon.MetricsAddress, "error", err.Error())
			}
		}()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// nri_socket = "": a Docker-only node, no NRI.
	if p.Daemon.NRISocket != "" {
		nriUp := make(chan struct{}, 1)
		go d.nriLoop(ctx, p.Daemon.NRISocket, nriUp)
		select {
		case <-nriUp:
		case <-ctx.Done():
			return nil
		}
		if v, err := d.ctrd.Version(ctx); err == nil {
			log.Info("connected to containerd", "version", v, "address", p.Daemon.ContainerdAddress)
		} else {
			log.Warn("containerd's API is not reachable; decisions use NRI facts and trustd's manifest cache only", "error", err.Error())
		}
		go (&ctrd.ImageWatcher{Ctrd: d.ctrd, Engine: d.engine, Log: log}).Run(ctx)
	}
	sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
	log.Info("trustd ready", "nri_socket", p.Daemon.NRISocket, "control_socket", p.Daemon.ControlSocket, "docker_authz_socket", dockerSocket(p))
	go d.watchdog(ctx)

	for {
		select {
		case <-ctx.Done():
			sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
			log.Info("trustd stopping")
			return nil
		case <-hup:
			d.Reload()
		}
	}
}

// Reload re-reads the policy file. A policy that does not parse and
// validate completely is rejected and the last good one stays in force.
func (d *Daemon) Reload() {
	sddaemon.SdNotify(false, sddaemon.SdNotifyReloading+"\nMONOTONIC_USEC="+sddaemon.SdNotifyMonotonicUsec())
	defer sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
	fail := func(err error) {
		d.mu.Lock()
		d.reloadErr, d.reloadAt = err.Error(), time.Now()
		d.mu.Unlock()
		d.Log.Error("policy reload rejected; keeping the last good policy", "file", d.ConfigPath, "error", err.Error())
	}
	p, err := policy.Load(d.ConfigPath)
	if err != nil {
		fail(err)
		return
	}
	store, err := cache.Open(p, nil)
	if err != nil {
		fail(err)
		return
	}
	ix, _ := store.LoadIndex()
	d.store.Store(store)
	d.engine.Swap(&engine.Snapshot{Policy: p, Index: ix})
	d.mu.Lock()
	d.reloadErr, d.reloadAt, d.policyLoaded = "", time.Now(), time.Now()
	d.mu.Unlock()
	for _, w := range p.Check() {
		d.Log.Warn("policy warning", "warning", w.String())
	}
	d.selfCheck(p)
	d.Log.Info("policy reloaded", "file", p.File, "mode", string(p.Mode), "rules", len(p.Rules))
	d.trigger()
}

func (d *Daemon) trigger() {
	select {
	case d.syncNow <- struct{}{}:
	default:
	}
}

// nriLoop keeps the plugin registered: it (re)connects with back-off
// whenever the connection is down (containerd restarted).
func (d *Daemon) nriLoop(ctx context.Context, socket string, up chan<- struct{}) {
	pl := &nri.NRIPlugin{Engine: d.engine, Images: d.ctrd, Log: d.Log, OnSynchronize: d.onSynchronize, OnConfigure: func(runtime, version string, mode nri.NRIMode) {
		d.mu.Lock()
		d.nriRuntime, d.nriMode = runtime+" "+version, mode
		d.mu.Unlock()
	}}
	backoff := 200 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		closed := make(chan struct{})
		var once sync.Once
		s, err := pl.NewStub(socket, func() { once.Do(func() { close(closed) }) })
		if err == nil {
			err = s.Start(ctx)
		}
		if err != nil {
			if first || backoff >= 5*time.Second {
				d.Log.Warn("cannot register with NRI; retrying", "socket", socket, "error", err.Error())
				d.logRegistration(false)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
		d.setNRI(true)
		d.logRegistration(true)
		d.Log.Info("registered with NRI", "plugin", nri.PluginName, "socket", socket, "runtime_nri", s.RuntimeNRIVersion())
		if first {
			up <- struct{}{}
			first = false
		}
		select {
		case <-ctx.Done():
			s.Stop()
			return
		case <-closed:
			s.Stop()
			d.setNRI(false)
			d.ctrd.Close() // containerd likely restarted: reconnect the API too
			d.Log.Warn("NRI connection closed; reconnecting")
		}
	}
}

func (d *Daemon) setNRI(up bool) {
	d.mu.Lock()
	d.nriConnected, d.nriSince = up, time.Now()
	d.mu.Unlock()
	if d.Metrics != nil {
		d.Metrics.SetNRIConnected(up)
	}
}

// selfCheck reads containerd's configuration and warns loudly about every
// setting that lets images through. The findings that say trustd cannot
// register with NRI are logged once the connection has proved or
// disproved them (logRegistration).
func (d *Daemon) selfCheck(p *policy.Policy) {
	if p.Daemon.NRISocket == "" {
		return // no NRI: containerd's CRI settings do not apply
	}
	loc := selfcheck.LocateContainerdConfig(d.ContainerdConfig, p.Daemon.ContainerdAddress)
	if loc.Known {
		d.Log.Info("checking containerd's configuration", "path", loc.Path, "how", loc.How)
	} else {
		d.Log.Warn("checking containerd's default configuration", "path", loc.Path, "how", loc.How)
	}
	findings, err := selfcheck.CheckContainerdConfigAt(loc, p.Daemon.NRISocket)
	if err != nil {
		d.Log.Warn("could not check containerd's configuration", "path", loc.Path, "error", err.Error())
	}
	for _, f := range findings {
		if !f.Registration {
			d.logFinding(loc, f)
		}
	}
	d.mu.Lock()
	d.findings, d.configFile, d.registrationLogged = findings, loc, false
	connected := d.nriConnected
	d.mu.Unlock()
	if connected {
		d.logRegistration(true)
	}
}

// logRegistration logs the self-check's findings about NRI registration,
// once per self-check, as the connection (connected or not) shows them.
func (d *Daemon) logRegistration(connected bool) {
	d.mu.Lock()
	if d.registrationLogged {
		d.mu.Unlock()
		return
	}
	d.registrationLogged = true
	loc := d.configFile
	var reg []selfcheck.Finding
	for _, f := range d.findings {
		if f.Registration {
			reg = append(reg, f)
		}
	}
	d.mu.Unlock()
	for _, f := range selfcheck.Disproved(reg, connected, loc) {
		d.logFinding(loc, f)
	}
}

func (d *Daemon) logFinding(loc selfcheck.ConfigLocation, f selfcheck.Finding) {
	level := slog.LevelWarn
	if f.Severity == selfcheck.SeverityError {
		level = slog.LevelError
	}
	d.Log.Log(context.Background(), level, "containerd configuration lets images through", "path", loc.Path, "finding", f.String())
}

// onSynchronize judges every running container at (re)connection and
// reports those that would be denied now.
func (d *Daemon) onSynchronize(ctx context.Context, pods []*api.PodSandbox, ctrs []*api.Container) {
	byID := map[string]*api.PodSandbox{}
	for _, p := range pods {
		byID[p.GetId()] = p
	}
	pl := &nri.NRIPlugin{Engine: d.engine, Images: d.ctrd, Log: d.Log}
	denied := 0
	for _, c := range ctrs {
		pod := byID[c.GetPodSandboxId()]
		if dec := pl.Judge(ctx, pod, c, nil, engine.ViaSynchronize); !dec.Allowed {
			denied++
		}
	}
	d.Log.Info("synchronized with runtime", "containers", len(ctrs), "would_be_denied", denied)
}

// syncLoop refreshes every source now and then every refresh interval
// (with ±10% jitter); a request on syncNow triggers a round at once.
func (d *Daemon) syncLoop(ctx context.Context) {
	for {
		d.syncRound(ctx)
		s := d.engine.Snapshot()
		interval := s.Policy.Daemon.Refresh
		if interval <= 0 {
			interval = 5 * time.Minute
		}
		jitter := time.Duration(float64(interval) * (0.9 + 0.2*rand.Float64()))
		select {
		case <-ctx.Done():
			return
		case <-d.syncNow:
		case <-time.After(jitter):
		}
	}
}

func (d *Daemon) syncRound(ctx context.Context) []cache.SyncResult {
	store := d.store.Load()
	d.wantStoredImages(ctx, store)
	out := local.SyncStore(ctx, store, func(update func(*verify.Index) *verify.Index) {
		if d.store.Load() == store { // not replaced by a reload meanwhile
			d.engine.SwapIndex(update)
		}
	})
	if d.Metrics != nil {
		snap := d.engine.Snapshot()
		d.Metrics.ObserveSyncRound(out, status.SourceStatuses(snap.Policy, store, snap.Index, time.Now()), time.Now())
	}
	for _, r := range out {
		switch {
		case !r.OK:
			d.Log.Warn("sync failed; keeping cached trust data", "source", r.Source, "error", r.Error)
		case r.Changed:
			d.Log.Info("trust data updated", "source", r.Source, "summary", r.Summary)
		}
	}
	d.mu.Lock()
	d.lastSyncLoop = time.Now()
	d.mu.Unlock()
	return out
}

// wantStoredImages asks the per-repository sources (Notary, Sigstore) to
// keep the repositories of every image in containerd's store in sync (and
// the Sigstore sources to look for the signatures of their digests).
func (d *Daemon) wantStoredImages(ctx context.Context, store *cache.Store) {
	cl, err := d.ctrd.Client(ctx)
	if err != nil {
		return
	}
	lctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, d.ctrd.Namespace), 10*time.Second)
	defer cancel()
	imgs, err := cl.ImageService().List(lctx)
	if err != nil {
		d.Log.Debug("listing containerd's images", "error", err.Error())
		return
	}
	snap := d.engine.Snapshot()
	for _, img := range imgs {
		if ref, err := policy.ParseRef(img.Name); err == nil {
			store.WantImage(snap.Policy.Origin(ref.Repo), img.Target.Digest)
		}
	}
}

// refreshForPull fetches, at most every few seconds per repository, the
// trust data of a repository whose pull was denied by a per-repository
// source (Notary): a pull is online, so a repository not cached yet, or a
// tag signed since the last sync, is judged on fresh data.
func (d *Daemon) refreshForPull(ctx context.Context, dec verify.Decision) (bool, error) {
	if dec.Source == "" {
		return false, nil
	}
	ref, err := policy.ParseRef(dec.Image)
	if err != nil {
		return false, nil
	}
	key := dec.Source + "\x00" + ref.Repo + "\x00" + string(dec.Digest)
	d.mu.Lock()
	if d.refreshed == nil {
		d.refreshed = map[string]refreshed{}
	}
	if r, ok := d.refreshed[key]; ok && time.Since(r.at) < 5*time.Second {
		d.mu.Unlock()
		return false, r.err // fetched a moment ago: the same answer
	}
	if len(d.refreshed) > 10000 {
		clear(d.refreshed)
	}
	d.refreshed[key] = refreshed{at: time.Now()}
	d.mu.Unlock()
	store := d.store.Load()
	ctx, cancel := context.WithTimeout(ctx, 6*time.Second)
	defer cancel()
	si, err := store.SyncRepository(ctx, dec.Source, ref.Repo, dec.Digest, store.Clock.Now())
	if err != nil {
		d.Log.Warn("fetching trust data at pull failed", "source", dec.Source, "repository", ref.Repo, "error", err.Error())
		d.mu.Lock()
		d.refreshed[key] = refreshed{at: time.Now(), err: err}
		d.mu.Unlock()
		return false, err
	}
	if si == nil || d.store.Load() != store {
		return false, nil
	}
	d.engine.SwapIndex(func(ix *verify.Index) *verify.Index { return ix.With(si) })
	if d.Metrics != nil {
		d.Metrics.SetPullDiscovered(dec.Source, store.PullDiscovered(dec.Source, time.Now()))
	}
	d.Log.Info("trust data fetched at pull", "source", dec.Source, "repository", ref.Repo)
	return true, nil
}

// reloadCache re-verifies the cache from disk and installs it (after a
// `trustd cache import`); it returns the sources that failed to load.
func (d *Daemon) reloadCache(ctx context.Context) any {
	store := d.store.Load()
	ix, errs := store.LoadIndex()
	d.engine.SwapIndex(func(*verify.Index) *verify.Index { return ix })
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	d.Log.Info("cache reloaded from disk", "errors", len(msgs))
	return msgs
}

// refreshed is the outcome of the last fetch of a repository at a pull.
type refreshed struct {
	at  time.Time
	err error
}

// syncRequest runs a sync round now (for `trustd sync` with a running
// daemon) and returns one report per source.
func (d *Daemon) syncRequest(ctx context.Context) any {
	return d.syncRound(ctx)
}

// watchdog pings systemd's watchdog only while the decision path answers
// and the sync loop is alive.
func (d *Daemon) watchdog(ctx context.Context) {
	interval, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := d.healthy(); err != nil {
			d.Log.Error("unhealthy; withholding watchdog ping", "error", err.Error())
			continue
		}
		sddaemon.SdNotify(false, sddaemon.SdNotifyWatchdog)
	}
}

func (d *Daemon) healthy() error {
	s := d.engine.Snapshot()
	if s == nil || s.Policy == nil {
		return errors.New("no policy loaded")
	}
	// The decision path must answer from memory.
	if dec := verify.Decide(s.Policy, s.Index, verify.Facts{Subject: verify.SubjectCheck, Image: "trustd.invalid/watchdog/probe:1"}, time.Now()); dec.Reason == "" {
		return errors.New("decision path gave no reason")
	}
	d.mu.Lock()
	last := d.lastSyncLoop
	d.mu.Unlock()
	limit := 2*s.Policy.Daemon.Refresh + 6*time.Minute
	if !last.IsZero() && time.Since(last) > limit {
		return fmt.Errorf("sync loop has not completed a round for %s", time.Since(last).Round(time.Second))
	}
	return nil
}

// Status reports the daemon's state.
func (d *Daemon) Status(ctx context.Context) *status.DaemonStatus {
	s := d.engine.Snapshot()
	d.mu.Lock()
	st := &status.DaemonStatus{Policy: s.Policy.File, Mode: string(s.Policy.Mode), PolicyLoaded: d.policyLoaded, ReloadError: d.reloadErr, ReloadAt: d.reloadAt, NRIConnected: d.nriConnected, NRISince: d.nriSince, NRIRuntime: d.nriRuntime, NRIMode: d.nriMode, ContainerdConfig: selfcheck.Disproved(d.findings, d.nriConnected, d.configFile), ContainerdConfigFile: &d.configFile}
	d.mu.Unlock()
	if st.NRIMode == nri.ModeCreate {
		st.Warnings = append(st.Warnings, "this containerd has no NRI validation: trustd rejects in CreateContainer, where a plugin time-out or crash lets a container through (containerd 2.2 or later fails closed)")
	}
	if v, err := d.ctrd.Version(ctx); err == nil {
		st.Containerd = v
	} else {
		st.ContainerdErr = err.Error()
	}
	st.Sources = status.SourceStatuses(s.Policy, d.store.Load(), s.Index, time.Now())
	if d.docker != nil {
		st.Docker = d.dockerStatus(ctx, s.Policy)
	}
	return st
}

// dockerStatus asks dockerd its version, briefly: trustd enforces on a
// Docker node only with an engine that has the CVE-2024-41110 fix.
func (d *Daemon) dockerStatus(ctx context.Context, p *policy.Policy) *status.DockerStatus {
	ds := &status.DockerStatus{Socket: d.docker.Address(), Address: d.docker.Docker.Address}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	v, fixed, why, err := d.docker.EngineStatus(ctx)
	switch {
	case err != nil:
		ds.EngineErr = err.Error()
		ds.Note = "dockerd does not answer: trustd cannot tell whether it enforces (dockerd refuses every call while its authorization plugin is down)"
	default:
		ds.Engine, ds.Enforcing, ds.Note = v, fixed, why
	}
	if p.Daemon.DockerAuthzSocket != ds.Socket {
		ds.Note += "; docker_authz_socket changed in the policy: trustd reads it at start only"
	}
	return ds
}

// dockerSocket is the Docker authorization socket when it is served.
func dockerSocket(p *policy.Policy) string {
	if !p.Daemon.DockerAuthz {
		return ""
	}
	return p.Daemon.DockerAuthzSocket
}
