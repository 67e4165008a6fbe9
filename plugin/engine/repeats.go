package engine

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/trustd/trustd/verify"
)

// Repeated refusals: kubelet retries a refused creation every 10–15 s with
// no backoff, about 260 times an hour per refused pod. The first refusal
// of a (pod, container, volume, image, reason) is logged in full; while it
// repeats, one summary line at most every RepeatSummaryEvery says how many
// times it did and since when. Metrics still count every decision.
const (
	RepeatSummaryEvery = time.Minute
	// RepeatForget: a refusal not seen for this long is new again.
	RepeatForget = 10 * time.Minute
	// maxRepeats bounds the refusals remembered.
	maxRepeats = 4096
)

type repeatKey struct {
	verdict, via, pod, container, volume, image, reason string
}

type repeat struct {
	first, last, logged time.Time
	total, unlogged     int
}

// repeats remembers recent refusals; the zero value is ready. Safe for
// concurrent use.
type repeats struct {
	mu sync.Mutex
	m  map[repeatKey]*repeat
}

// first records a refusal at now and reports whether it is to be logged
// in full (the first of its kind, or one forgotten). When it is a repeat
// due for a summary, it writes the summary to log.
func (rs *repeats) first(now time.Time, c Context, d verify.Decision, log *slog.Logger) bool {
	k := repeatKey{string(d.Verdict()), string(c.Via), c.Pod, c.Container, c.Volume, d.Image, d.Reason}
	rs.mu.Lock()
	full, due, snap := rs.note(now, k)
	rs.mu.Unlock()
	if due {
		logRepeat(log, k, snap) // outside the lock
	}
	return full
}

// note records k at now: full when it is to be logged in full, due (with
// the counts) when a summary is. rs.mu is held.
func (rs *repeats) note(now time.Time, k repeatKey) (full, due bool, snap repeat) {
	if rs.m == nil {
		rs.m = map[repeatKey]*repeat{}
	}
	r, ok := rs.m[k]
	if !ok || now.Sub(r.last) > RepeatForget {
		if len(rs.m) >= maxRepeats {
			rs.evict(now)
		}
		rs.m[k] = &repeat{first: now, last: now, logged: now, total: 1}
		return true, false, repeat{}
	}
	r.total++
	r.unlogged++
	r.last = now
	if now.Sub(r.logged) < RepeatSummaryEvery {
		return false, false, repeat{}
	}
	snap = *r
	r.logged, r.unlogged = now, 0
	return false, true, snap
}

// evict forgets the refusals not seen for RepeatForget, or all of them
// when none is that old (their next repeat is then logged in full).
func (rs *repeats) evict(now time.Time) {
	for k, r := range rs.m {
		if now.Sub(r.last) > RepeatForget {
			delete(rs.m, k)
		}
	}
	if len(rs.m) >= maxRepeats {
		clear(rs.m)
	}
}

// logRepeat writes the summary line of a repeated refusal.
func logRepeat(log *slog.Logger, k repeatKey, r repeat) {
	attrs := []slog.Attr{
		slog.String("decision", k.verdict),
		slog.String("image", k.image),
		slog.String("reason", k.reason),
		slog.String("via", k.via),
		slog.Int("repeats", r.unlogged),
		slog.Int("total", r.total),
		slog.Time("first", r.first),
		slog.Time("last", r.last),
	}
	if k.pod != "" || k.container != "" {
		attrs = append(attrs, slog.String("pod", k.pod), slog.String("container", k.container))
	}
	if k.volume != "" {
		attrs = append(attrs, slog.String("volume", k.volume))
	}
	log.LogAttrs(context.Background(), slog.LevelWarn, "decision repeated", attrs...)
}
