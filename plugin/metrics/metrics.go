package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/trustd/trustd/plugin/status"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/policy"
	"github.com/trustd/trustd/verify"
)

// Label value caps: a label takes at most this many distinct values; later
// new values are counted under OtherLabel, so a node with many namespaces
// (or many policy edits, each giving rules new positions) cannot grow the
// metric set without bound.
const (
	maxNamespaceLabels = 1000
	maxRuleLabels      = 1000
	maxSourceLabels    = 1000
	maxViaLabels       = 32

	// OtherLabel stands for every label value past a cap.
	OtherLabel = "other"
	// NoRuleLabel is the rule label of a decision that no rule made (no rule
	// matched, or the policy is off).
	NoRuleLabel = "none"
)

// Metrics holds trustd's Prometheus metrics in a registry of its own (no
// package globals): decisions, sync state per source, and the NRI
// connection. Its methods are safe for concurrent use and cheap enough for
// the decision path (a map lookup under a mutex per capped label, and
// lock-free counter and histogram updates).
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	decisions    *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	expiry       *prometheus.GaugeVec
	lastSync     *prometheus.GaugeVec
	syncErrors   *prometheus.CounterVec
	graceInUse   *prometheus.GaugeVec
	pulled       *prometheus.GaugeVec
	nriConnected prometheus.Gauge

	namespaces *labelCap
	rules      *labelCap
	sources    *labelCap
	vias       *labelCap
}

// NewMetrics creates the metrics, registered with a new private registry
// together with the Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustd_decisions_total",
			Help: "Decisions on images, by verdict (allow, deny, audit: would deny but allowed), the rule that decided (\"none\": no rule), the pod namespace (empty for pulls) and the path that asked (nri, control:pull, cli, ...).",
		}, []string{"decision", "rule", "namespace", "via"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trustd_decision_duration_seconds",
			Help: "Time to make a decision, content lookups included. NRI's request timeout is 2s; decisions are made from memory.",
			// 1µs to 1s, about 3 buckets per decade.
			Buckets: prometheus.ExponentialBucketsRange(1e-6, 1, 19),
		}, []string{"via"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trustd_cache_expiry_timestamp_seconds",
			Help: "When the source's cached trust data expires (Unix time): after it (and any offline grace), images this source verifies are denied.",
		}, []string{"source"}),
		lastSync: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trustd_cache_last_sync_timestamp_seconds",
			Help: "When the source was last synced successfully (Unix time).",
		}, []string{"source"}),
		syncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustd_sync_errors_total",
			Help: "Failed syncs of the source's trust data.",
		}, []string{"source"}),
		graceInUse: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trustd_offline_grace_in_use",
			Help: "1 while decisions rest on the source's expired trust data under offline_grace (the source is unreachable), else 0.",
		}, []string{"source"}),
		pulled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trustd_notary_pull_discovered_repositories",
			Help: fmt.Sprintf("Repositories seen at pulls for which the Notary source has no trust data, kept in sync in memory for %s after the last such pull, at most %d, after every other repository. Whoever asks for pulls chooses these names: a value at the cap means many pulls of unsigned names.", cache.DefaultNotaryPulledTTL, cache.DefaultNotaryPulledCap),
		}, []string{"source"}),
		nriConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trustd_nri_connected",
			Help: "1 while trustd is registered with containerd's NRI, else 0. With NRI's default validator requiring trustd, no container can be created while it is 0.",
		}),
		namespaces: newLabelCap(maxNamespaceLabels),
		rules:      newLabelCap(maxRuleLabels),
		sources:    newLabelCap(maxSourceLabels),
		vias:       newLabelCap(maxViaLabels),
	}
	m.reg.MustRegister(
		m.decisions, m.duration, m.expiry, m.lastSync, m.syncErrors, m.graceInUse, m.pulled, m.nriConnected,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A collector that fails (e.g. /proc hidden by a sandbox) must not
		// hide the others.
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.reg,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	return m
}

// Registry returns the private registry, for tests and for embedding
// trustd's metrics in another exporter.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// ObserveDecision counts one decision and its duration. via says which path
// asked ("nri", "control:pull", "cli", ...); when empty, it is taken from the
// facts' subject ("container", "pull" or "check").
func (m *Metrics) ObserveDecision(f verify.Facts, d verify.Decision, via string, took time.Duration) {
	verdict := string(d.Verdict())
	rule := d.Rule
	if rule == "" {
		rule = NoRuleLabel
	}
	ns := f.Namespace
	if ns == "" {
		ns = d.Namespace
	}
	if via == "" {
		via = f.Subject.String()
	}
	via = m.vias.value(via)
	m.decisions.WithLabelValues(verdict, m.rules.value(rule), m.namespaces.value(ns), via).Inc()
	m.duration.WithLabelValues(via).Observe(took.Seconds())
}

