package sdnotify

import (
	"path/filepath"
	"testing"
	"time"
)

func TestNotifyRoundTrip(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "notify"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", l.Path())
	if err := Notify("STATUS=starting"); err != nil {
		t.Fatal(err)
	}
	if err := Notify(Ready, "ADMIN=127.0.0.1:1", "LISTENERS=a=b c=d"); err != nil {
		t.Fatal(err)
	}
	vars, err := l.WaitReady(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if vars["ADMIN"] != "127.0.0.1:1" || vars["LISTENERS"] != "a=b c=d" || vars["MAINPID"] == "" {
		t.Fatalf("vars %v", vars)
	}
	if _, err := l.Next(10 * time.Millisecond); err == nil {
		t.Fatal("a third datagram")
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify(Ready); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
}

func TestWaitReadyOrExited(t *testing.T) {
	l, err := Listen(filepath.Join(t.TempDir(), "notify"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	exited := make(chan struct{})
	close(exited)
	if _, err := l.WaitReadyOr(time.Minute, exited); err != ErrExited {
		t.Fatalf("err = %v, want ErrExited", err)
	}
	t.Setenv("NOTIFY_SOCKET", l.Path())
	if err := Notify(Ready); err != nil {
		t.Fatal(err)
	}
	if _, err := l.WaitReadyOr(5*time.Second, make(chan struct{})); err != nil {
		t.Fatalf("a second wait after an exit: %v", err)
	}
}
