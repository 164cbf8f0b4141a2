package regclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/rserpool/rserpool/transport"
	"github.com/rserpool/rserpool/wire"
)

// Defaults of Config's zero fields. The RFC 5352 names are in brackets;
// the RFC's own values are T1 15 s, T5 10 s, RETRAN-MAX 60 s, RSPLIB's
// T1 3 s and a 7.5 s connect timeout: this project uses RSPLIB-like
// values, which keep a failover short.
const (
	DefaultConnectTimeout   = 5 * time.Second  // [T5-Serverhunt], initial
	DefaultRetranMax        = 30 * time.Second // [RETRAN-MAX]
	DefaultRetryInterval    = 2 * time.Second
	DefaultParallel         = 3               // [SH1] at most 3 connection attempts at once
	DefaultRequestTimeout   = 3 * time.Second // [T1-ENRPrequest]
	DefaultMaxRetransmit    = 2               // [MAX-REQUEST-RETRANSMIT]
	DefaultAnnounceLifetime = 5 * time.Second // [T7-ENRPoutdate]
	DefaultMaxLearned       = 64
	DefaultMaxPending       = 4096
)

// MaxParallel is the most connection attempts a hunt runs at once (RFC
// 5352 §3.6 SH1: "MUST NOT exceed 3").
const MaxParallel = 3

// Config configures a Client. Zero fields take the defaults above.
type Config struct {
	// Registrars are the static registrars, tried first, in order. They
	// are never displaced by announced ones.
	Registrars []transport.Addr
	// Transport configures registrar connections (TLS, heartbeats); nil
	// means defaults.
	Transport *transport.Config
	// Dial replaces transport.Dial (tests, a source address); nil means
	// transport.Dial with Transport.
	Dial func(ctx context.Context, a transport.Addr) (transport.Conn, error)

	// ConnectTimeout is the initial T5: a hunt round that brings no
	// connection up within T5 is abandoned and T5 doubles, up to
	// RetranMax (SH5). Zero means 5 s.
	ConnectTimeout time.Duration
	// RetranMax caps the doubling of T5 and of RetryInterval. Zero means
	// 30 s.
	RetranMax time.Duration
	// RetryInterval is the pause after a hunt in which every registrar
	// failed, before the next automatic one; it doubles up to RetranMax
	// and is reset by a connection. A new request or a newly announced
	// registrar starts a hunt at once. Zero means 2 s.
	RetryInterval time.Duration
	// Parallel is how many registrars a hunt tries at once, 1..3. Zero
	// means 3.
	Parallel int
	// HuntStagger is the pause between the starts of a hunt's attempts
	// while the ones under way have neither succeeded nor failed: the
	// registrars are tried in order of preference (the static list first),
	// and each gets this long before the next one is tried as well (up to
	// Parallel at once). A failed attempt is replaced at once. Zero (the
	// default) starts Parallel attempts at once, and the fastest wins.
	HuntStagger time.Duration
	// RequestTimeout is T1: a request not answered within it is re-sent,
	// at another registrar. Zero means 3 s.
	RequestTimeout time.Duration
	// MaxRetransmit is MAX-REQUEST-RETRANSMIT: re-sends after T1 before
	// the request fails with ErrTimeout. Zero means 2; negative means none.
	MaxRetransmit int
	// AnnounceLifetime is T7: a registrar learned from an announce is
	// forgotten when not announced again for this long. Zero means 5 s.
	AnnounceLifetime time.Duration
	// MaxLearned bounds the registrars kept from announces. Zero means 64;
	// negative means none are learned.
	MaxLearned int
	// MaxPending bounds the requests waiting at once; more fail with
	// ErrBusy. Zero means 4096.
	MaxPending int
	// Rebalance, when positive, makes the first static registrar the
	// preferred one (list each agent's nearest or own registrar first to
	// spread PEs over a registrar set). While connected to another
	// registrar, the client checks the preferred one every Rebalance/4 (at
	// least every second): a connection and a Handle Resolution of
	// RebalanceProbe answered within T1. Once it has answered every check
	// for Rebalance plus a random part of up to half of it (so that the
	// clients of a returning registrar do not all move at once), the
	// client moves there: the checked connection becomes the connection
	// (Handler.Up; a pool element registers there), and the old one is
	// closed once the requests pending then are done (at most T1 later).
	// Zero (the default) never moves a working connection.
	Rebalance time.Duration
	// RebalanceProbe is the pool handle the check resolves (a pool
	// element's own pool); any answer, a negative one included, shows
	// that the registrar serves. Empty means "rebalance-probe".
	RebalanceProbe wire.PoolHandle
	// Rand draws the rebalance jitter; nil means randomly seeded.
	Rand *rand.Rand

	// AnnounceGroup, when set, is the multicast group ("239.0.0.50:3863",
	// RSPLIB's) on which the client hears ASAP Server Announces;
	// AnnounceInterface names the interface ("" = the routing table's).
	AnnounceGroup     string
	AnnounceInterface string

	// Handler receives connection events and unsolicited messages; nil
	// ignores them.
	Handler Handler
	// Logger receives events; nil discards them.
	Logger *slog.Logger
}