// ObserveSync records the outcome of one sync of a source at time at. A
// successful sync sets the last-sync time and ends any offline grace (the
// source was reachable); a failed one counts an error. expires, when not
// zero, is when the source's cached trust data (as now loaded) expires.
func (m *Metrics) ObserveSync(source string, ok bool, at time.Time, expires time.Time) {
	source = m.sources.value(source)
	errs := m.syncErrors.WithLabelValues(source)
	if ok {
		m.lastSync.WithLabelValues(source).Set(unixSeconds(at))
		m.graceInUse.WithLabelValues(source).Set(0)
		errs.Add(0) // the series exists from the first sync on, so rate() works
	} else {
		errs.Inc()
	}
	if !expires.IsZero() {
		m.expiry.WithLabelValues(source).Set(unixSeconds(expires))
	}
}

// SetOfflineGraceInUse says whether decisions rest on the source's expired
// trust data under offline grace.
func (m *Metrics) SetOfflineGraceInUse(source string, inUse bool) {
	m.graceInUse.WithLabelValues(m.sources.value(source)).Set(boolGauge(inUse))
}

// ObserveSyncRound records a daemon sync round: each result's outcome, and
// each source's expiry and offline grace from its status at time at. The
// gauges of sources that are no longer in statuses (removed from the policy)
// are deleted, so that alerts do not fire on data nobody uses.
func (m *Metrics) ObserveSyncRound(results []cache.SyncResult, statuses []*status.SourceStatus, at time.Time) {
	ok := make(map[string]bool, len(results))
	for _, r := range results {
		ok[r.Source] = r.OK
	}
	keep := make(map[string]bool, len(statuses))
	for _, st := range statuses {
		if st == nil {
			continue
		}
		name := m.sources.value(st.Source)
		keep[name] = true
		if r, ran := ok[st.Source]; ran {
			m.ObserveSync(st.Source, r, at, st.Expires)
		} else if !st.Expires.IsZero() {
			m.expiry.WithLabelValues(name).Set(unixSeconds(st.Expires))
		}
		m.SetOfflineGraceInUse(st.Source, st.Grace != "")
		if st.Kind == policy.KindNotary {
			m.SetPullDiscovered(st.Source, st.PullDiscovered)
		}
	}
	for _, gv := range []*prometheus.GaugeVec{m.expiry, m.lastSync, m.graceInUse, m.pulled} {
		for _, name := range m.sources.values() {
			if !keep[name] {
				gv.DeleteLabelValues(name)
			}
		}
	}
}

// SetPullDiscovered records how many repositories seen at pulls, without
// trust data, the Notary source keeps in sync.
func (m *Metrics) SetPullDiscovered(source string, n int) {
	m.pulled.WithLabelValues(m.sources.value(source)).Set(float64(n))
}

// SetNRIConnected records whether trustd is registered with NRI.
func (m *Metrics) SetNRIConnected(up bool) { m.nriConnected.Set(boolGauge(up)) }

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// labelCap admits at most max distinct values of a label; further new
// values become OtherLabel.
type labelCap struct {
	mu   sync.Mutex
	max  int
	seen map[string]struct{}
}

func newLabelCap(max int) *labelCap {
	return &labelCap{max: max, seen: make(map[string]struct{})}
}

func (c *labelCap) value(v string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[v]; ok {
		return v
	}
	if len(c.seen) >= c.max {
		return OtherLabel
	}
	c.seen[v] = struct{}{}
	return v
}

func (c *labelCap) values() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.seen)+1)
	for v := range c.seen {
		out = append(out, v)
	}
	return append(out, OtherLabel)
}

// ServeOption configures ServeMetrics.
type ServeOption func(*serveConfig)

type serveConfig struct {
	health    func() error
	listening func(net.Addr)
}

// WithHealth makes /healthz answer 503 with the error's text while check
// fails (the daemon passes the same check that gates its systemd watchdog
// pings); without it /healthz answers 200 while the server runs.
func WithHealth(check func() error) ServeOption {
	return func(c *serveConfig) { c.health = check }
}

// WithListening calls f with the bound address once the listener is open
// (useful with port 0).
func WithListening(f func(net.Addr)) ServeOption {
	return func(c *serveConfig) { c.listening = f }
}

// ServeMetrics binds addr and serves h on /metrics and a health check on
// /healthz until ctx is done; then it shuts the server down gracefully and
// returns nil. It returns an error at once when addr cannot be bound, and
// the server's error if serving fails. It never touches the decision path:
// a failing metrics server does not affect enforcement.
func ServeMetrics(ctx context.Context, addr string, h http.Handler, log *slog.Logger, opts ...ServeOption) error {
	var cfg serveConfig
	for _, o := range opts {
		o(&cfg)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: listening on %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if cfg.health != nil {
			if err := cfg.health(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "unhealthy: %s\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving metrics", "address", ln.Addr().String())
	if cfg.listening != nil {
		cfg.listening(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serving on %s: %w", ln.Addr(), err)
	}
	return nil
}
