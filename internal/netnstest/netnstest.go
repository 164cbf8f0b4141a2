// Package netnstest runs a test in a network namespace of its own, so that
// it can add addresses, routes and packet filters without touching the
// host: the test binary re-executes itself (only the calling test) with
// CLONE_NEWNET.
//
// # Usage
//
//	func TestX(t *testing.T) {
//		if !netnstest.Run(t, []string{"ip", "link", "set", "lo", "up"}) {
//			return // the parent: the child's result is reported
//		}
//		// runs inside the namespace
//	}
//
// # Limitations
//
// It needs root and the commands it is given (ip, nft, ...); without them
// the test is skipped, saying why. The namespace ends with the child.
package netnstest

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// env marks a test binary re-executed inside its own network namespace.
const env = "RSERPOOL_NETNS_TEST"

// Run re-runs the calling test in a fresh network namespace, after running
// each setup command there, and reports the child's result. It returns
// true in the child, which then runs the test body, and false in the
// parent. The commands' programs must exist (else the test is skipped).
func Run(t *testing.T, setup ...[]string) bool {
	t.Helper()
	if os.Getenv(env) == t.Name() {
		for _, args := range setup {
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		return true
	}
	// CI (CI=true) runs as root with the tools installed by .ci/run: a
	// missing one there is a failure, not a quiet skip.
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("needs root to create a network namespace")
	}
	for _, args := range setup {
		if _, err := exec.LookPath(args[0]); err != nil {
			skip("needs %s to configure the network namespace", args[0])
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("test in a network namespace: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("test in a network namespace did not pass:\n%s", out)
	}
	t.Logf("ran in a fresh network namespace:\n%s", out)
	return false
}
