package registrar

import (
	"net/http"
	"testing"
	"time"
)

// TestAdminSlowClients: clients that open the admin port and send half a
// request header (slowloris) are closed after the header timeout, and
// while they hold every slot further clients wait instead of piling up;
// a scrape is served once they are shed.
func TestAdminSlowClients(t *testing.T) {
	h := start(t, testConfig())
	admin := h.r.AdminAddr()
	var slow []*rawClient
	for i := 0; i < maxAdminConns+8; i++ {
		rc := rawDial(t, "127.0.0.1", admin)
		if err := rc.write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n")); err != nil {
			t.Fatal(err)
		}
		slow = append(slow, rc)
	}
	client := &http.Client{Timeout: adminReadHeaderTimeout + 10*time.Second}
	resp, err := client.Get("http://" + admin + "/healthz")
	if err != nil {
		t.Fatalf("scrape while slow clients hold the admin port: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !slow[0].waitClosedByPeer(adminReadHeaderTimeout + 5*time.Second) {
		t.Error("a client that never finished its header is still connected")
	}
}
