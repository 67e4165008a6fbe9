package nri

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/trustd/trustd/plugin/engine"

	"github.com/trustd/trustd/verify"
)

// logLines decodes a JSON log into its lines.
func logLines(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestRepeatedRefusalsAreSummarised: a kubelet retrying a refused creation
// every 12 s for 5 minutes gets one full line and then at most one summary
// a minute; metrics count every decision; another pod's refusal, and the
// same refusal after a long silence, are logged in full again.
func TestRepeatedRefusalsAreSummarised(t *testing.T) {
	w := newFactsWorld(t)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	w.engine.Now = func() time.Time { return now }
	counted := 0
	w.engine.OnDecision = func(verify.Facts, verify.Decision, engine.Context, time.Duration) { counted++ }
	pl := &NRIPlugin{Engine: w.engine, Images: w.store, Log: slog.New(slog.DiscardHandler)}
	create := func(pod string) {
		ctr := w.container(true, "c", "registry.example.com/apps/evil:1", sha("evil-config"), nil)
		if err := pl.decideContainer(context.Background(), podIn(pod), ctr, nil, engine.ViaNRI); err == nil {
			t.Fatal("unsigned image allowed")
		}
	}
	const retries = 25 // 5 minutes at one try every 12 s
	for range retries {
		create("web")
		now = now.Add(12 * time.Second)
	}
	lines := logLines(t, w.log)
	full, summaries, total := 0, 0, 0
	for _, l := range lines {
		switch l["msg"] {
		case "decision":
			full++
		case "decision repeated":
			summaries++
			total += int(l["repeats"].(float64))
			if l["pod"] != "web" || l["decision"] != "deny" || !strings.Contains(l["reason"].(string), "not signed") {
				t.Errorf("summary line %v", l)
			}
		}
	}
	if full != 1 || summaries < 4 || summaries > 5 {
		t.Errorf("%d retries over 5 minutes logged %d full lines and %d summaries, want 1 and 4-5:\n%s", retries, full, summaries, w.log)
	}
	if total > retries-1 || total < retries-1-5 {
		t.Errorf("summaries count %d repeats, want about %d", total, retries-1)
	}
	if counted != retries {
		t.Errorf("metrics saw %d decisions, want %d", counted, retries)
	}

	w.log.Reset()
	create("other")
	now = now.Add(engine.RepeatForget + time.Second)
	create("web")
	if n := strings.Count(w.log.String(), `"msg":"decision"`); n != 2 {
		t.Errorf("another pod's refusal and a refusal after %v of silence: %d full lines, want 2:\n%s", engine.RepeatForget, n, w.log)
	}
}

// TestVerdictsAreNotRefusals: judging an image that arrived, or a running
// container at reconnection, refuses nothing and is not logged as a
// decision to deny.
func TestVerdictsAreNotRefusals(t *testing.T) {
	w := newFactsWorld(t)
	f := verify.Facts{Subject: verify.SubjectCheck, Image: "registry.example.com/apps/evil:1"}
	w.engine.Decide(context.Background(), f, engine.Context{Via: engine.ViaImageEvent})
	pl := &NRIPlugin{Engine: w.engine, Images: w.store, Log: slog.New(slog.DiscardHandler)}
	ctr := w.container(true, "c", "registry.example.com/apps/evil:1", sha("evil-config"), nil)
	pl.Judge(context.Background(), podIn("p"), ctr, nil, engine.ViaSynchronize)
	if strings.Contains(w.log.String(), `"decision":"deny"`) {
		t.Errorf("a verdict was logged as a refusal:\n%s", w.log)
	}
	if n := strings.Count(w.log.String(), `"verdict":"deny"`); n != 2 {
		t.Errorf("%d verdict lines, want 2:\n%s", n, w.log)
	}
}
