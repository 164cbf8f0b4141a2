package deploy

import (
	"flag"
	"fmt"
	"testing"
	"time"
)

var screenshots = flag.String("screenshots", "", "directory for the status page screenshots (default: a temporary one); ../docs/status-page rewrites the documentation's")

// TestE2EOperatorView runs the stack an operator runs, with a real
// Prometheus scraping it (when installed), drives traffic through the
// proxy and a failover (a backend dies: the proxy fails over, the
// pe-agent deregisters it), then checks what the operator sees: the
// status pages in Chromium, the series, rates and alerts in Prometheus,
// and that the dashboard and the alert rules use exported metrics.
func TestE2EOperatorView(t *testing.T) {
	s := startStack(t)
	prom := startPrometheusIfInstalled(t, s)

	if failed, err := s.traffic(30, 50*time.Millisecond); failed > 0 {
		t.Fatalf("%d connections failed before the failover: %v", failed, err)
	}
	s.backends["echo-1"].stop() // the least loaded PE: the proxy's choice
	if failed, err := s.traffic(30, 50*time.Millisecond); failed > 0 {
		t.Fatalf("%d client connections failed although the proxy fails over: %v", failed, err)
	}
	for _, r := range s.regs {
		eventually(t, 20*time.Second, "echo-1 deregistered at "+r.id, func() error {
			if n, err := r.poolSize("EchoPool"); err != nil || n != 2 {
				return fmt.Errorf("EchoPool has %d PEs (%v)", n, err)
			}
			return nil
		})
	}
	s.hold(t, "echo")

	t.Run("Prometheus", func(t *testing.T) { checkPrometheus(t, s, prom) })
	t.Run("status pages in Chromium", func(t *testing.T) { checkStatusPages(t, s) })
	t.Run("dashboard and rules use exported metrics", func(t *testing.T) { checkMetricNames(t, s) })
}
