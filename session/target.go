package session

import (
	"strings"

	"github.com/rserpool/rserpool/pucache"
	"github.com/rserpool/rserpool/wire"
)

// target is one pool element a session may connect to: from the pool
// user's cache or from a business card.
type target struct {
	pe      PE
	control bool // the PE runs an ASAP control channel
	card    bool // taken from a business card
}

// usable tells whether a session can talk to the PE at all: over TCP only
// a PE that speaks the TCP mapping (Transport Use "data plus control") has
// a data channel that carries message boundaries and PPIDs; over SCTP every
// PE does, and the control channel is used only if the PE registered it.
func (t target) usable() bool {
	return t.control || strings.HasPrefix(t.pe.Addr, "sctp://")
}

func targetFromElement(pool wire.PoolHandle, e pucache.Element) target {
	return target{
		pe:      PE{Pool: pool, ID: e.ID, Addr: e.Network + "://" + e.Addr},
		control: e.Use == wire.UseDataAndControl,
	}
}

// targetFromCard converts one Pool Element parameter of a business card.
// ok is false for a PE without an ID or a TCP or SCTP user transport a
// session can dial.
func targetFromCard(pool wire.PoolHandle, pe *wire.PoolElement) (target, bool) {
	e, ok := pucache.ElementFromWire(*pe)
	if !ok || e.ID == 0 {
		return target{}, false
	}
	t := targetFromElement(pool, e)
	t.card = true
	return t, true
}

// cardTargets returns up to max dialable PEs of a business card, in the
// card's order, without repeated IDs.
func cardTargets(bc *wire.BusinessCard, max int) []target {
	var out []target
	for i := range bc.Elements {
		if len(out) == max {
			break
		}
		t, ok := targetFromCard(bc.PoolHandle, &bc.Elements[i])
		if !ok || containsPE(out, t.pe) {
			continue
		}
		out = append(out, t)
	}
	return out
}

func containsPE(ts []target, pe PE) bool {
	for _, t := range ts {
		if t.pe.ID == pe.ID && t.pe.Pool == pe.Pool {
			return true
		}
	}
	return false
}
