package hostile

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var (
	longFlag   = flag.Bool("hostile.long", false, "long mode: bigger floods and every handle length (also RSERPOOL_HOSTILE=long)")
	reportFlag = flag.String("hostile.report", "", "write the figures of every attack to `file` (.md: markdown tables, else JSON; also RSERPOOL_HOSTILE_REPORT)")
)

// Environment of a test binary re-executed by the suite.
const (
	envMode        = "RSERPOOL_HOSTILE"         // "long" selects the long mode
	envReport      = "RSERPOOL_HOSTILE_REPORT"  // report file, as -hostile.report
	envBin         = "RSERPOOL_HOSTILE_BIN"     // the rserpool binary, built by the parent
	envNetns       = "RSERPOOL_HOSTILE_NETNS"   // name of the test re-run in a network namespace
	envChildReport = "RSERPOOL_HOSTILE_RECORDS" // where a re-run test writes its records (JSON lines)
)

// rserpoolBin is the binary under attack, built once by TestMain.
var rserpoolBin string

func TestMain(m *testing.M) {
	flag.Parse()
	raiseFDLimit(40000)
	code := func() int {
		if bin := os.Getenv(envBin); bin != "" {
			rserpoolBin = bin
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "hostile")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		rserpoolBin = filepath.Join(dir, "rserpool")
		if out, err := exec.Command("go", "build", "-o", rserpoolBin, "../cmd/rserpool").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build ./cmd/rserpool: %v\n%s", err, out)
			return 1
		}
		code := m.Run()
		if err := writeReport(); err != nil {
			fmt.Fprintln(os.Stderr, "hostile report:", err)
			code = 1
		}
		return code
	}()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// raiseFDLimit raises RLIMIT_NOFILE to at most n (and the hard limit), so
// that the slowloris attacks can hold thousands of connections. The
// daemons inherit the limit.
func raiseFDLimit(n uint64) {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return
	}
	if l.Max < n && os.Geteuid() == 0 {
		l.Max = n
	}
	l.Cur = min(n, l.Max)
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// fdLimit returns the current soft RLIMIT_NOFILE.
func fdLimit() int {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 1024
	}
	return int(l.Cur)
}

func long() bool { return *longFlag || os.Getenv(envMode) == "long" }

// scale is the size of every attack in one mode.
type scale struct {
	Slowloris     int           // stalled connections per port
	ConnFlood     int           // connections opened against a max_connections limit
	MaxConns      int           // the limit configured for the flood
	RegFlood      int           // pool elements registered from one source
	Mutations     int           // mutations per RSPLIB vector and port
	HandleAll     int           // every handle length 0..HandleAll is sent
	HandleStep    int           // above HandleAll, one length in HandleStep up to 70000
	Announces     int           // fake registrars announced by multicast
	PresenceFlood int           // ENRP Presences from distinct fake server IDs
	HTTPRequests  int           // garbage and oversized admin requests per daemon
	Hold          time.Duration // how long stalled connections are held
}

func currentScale() scale {
	if long() {
		return scale{Slowloris: 8000, ConnFlood: 8000, MaxConns: 2000, RegFlood: 50000, Mutations: 400,
			HandleAll: 70000, HandleStep: 1, Announces: 50000, PresenceFlood: 50000, HTTPRequests: 5000, Hold: 10 * time.Second}
	}
	return scale{Slowloris: 2000, ConnFlood: 1500, MaxConns: 500, RegFlood: 10000, Mutations: 25,
		HandleAll: 600, HandleStep: 997, Announces: 5000, PresenceFlood: 5000, HTTPRequests: 200, Hold: time.Second}
}

// record holds the figures of one attack on one daemon.
type record struct {
	Daemon      string  `json:"daemon"`
	Attack      string  `json:"attack"`
	Sent        int64   `json:"sent"`
	Unit        string  `json:"unit"`
	RSSBeforeKB int64   `json:"rss_before_kb"`
	RSSAfterKB  int64   `json:"rss_after_kb"`
	P99ms       float64 `json:"p99_ms"`
	Probes      int     `json:"probes"`
	ProbeFails  int     `json:"probe_failures"`
	LogLines    int     `json:"log_lines"`
	Suppressed  int     `json:"log_suppressed"`
	Seconds     float64 `json:"seconds"`
	Outcome     string  `json:"outcome"`
}

var (
	recordsMu sync.Mutex
	records   []record
)

func addRecord(r record) {
	recordsMu.Lock()
	defer recordsMu.Unlock()
	records = append(records, r)
	if f := os.Getenv(envChildReport); f != "" {
		b, _ := json.Marshal(r)
		if fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fh.Write(append(b, '\n'))
			fh.Close()
		}
	}
}

// mergeChildRecords adds the records a re-executed test wrote to path.
func mergeChildRecords(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r record
		if json.Unmarshal([]byte(line), &r) == nil && r.Daemon != "" {
			recordsMu.Lock()
			records = append(records, r)
			recordsMu.Unlock()
		}
	}
}

func reportPath() string {
	if *reportFlag != "" {
		return *reportFlag
	}
	return os.Getenv(envReport)
}

// writeReport writes the records to the report file, if one was asked for.
func writeReport() error {
	path := reportPath()
	if path == "" {
		return nil
	}
	recordsMu.Lock()
	rs := append([]record(nil), records...)
	recordsMu.Unlock()
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].Daemon < rs[j].Daemon })
	if !strings.HasSuffix(path, ".md") {
		b, err := json.MarshalIndent(struct {
			Mode    string   `json:"mode"`
			Records []record `json:"records"`
		}{modeName(), rs}, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(path, append(b, '\n'), 0o644)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Mode: %s. Generated by the hostile suite (go test ./hostile/).\n", modeName())
	daemon := ""
	for _, r := range rs {
		if r.Daemon != daemon {
			daemon = r.Daemon
			fmt.Fprintf(&b, "\n### %s\n\n", daemon)
			b.WriteString("| attack | sent | RSS before → after (MiB) | p99 legit (ms) | probes (failed) | log lines (held back) | s | outcome |\n")
			b.WriteString("|---|---:|---|---:|---:|---:|---:|---|\n")
		}
		fmt.Fprintf(&b, "| %s | %d %s | %.1f → %.1f | %.2f | %d (%d) | %d (%d) | %.1f | %s |\n",
			r.Attack, r.Sent, r.Unit, float64(r.RSSBeforeKB)/1024, float64(r.RSSAfterKB)/1024,
			r.P99ms, r.Probes, r.ProbeFails, r.LogLines, r.Suppressed, r.Seconds, r.Outcome)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func modeName() string {
	if long() {
		return "long"
	}
	return "short"
}
