package deploy

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// promServer is a real Prometheus scraping the stack, configured with the
// shipped scrape configuration and alert rules.
type promServer struct {
	url string
}

// startPrometheusIfInstalled starts Prometheus before the traffic, so that
// it sees the rates and the failover; nil when it is not installed
// (checkPrometheus then skips, or fails under CI).
func startPrometheusIfInstalled(t *testing.T, s *stack) *promServer {
	t.Helper()
	prog, err := exec.LookPath("prometheus")
	if err != nil {
		return nil
	}
	cfg := shippedScrapeConfig(t, s)
	dir := t.TempDir()
	file := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	startProc(t, "prometheus", nil, prog, "--config.file="+file, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	p := &promServer{url: "http://" + addr}
	eventually(t, 60*time.Second, "Prometheus ready", func() error {
		_, err := getRaw(p.url + "/-/ready")
		return err
	})
	// Targets are first scraped up to 5 s after the start (Prometheus
	// batches discovery updates): the traffic begins after that.
	p.expect(t, `up{job=~"rserpool-.*"}`, 4, equals("1"))
	return p
}

// shippedScrapeConfig is deploy/prometheus/prometheus.yml with the stack's
// targets, the rules file's path and 1 s intervals.
func shippedScrapeConfig(t *testing.T, s *stack) string {
	t.Helper()
	b, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs("prometheus/rserpool.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for _, r := range []struct{ old, new string }{
		{"scrape_interval: 15s", "scrape_interval: 1s"},
		{"evaluation_interval: 15s", "evaluation_interval: 1s"},
		{"- rserpool.rules.yml", "- " + rules},
		{`["localhost:9464"]`, fmt.Sprintf("[%q, %q]", s.regs[0].admin, s.regs[1].admin)},
		{`["localhost:9465"]`, fmt.Sprintf("[%q]", s.agentAdm)},
		{`["localhost:9466"]`, fmt.Sprintf("[%q]", s.proxyAdm)},
	} {
		if strings.Count(cfg, r.old) != 1 {
			t.Fatalf("prometheus/prometheus.yml: %q is not there once", r.old)
		}
		cfg = strings.Replace(cfg, r.old, r.new, 1)
	}
	return cfg
}

func getRaw(u string) ([]byte, error) {
	var v json.RawMessage
	if err := getJSON(u, &v); err != nil {
		// /-/ready answers text, not JSON: only the status matters there.
		if strings.Contains(err.Error(), "invalid character") {
			return nil, nil
		}
		return nil, err
	}
	return v, nil
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s sample) value() string { v, _ := s.Value[1].(string); return v }

// query evaluates expr now through the HTTP API; an error of the query
// itself (a bad expression) is returned, not fatal.
func (p *promServer) query(expr string) ([]sample, error) {
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(p.url+"/api/v1/query?query="+url.QueryEscape(expr), &resp); err != nil {
		return nil, err
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("%s: %s", expr, resp.Error)
	}
	var out []sample
	if resp.Data.ResultType == "vector" {
		if err := json.Unmarshal(resp.Data.Result, &out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// expect waits until expr returns n samples whose values all satisfy ok.
func (p *promServer) expect(t *testing.T, expr string, n int, ok func(v string) bool) []sample {
	t.Helper()
	var got []sample
	eventually(t, 60*time.Second, expr, func() error {
		var err error
		if got, err = p.query(expr); err != nil {
			return err
		}
		if len(got) != n {
			return fmt.Errorf("%d samples, want %d: %v", len(got), n, got)
		}
		for _, s := range got {
			if !ok(s.value()) {
				return fmt.Errorf("value %s of %v", s.value(), s.Metric)
			}
		}
		return nil
	})
	return got
}

func equals(want string) func(string) bool { return func(v string) bool { return v == want } }
func positive(v string) bool               { return v != "0" && !strings.HasPrefix(v, "-") && v != "NaN" }

// checkPrometheus: the series, rates and alerts arrive in Prometheus.
func checkPrometheus(t *testing.T, s *stack, p *promServer) {
	if p == nil {
		need(t, "prometheus", "prometheus")
	}
	p.expect(t, `up{job=~"rserpool-.*"}`, 4, equals("1"))
	// Registrars: both see the pools (one PE of EchoPool gone) and each other.
	p.expect(t, `rserpool_registrar_pool_elements{job="rserpool-registrar",pool="EchoPool"}`, 2, equals("2"))
	p.expect(t, `rserpool_registrar_pool_elements{pool="WebPool"}`, 2, equals("2"))
	p.expect(t, `rserpool_registrar_pool_elements{pool="Legacy\\x00\\xff"}`, 2, equals("1")) // the escaped handle, escaped again by PromQL
	p.expect(t, `rserpool_registrar_peers`, 2, equals("1"))
	p.expect(t, `rserpool_registrar_info{enrp="true"}`, 2, equals("1"))
	p.expect(t, `rserpool_registrar_peer_checksum_mismatches`, 2, func(string) bool { return true })
	p.expect(t, `sum(rate(rserpool_registrar_registrations_total{result="ok"}[5m]))`, 1, positive)
	// Proxy: rates per listener, the failover, every client served.
	p.expect(t, `sum by (listener) (rate(rserpool_proxy_connections_total{result="ok"}[5m]))`, 3, positive)
	p.expect(t, `sum(rserpool_proxy_failovers_total{listener="echo"})`, 1, positive)
	p.expect(t, `sum(rserpool_proxy_connections_total{result="no_backend"})`, 1, equals("0"))
	p.expect(t, `sum(rserpool_proxy_active_connections)`, 1, equals("1"))
	p.expect(t, `sum(rserpool_proxy_bytes_total{direction="to_client"})`, 1, positive)
	// pe-agent: one backend of EchoPool down.
	p.expect(t, `rserpool_pe_elements{pool="EchoPool"}`, 1, equals("3"))
	p.expect(t, `rserpool_pe_backend_up{pool="EchoPool"}`, 1, equals("2"))
	p.expect(t, `rserpool_pe_registered{pool="EchoPool"}`, 1, equals("2"))
	p.expect(t, `sum(rserpool_pe_health_checks_total{result="fail"})`, 1, positive)

	// The alert rules load, evaluate without error, and the two that the
	// failure matches are pending (or firing); no other one is.
	eventually(t, 60*time.Second, "every rule evaluated without error", func() error {
		var rules struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name, Health, LastError string
					}
				}
			}
		}
		if err := getJSON(p.url+"/api/v1/rules", &rules); err != nil {
			return err
		}
		n := 0
		for _, g := range rules.Data.Groups {
			for _, r := range g.Rules {
				n++
				if r.Health != "ok" {
					return fmt.Errorf("rule %s: health %q %s", r.Name, r.Health, r.LastError)
				}
			}
		}
		if n < 9 {
			return fmt.Errorf("%d rules loaded", n)
		}
		return nil
	})
	eventually(t, 60*time.Second, "alerts of the failure", func() error {
		var alerts struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string
					State  string
				}
			}
		}
		if err := getJSON(p.url+"/api/v1/alerts", &alerts); err != nil {
			return err
		}
		var got []string
		for _, a := range alerts.Data.Alerts {
			got = append(got, a.Labels["alertname"]+"/"+a.Labels["pool"])
		}
		slices.Sort(got)
		want := []string{"RserpoolPEBackendDown/EchoPool", "RserpoolPoolLostElements/EchoPool"}
		if !slices.Equal(got, want) {
			return fmt.Errorf("alerts %v, want %v", got, want)
		}
		return nil
	})

	// Every query of the dashboard is valid PromQL and, but for rates of
	// what did not happen, returns data.
	for _, q := range dashboardQueries(t) {
		expr := strings.NewReplacer("$__rate_interval", "1m", "$pool", ".*", "$listener", ".*").Replace(q)
		if strings.HasPrefix(expr, "label_values(") {
			continue // a Grafana function: its metric is checked by checkMetricNames
		}
		if _, err := p.query(expr); err != nil {
			t.Errorf("dashboard query %q: %v", q, err)
		}
	}
}

