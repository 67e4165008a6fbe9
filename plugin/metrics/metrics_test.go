package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustd/trustd/cache"
	"github.com/trustd/trustd/plugin/status"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/trustd/trustd/verify"
)

func TestMetricsDecisions(t *testing.T) {
	tests := []struct {
		name     string
		facts    verify.Facts
		decision verify.Decision
		via      string
		want     []string // label values: decision, rule, namespace, via
	}{
		{
			name:     "allowed container",
			facts:    verify.Facts{Subject: verify.SubjectContainer, Image: "nginx:1", Namespace: "default"},
			decision: verify.Decision{Allowed: true, Rule: "rule #1 (policy.toml:10)"},
			via:      "nri",
			want:     []string{"allow", "rule #1 (policy.toml:10)", "default", "nri"},
		},
		{
			name:     "denied pull, no namespace",
			facts:    verify.Facts{Subject: verify.SubjectPull, Image: "evil:1"},
			decision: verify.Decision{Allowed: false, Rule: "rule #3 (policy.toml:20)"},
			via:      "control:pull",
			want:     []string{"deny", "rule #3 (policy.toml:20)", "", "control:pull"},
		},
		{
			name:     "audit counts apart from allow",
			facts:    verify.Facts{Subject: verify.SubjectContainer, Namespace: "team-a"},
			decision: verify.Decision{Allowed: true, Audit: true, Rule: "rule #2 (policy.toml:15)"},
			via:      "nri",
			want:     []string{"audit", "rule #2 (policy.toml:15)", "team-a", "nri"},
		},
		{
			name:     "no rule, via from the subject",
			facts:    verify.Facts{Subject: verify.SubjectContainer, Namespace: "x"},
			decision: verify.Decision{Allowed: false},
			want:     []string{"deny", NoRuleLabel, "x", "container"},
		},
		{
			name:     "namespace from the decision",
			facts:    verify.Facts{Subject: verify.SubjectCheck},
			decision: verify.Decision{Allowed: true, Rule: "r", Namespace: "ns-from-decision"},
			via:      "cli",
			want:     []string{"allow", "r", "ns-from-decision", "cli"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics()
			m.ObserveDecision(tc.facts, tc.decision, tc.via, 3*time.Microsecond)
			m.ObserveDecision(tc.facts, tc.decision, tc.via, 4*time.Microsecond)
			if got := value(t, m.decisions.WithLabelValues(tc.want...)); got != 2 {
				t.Errorf("trustd_decisions_total%v = %v, want 2", tc.want, got)
			}
			if n := count(t, m.decisions); n != 1 {
				t.Errorf("%d decision series, want 1", n)
			}
			if n := count(t, m.duration); n != 1 {
				t.Errorf("%d duration series, want 1", n)
			}
		})
	}
}

func TestMetricsDecisionDurationBuckets(t *testing.T) {
	m := NewMetrics()
	f := verify.Facts{Subject: verify.SubjectContainer, Namespace: "default"}
	for _, d := range []time.Duration{500 * time.Nanosecond, 2 * time.Microsecond, 40 * time.Millisecond, 3 * time.Second} {
		m.ObserveDecision(f, verify.Decision{Allowed: true, Rule: "r"}, "nri", d)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "trustd_decision_duration_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 4 {
			t.Errorf("sample count %d, want 4", h.GetSampleCount())
		}
		b := h.GetBucket()
		if first, last := b[0].GetUpperBound(), b[len(b)-1].GetUpperBound(); first != 1e-6 || last < 0.999999 || last > 1.000001 {
			t.Errorf("buckets from %g to %g, want 1e-06 to 1", first, last)
		}
		if got := b[0].GetCumulativeCount(); got != 1 {
			t.Errorf("≤1µs bucket holds %d, want 1 (the 500ns decision)", got)
		}
		if got := b[len(b)-1].GetCumulativeCount(); got != 3 {
			t.Errorf("≤1s bucket holds %d, want 3 (the 3s decision is only in +Inf)", got)
		}
		return
	}
	t.Fatal("trustd_decision_duration_seconds not gathered")
}

