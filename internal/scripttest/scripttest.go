// Package scripttest runs scenario tests written as data (STYLE.md rule 22,
// after etcd-io/raft's interaction tests): a file holds blocks of a command
// line, a "----" line and the expected output lines up to a blank line;
// lines starting with # (and blank lines) between blocks are comments.
// Run with -update to rewrite the files with the actual output.
//
// # Usage
//
//	func TestScripts(t *testing.T) {
//		scripttest.RunFiles(t, "testdata/*.txt", func(t *testing.T) func(cmd string) []string {
//			s := newScript(t)
//			return s.exec
//		})
//	}
//
// # Concurrency
//
// RunFiles runs the files one after another, each in a subtest.
package scripttest

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var update = flag.Bool("update", false, "rewrite the scripts in testdata with the actual output")

// RunFiles runs every file matching pattern as a subtest named after it.
// start is called once per file and returns the function that executes one
// command and returns its output lines.
func RunFiles(t *testing.T, pattern string, start func(t *testing.T) func(cmd string) []string) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts match %s (%v)", pattern, err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { Run(t, f, start(t)) })
	}
}

// Run runs one script file through exec, comparing each command's output
// with the expected lines (or writing them with -update).
func Run(t *testing.T, file string, exec func(cmd string) []string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var out strings.Builder
	for i := 0; i < len(lines); {
		l := lines[i]
		if l == "" || strings.HasPrefix(l, "#") {
			out.WriteString(l + "\n")
			i++
			continue
		}
		cmd := l
		i++
		if i >= len(lines) || lines[i] != "----" {
			t.Fatalf("%s:%d: command without ---- line", file, i)
		}
		i++
		var want []string
		for i < len(lines) && lines[i] != "" {
			want = append(want, lines[i])
			i++
		}
		got := exec(cmd)
		out.WriteString(cmd + "\n----\n")
		for _, g := range got {
			out.WriteString(g + "\n")
		}
		if i < len(lines) {
			out.WriteString("\n")
			i++
		}
		if !*update {
			if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("%s: %q: output mismatch (-want +got):\n%s", file, cmd, d)
			}
		}
	}
	if *update {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Num parses a script's number (decimal, 0x hexadecimal) of at most 32
// bits, failing the test otherwise.
func Num(t testing.TB, v string) uint32 {
	t.Helper()
	x, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		t.Fatalf("bad number %q", v)
	}
	return uint32(x)
}

// KV splits key=value arguments into a map (a bare word maps to "").
func KV(args []string) map[string]string {
	m := make(map[string]string, len(args))
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		m[k] = v
	}
	return m
}