// dashboardQueries returns every query of the Grafana dashboard: panel
// targets and template variables.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("grafana/rserpool.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Type  string
				Query json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana/rserpool.json: %v", err)
	}
	var out []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("dashboard panel %q has a target without a query", p.Title)
			}
			out = append(out, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("dashboard variable query: %v", err)
		}
		out = append(out, q.Query)
	}
	if len(out) < 20 {
		t.Fatalf("only %d dashboard queries", len(out))
	}
	return out
}

// ruleExprs returns the expressions of the alert rules (their "expr:"
// values, one line or a block).
func ruleExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("prometheus/rserpool.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "expr:") {
			continue
		}
		v := strings.TrimSpace(strings.TrimPrefix(l, "expr:"))
		if v != "|" {
			out = append(out, v)
			continue
		}
		indent := -1
		var block []string
		for i+1 < len(lines) {
			next := lines[i+1]
			ind := len(next) - len(strings.TrimLeft(next, " "))
			if strings.TrimSpace(next) != "" && (indent >= 0 && ind < indent || indent < 0 && ind <= len(lines[i])-len(strings.TrimLeft(lines[i], " "))) {
				break
			}
			if indent < 0 {
				indent = ind
			}
			block = append(block, strings.TrimSpace(next))
			i++
		}
		out = append(out, strings.Join(block, " "))
	}
	return out
}

var metricName = regexp.MustCompile(`\brserpool_[a-z0-9_]+`)

// checkMetricNames: every rserpool_ metric that the dashboard and the
// alert rules name is in the /metrics output of a running daemon.
func checkMetricNames(t *testing.T, s *stack) {
	exported := map[string]bool{}
	for _, admin := range []string{s.regs[0].admin, s.regs[1].admin, s.agentAdm, s.proxyAdm} {
		for _, line := range strings.Split(getText(t, "http://"+admin+"/metrics"), "\n") {
			if strings.HasPrefix(line, "#") || line == "" {
				continue
			}
			exported[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
		}
	}
	check := func(what string, exprs []string) {
		for _, e := range exprs {
			names := metricName.FindAllString(e, -1)
			if len(names) == 0 && !strings.Contains(e, "up{") {
				t.Errorf("%s %q names no rserpool metric", what, e)
			}
			for _, n := range names {
				if !exported[n] {
					t.Errorf("%s %q: no daemon exports %s", what, e, n)
				}
			}
		}
	}
	check("dashboard query", dashboardQueries(t))
	rules := ruleExprs(t)
	if len(rules) != 9 {
		t.Errorf("%d rule expressions read, want 9: %q", len(rules), rules)
	}
	check("alert rule", rules)
}