func TestMetricsNamespaceCardinalityIsCapped(t *testing.T) {
	m := NewMetrics()
	for i := range maxNamespaceLabels + 50 {
		f := verify.Facts{Subject: verify.SubjectContainer, Namespace: fmt.Sprintf("ns-%d", i)}
		m.ObserveDecision(f, verify.Decision{Allowed: true, Rule: "r"}, "nri", time.Microsecond)
	}
	if n := count(t, m.decisions); n != maxNamespaceLabels+1 {
		t.Errorf("%d series, want %d namespaces and %q", n, maxNamespaceLabels, OtherLabel)
	}
	if got := value(t, m.decisions.WithLabelValues("allow", "r", OtherLabel, "nri")); got != 50 {
		t.Errorf("%q namespace counted %v decisions, want 50", OtherLabel, got)
	}
	// A namespace seen before the cap keeps its own series.
	m.ObserveDecision(verify.Facts{Subject: verify.SubjectContainer, Namespace: "ns-7"}, verify.Decision{Allowed: true, Rule: "r"}, "nri", time.Microsecond)
	if got := value(t, m.decisions.WithLabelValues("allow", "r", "ns-7", "nri")); got != 2 {
		t.Errorf("ns-7 counted %v, want 2", got)
	}
}

func TestMetricsRuleAndViaCardinalityIsCapped(t *testing.T) {
	m := NewMetrics()
	for i := range maxRuleLabels + 10 {
		m.ObserveDecision(verify.Facts{}, verify.Decision{Rule: fmt.Sprintf("rule #%d", i)}, fmt.Sprintf("via-%d", i%(maxViaLabels+5)), time.Microsecond)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	rules, vias := map[string]bool{}, map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "trustd_decisions_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				switch l.GetName() {
				case "rule":
					rules[l.GetValue()] = true
				case "via":
					vias[l.GetValue()] = true
				}
			}
		}
	}
	if len(rules) != maxRuleLabels+1 || !rules[OtherLabel] {
		t.Errorf("%d rule values (other: %v), want %d and %q", len(rules), rules[OtherLabel], maxRuleLabels, OtherLabel)
	}
	if len(vias) != maxViaLabels+1 || !vias[OtherLabel] {
		t.Errorf("%d via values, want %d and %q", len(vias), maxViaLabels, OtherLabel)
	}
}

func TestMetricsSync(t *testing.T) {
	m := NewMetrics()
	at := time.Unix(1_800_000_000, 0)
	exp := at.Add(24 * time.Hour)

	m.ObserveSync("corp", true, at, exp)
	m.ObserveSync("hub", false, at, time.Time{})
	m.ObserveSync("hub", false, at.Add(time.Minute), exp.Add(time.Hour))
	m.SetOfflineGraceInUse("hub", true)
	m.SetNRIConnected(true)

	want := map[string]float64{
		`trustd_cache_expiry_timestamp_seconds{source="corp"}`:    1.8000864e+09,
		`trustd_cache_expiry_timestamp_seconds{source="hub"}`:     1.80009e+09,
		`trustd_cache_last_sync_timestamp_seconds{source="corp"}`: 1.8e+09,
		`trustd_nri_connected{}`:                                  1,
		`trustd_offline_grace_in_use{source="corp"}`:              0,
		`trustd_offline_grace_in_use{source="hub"}`:               1,
		`trustd_sync_errors_total{source="corp"}`:                 0,
		`trustd_sync_errors_total{source="hub"}`:                  2,
	}
	got := gathered(t, m.Registry(), "trustd_cache_expiry_timestamp_seconds", "trustd_cache_last_sync_timestamp_seconds",
		"trustd_nri_connected", "trustd_offline_grace_in_use", "trustd_sync_errors_total")
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present: %v), want %v", k, g, ok, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("gathered %v, want exactly %v", got, want)
	}

	// A later successful sync ends the grace.
	m.ObserveSync("hub", true, at.Add(2*time.Minute), exp.Add(2*time.Hour))
	if got := value(t, m.graceInUse.WithLabelValues("hub")); got != 0 {
		t.Errorf("grace in use after a successful sync = %v, want 0", got)
	}
	m.SetNRIConnected(false)
	if got := value(t, m.nriConnected); got != 0 {
		t.Errorf("trustd_nri_connected = %v, want 0", got)
	}
}

