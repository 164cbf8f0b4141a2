package deploy

import (
	"strings"
	"testing"
)

// TestPromtool: the alert rules and the scrape configuration are valid,
// and the rules' unit tests (rserpool.rules.test.yml) pass.
func TestPromtool(t *testing.T) {
	promtool := need(t, "promtool", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "rserpool.rules.yml"},
		{"check", "config", "prometheus.yml"},
		{"test", "rules", "rserpool.rules.test.yml"},
	} {
		out := run(t, "prometheus", promtool, args...)
		if !strings.Contains(out, "SUCCESS") {
			t.Errorf("promtool %s:\n%s", strings.Join(args, " "), out)
		}
	}
}
