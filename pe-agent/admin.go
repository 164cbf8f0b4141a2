package peagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/rserpool/rserpool/internal/admin"
	"github.com/rserpool/rserpool/wire"
)

// adminHandler serves the status page (/), /metrics, /healthz (200 when
// every healthy backend is registered) and /status (JSON, one entry per
// element).
func (a *Agent) adminHandler() http.Handler {
	mux := admin.Mux(admin.Gatherer(a.reg), func() error {
		if !a.Ready() {
			return errors.New("not registered")
		}
		return nil
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		type status struct {
			Pool       wire.PoolHandle `json:"pool"`
			Backend    string          `json:"backend"`
			ID         string          `json:"id"`
			Healthy    bool            `json:"healthy"`
			Registered bool            `json:"registered"`
			Load       uint32          `json:"load"`
			Home       string          `json:"home,omitempty"`
			HomeAddr   string          `json:"home_addr,omitempty"`
			LastError  string          `json:"last_error,omitempty"`
		}
		out := []status{}
		for _, s := range a.Status() {
			st := status{Pool: s.Pool, Backend: s.Backend, ID: peID(s.ID), Healthy: s.Healthy,
				Registered: s.Registered, Load: s.Load}
			if s.Home != 0 {
				st.Home = fmt.Sprintf("0x%08x", s.Home)
			}
			if !s.HomeAddr.IsZero() {
				st.HomeAddr = s.HomeAddr.String()
			}
			if s.LastErr != nil {
				st.LastError = s.LastErr.Error()
			}
			out = append(out, st)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	})
	if page, err := a.statusPage(); err != nil {
		a.log.Error("no status page", "err", err)
	} else {
		page.Handle(mux)
	}
	return mux
}
