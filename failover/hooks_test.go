package failover_test

import (
	"sync"
	"testing"

	"github.com/rserpool/rserpool/failover"
	"github.com/rserpool/rserpool/pucache"
)

// TestHooksSeeEveryPE: OnFailure is called for each dead PE tried and
// OnConnect for the one the connection went to.
func TestHooksSeeEveryPE(t *testing.T) {
	live := startBackend(t, answer("B"))
	p, _ := pool(t, deadAddr(t), deadAddr(t), live.addr())
	d := failover.NewDialer(p, failover.Config{Attempts: 4})
	var mu sync.Mutex
	var failed, connected []uint32
	d.OnFailure = func(e pucache.Element, _ error) { mu.Lock(); failed = append(failed, e.ID); mu.Unlock() }
	d.OnConnect = func(e pucache.Element) { mu.Lock(); connected = append(connected, e.ID); mu.Unlock() }
	for range 3 {
		var tried failover.Tried
		conn, e, err := d.Dial(ctxT(t), nil, &tried)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if e.ID != 3 {
			t.Fatalf("connected to PE %d", e.ID)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(connected) != 3 || connected[0] != 3 || connected[1] != 3 || connected[2] != 3 {
		t.Fatalf("OnConnect saw %v, want PE 3 three times", connected)
	}
	for _, id := range failed {
		if id == 3 {
			t.Fatalf("OnFailure saw the live PE: %v", failed)
		}
	}
	if len(failed) == 0 {
		t.Fatal("OnFailure saw no dead PE")
	}
}