func (cfg Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.ConnectTimeout, DefaultConnectTimeout)
	def(&cfg.RetranMax, DefaultRetranMax)
	def(&cfg.RetryInterval, DefaultRetryInterval)
	def(&cfg.RequestTimeout, DefaultRequestTimeout)
	def(&cfg.AnnounceLifetime, DefaultAnnounceLifetime)
	cfg.RetranMax = max(cfg.RetranMax, cfg.ConnectTimeout, cfg.RetryInterval)
	if cfg.Parallel <= 0 {
		cfg.Parallel = DefaultParallel
	}
	cfg.Parallel = min(cfg.Parallel, MaxParallel)
	switch {
	case cfg.MaxRetransmit == 0:
		cfg.MaxRetransmit = DefaultMaxRetransmit
	case cfg.MaxRetransmit < 0:
		cfg.MaxRetransmit = 0
	}
	switch {
	case cfg.MaxLearned == 0:
		cfg.MaxLearned = DefaultMaxLearned
	case cfg.MaxLearned < 0:
		cfg.MaxLearned = 0
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RebalanceProbe == "" {
		cfg.RebalanceProbe = "rebalance-probe"
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Dial == nil {
		tc := cfg.Transport
		cfg.Dial = func(ctx context.Context, a transport.Addr) (transport.Conn, error) {
			return transport.Dial(ctx, a, tc)
		}
	}
	return cfg
}

// Errors of requests; test with errors.Is.
var (
	// ErrNoRegistrar: a server hunt found no registrar (none known, or
	// every one failed or did not answer within T5).
	ErrNoRegistrar = errors.New("regclient: no registrar reachable")
	// ErrTimeout: no answer after MaxRetransmit re-sends, T1 each.
	ErrTimeout = errors.New("regclient: registrar did not answer in time (T1)")
	// ErrNotConnected: Link.Send without a connection.
	ErrNotConnected = errors.New("regclient: not connected to a registrar")
	// ErrBusy: MaxPending requests are waiting already.
	ErrBusy = errors.New("regclient: too many pending requests")
	// ErrCancelled: Pending.Cancel was called.
	ErrCancelled = errors.New("regclient: request cancelled")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("regclient: closed")
)

// ErrorReply is a registrar's ASAP_ERROR or ENRP_ERROR in answer to a
// request.
type ErrorReply struct {
	Causes []wire.ErrorCause
}

func (e *ErrorReply) Error() string {
	if len(e.Causes) == 0 {
		return "registrar answered with an error message"
	}
	return fmt.Sprintf("registrar answered with an error message: %v (0x%04x)", e.Causes[0].Code, uint16(e.Causes[0].Code))
}
