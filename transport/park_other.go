//go:build !linux

package transport

// Parker watches idle connections for input without a goroutine each; on
// this system it parks none (Park reports false) and callers keep reading.
type Parker struct{}

// NewParker returns a Parker whose Park always reports false.
func NewParker() (*Parker, error) { return &Parker{}, nil }

// CanPark reports false.
func (p *Parker) CanPark(c Conn) bool { return false }

// Park reports false: the caller goes on with ReadMessage.
func (p *Parker) Park(c Conn, resume func()) bool { return false }

// Close does nothing.
func (p *Parker) Close() error { return nil }

func (c *mapConn) unpark() {}
