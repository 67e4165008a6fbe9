package cache

import (
	"testing"
	"time"
)

func TestClockSetBack(t *testing.T) {
	dir := t.TempDir()
	wall := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	c := OpenClock(dir)
	c.Wall = func() time.Time { return wall }
	if err := c.Observe(); err != nil {
		t.Fatal(err)
	}
	// The clock is set back a year, and the daemon restarts.
	wall = wall.AddDate(-1, 0, 0)
	c2 := OpenClock(dir)
	c2.Wall = func() time.Time { return wall }
	if got := c2.Now(); !got.Equal(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("clock set back: Now = %v, want the floor", got)
	}
	if back, by := c2.SetBack(); !back || by < 364*24*time.Hour {
		t.Fatalf("SetBack = %v %v", back, by)
	}
	// Forward again: the wall clock wins.
	wall = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := c2.Now(); !got.Equal(wall) {
		t.Fatalf("Now = %v", got)
	}
}