func TestMetricsSyncRoundDropsRemovedSources(t *testing.T) {
	m := NewMetrics()
	at := time.Unix(1_800_000_000, 0)
	st := func(name string, grace string) *status.SourceStatus {
		s := &status.SourceStatus{Expires: at.Add(time.Hour), Grace: grace}
		s.Source = name
		return s
	}
	m.ObserveSyncRound([]cache.SyncResult{{Source: "a", OK: true}, {Source: "b", OK: false, Unreachable: true}},
		[]*status.SourceStatus{st("a", ""), st("b", "in use: ...")}, at)
	if got := value(t, m.graceInUse.WithLabelValues("b")); got != 1 {
		t.Errorf("grace of b = %v, want 1", got)
	}
	if got := value(t, m.syncErrors.WithLabelValues("b")); got != 1 {
		t.Errorf("sync errors of b = %v, want 1", got)
	}
	if n := count(t, m.expiry); n != 2 {
		t.Fatalf("%d expiry series, want 2", n)
	}
	// b is removed from the policy: its gauges go, its error counter stays.
	m.ObserveSyncRound([]cache.SyncResult{{Source: "a", OK: true}}, []*status.SourceStatus{st("a", "")}, at.Add(time.Minute))
	if n := count(t, m.expiry); n != 1 {
		t.Errorf("%d expiry series after b was removed, want 1", n)
	}
	if n := count(t, m.graceInUse); n != 1 {
		t.Errorf("%d grace series after b was removed, want 1", n)
	}
	if n := count(t, m.syncErrors); n != 2 {
		t.Errorf("%d sync error series, want 2 (counters are kept)", n)
	}
}

func TestServeMetrics(t *testing.T) {
	m := NewMetrics()
	m.SetNRIConnected(true)
	var healthErr atomic.Pointer[error]
	health := func() error {
		if e := healthErr.Load(); e != nil {
			return *e
		}
		return nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- ServeMetrics(ctx, "127.0.0.1:0", m.Handler(), nil, WithHealth(health), WithListening(func(a net.Addr) { addrc <- a }))
	}()
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("ServeMetrics returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("ServeMetrics did not listen")
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	code, body := get("/metrics")
	if code != http.StatusOK || !strings.Contains(body, "\ntrustd_nri_connected 1\n") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz healthy: %d %q", code, body)
	}
	unhealthy := errors.New("sync loop has not completed a round for 20m")
	healthErr.Store(&unhealthy)
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "sync loop") {
		t.Errorf("/healthz unhealthy: %d %q", code, body)
	}
	if code, _ := get("/other"); code != http.StatusNotFound {
		t.Errorf("/other: %d, want 404", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeMetrics after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeMetrics did not return after cancel")
	}
}

func TestServeMetricsBindError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = ServeMetrics(t.Context(), ln.Addr().String(), NewMetrics().Handler(), nil)
	if err == nil || !strings.Contains(err.Error(), "metrics: listening on") {
		t.Fatalf("ServeMetrics on a bound address: %v, want a listen error", err)
	}
}

// value reads the value of one counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%v is neither a counter nor a gauge", c.Desc())
	return 0
}

// count is the number of series a collector has.
func count(t *testing.T, c prometheus.Collector) int {
	t.Helper()
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}

// gathered returns name{label="value",...} → value for every counter and
// gauge series of the named metric families.
func gathered(t *testing.T, g prometheus.Gatherer, names ...string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !want[mf.GetName()] {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var ls []string
			for _, l := range mt.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			switch {
			case mt.Counter != nil:
				out[key] = mt.Counter.GetValue()
			case mt.Gauge != nil:
				out[key] = mt.Gauge.GetValue()
			}
		}
	}
	return out
}

func TestMetricsPullDiscovered(t *testing.T) {
	m := NewMetrics()
	at := time.Unix(1_800_000_000, 0)
	st := func(name, kind string, n int) *status.SourceStatus {
		s := &status.SourceStatus{PullDiscovered: n}
		s.Source, s.Kind = name, kind
		return s
	}
	m.ObserveSyncRound([]cache.SyncResult{{Source: "hub", OK: true}, {Source: "corp", OK: true}},
		[]*status.SourceStatus{st("hub", "notary", 7), st("corp", "tuf", 0)}, at)
	got := gathered(t, m.Registry(), "trustd_notary_pull_discovered_repositories")
	if len(got) != 1 || got[`trustd_notary_pull_discovered_repositories{source="hub"}`] != 7 {
		t.Errorf("gathered %v, want hub at 7 and no TUF series", got)
	}
	// A pull between rounds updates it; a source removed from the policy drops it.
	m.SetPullDiscovered("hub", 8)
	if got := value(t, m.pulled.WithLabelValues("hub")); got != 8 {
		t.Errorf("after a pull: %v, want 8", got)
	}
	m.ObserveSyncRound(nil, []*status.SourceStatus{st("corp", "tuf", 0)}, at.Add(time.Minute))
	if n := count(t, m.pulled); n != 0 {
		t.Errorf("%d series after hub was removed, want 0", n)
	}
}
