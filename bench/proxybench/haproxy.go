package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"text/template"
)

// haproxyConfig is HAProxy in plain TCP mode in front of one backend, with
// one thread per CPU (its default) stated explicitly.
var haproxyConfig = template.Must(template.New("haproxy").Parse(`global
    nbthread {{.Threads}}
    maxconn {{.MaxConn}}

defaults
    mode tcp
    timeout connect 5s
    timeout client {{.Timeout}}
    timeout server {{.Timeout}}

frontend bench
    bind {{.Listen}}
    default_backend backend

backend backend
    server s1 {{.Backend}}
`))

type haproxyParams struct {
	Threads         int
	Listen, Backend string
	MaxConn         int    // zero means 4096
	Timeout         string // client and server inactivity timeout; empty means 60s
}

func renderHAProxy(p haproxyParams) ([]byte, error) {
	if p.MaxConn == 0 {
		p.MaxConn = 4096
	}
	if p.Timeout == "" {
		p.Timeout = "60s"
	}
	var b bytes.Buffer
	err := haproxyConfig.Execute(&b, p)
	return b.Bytes(), err
}

// findHAProxy returns the haproxy binary, installing the Debian package with
// apt-get when it is missing and the harness runs as root.
func findHAProxy(ctx context.Context, log *slog.Logger, name string) (string, error) {
	if path, err := lookHAProxy(name); err == nil {
		return path, nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("haproxy not found; install it (apt-get install haproxy) or leave it out with -only direct,proxy")
	}
	log.Info("haproxy not found; installing the Debian package")
	for _, args := range [][]string{
		{"apt-get", "update"},
		{"apt-get", "install", "-y", "--no-install-recommends", "haproxy"},
	} {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	return lookHAProxy(name)
}

func lookHAProxy(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	if name == "haproxy" { // root's PATH has it; other users' may not
		if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
			return "/usr/sbin/haproxy", nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}
