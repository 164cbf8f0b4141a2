package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The session demo kills the serving PE every 10 steps; the count goes on
// and every new PE restores it from the Cookie Echo.
func TestDemoSessionsCountsThroughKills(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out strings.Builder
	err := demoSessions(ctx, demoSessionOptions{pes: 3, interval: 5 * time.Millisecond, killEvery: 10, steps: 35}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	o := out.String()
	for _, want := range []string{
		"step   35: count   35",
		"restored count 10 from the Cookie Echo", "restored count 20 from the Cookie Echo", "restored count 30 from the Cookie Echo",
		"35 steps, 3 failovers, no step lost or counted twice",
	} {
		if !strings.Contains(o, want) {
			t.Fatalf("output lacks %q:\n%s", want, o)
		}
	}
	if n := strings.Count(o, "cookie echoed: true"); n != 3 {
		t.Fatalf("%d failovers with a cookie echoed, want 3:\n%s", n, o)
	}
}
