package transport

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// MulticastSender sends datagrams (ASAP Server Announces, ENRP Presence) to
// one multicast group. Send is safe for concurrent use.
type MulticastSender struct {
	pc  net.PacketConn
	dst *net.UDPAddr
}

// resolveGroup parses "239.0.0.50:3863" or "[ff02::1:3]:3863" and the
// optional interface name ("" lets the kernel choose by its routes).
func resolveGroup(group, iface string) (*net.UDPAddr, *net.Interface, error) {
	ap, err := netip.ParseAddrPort(group)
	if err != nil {
		return nil, nil, fmt.Errorf("transport: multicast group %q: %w", group, err)
	}
	if !ap.Addr().IsMulticast() {
		return nil, nil, fmt.Errorf("transport: %q is not a multicast address", group)
	}
	var ifi *net.Interface
	if iface != "" {
		if ifi, err = net.InterfaceByName(iface); err != nil {
			return nil, nil, fmt.Errorf("transport: multicast interface %q: %w", iface, err)
		}
	}
	return net.UDPAddrFromAddrPort(ap), ifi, nil
}

// NewMulticastSender opens a UDP socket sending to group ("239.0.0.50:3863")
// out of interface iface ("" = chosen by the routing table) with the given
// TTL (hop limit for IPv6); loopback controls whether receivers on this host
// get the datagrams too.
func NewMulticastSender(group, iface string, ttl int, loopback bool) (*MulticastSender, error) {
	dst, ifi, err := resolveGroup(group, iface)
	if err != nil {
		return nil, err
	}
	if dst.IP.To4() != nil {
		pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			return nil, fmt.Errorf("transport: multicast sender: %w", err)
		}
		p := ipv4.NewPacketConn(pc)
		err = p.SetMulticastTTL(ttl)
		if err == nil {
			err = p.SetMulticastLoopback(loopback)
		}
		if err == nil && ifi != nil {
			err = p.SetMulticastInterface(ifi)
		}
		if err != nil {
			pc.Close()
			return nil, fmt.Errorf("transport: multicast sender %s: %w", group, err)
		}
		return &MulticastSender{pc: pc, dst: dst}, nil
	}
	pc, err := net.ListenPacket("udp6", "[::]:0")
	if err != nil {
		return nil, fmt.Errorf("transport: multicast sender: %w", err)
	}
	p := ipv6.NewPacketConn(pc)
	err = p.SetMulticastHopLimit(ttl)
	if err == nil {
		err = p.SetMulticastLoopback(loopback)
	}
	if err == nil && ifi != nil {
		err = p.SetMulticastInterface(ifi)
	}
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("transport: multicast sender %s: %w", group, err)
	}
	return &MulticastSender{pc: pc, dst: dst}, nil
}

// Send sends b as one datagram to the group.
func (s *MulticastSender) Send(b []byte) error {
	if _, err := s.pc.WriteTo(b, s.dst); err != nil {
		return fmt.Errorf("transport: multicast send to %s: %w", s.dst, err)
	}
	return nil
}

// LocalAddr returns the sender's own address (the source of its datagrams).
func (s *MulticastSender) LocalAddr() net.Addr { return s.pc.LocalAddr() }

// Close closes the socket.
func (s *MulticastSender) Close() error { return s.pc.Close() }

// MulticastReceiver receives the datagrams of one multicast group. Several
// receivers, in one or several processes, may listen to the same group and
// port: each gets a copy.
type MulticastReceiver struct {
	pc *net.UDPConn
}

// ListenMulticast binds to group's address and port with SO_REUSEADDR and
// joins the group on interface iface ("" = chosen by the routing table).
// Port 0 picks a free port (see LocalAddr).
func ListenMulticast(group, iface string) (*MulticastReceiver, error) {
	gaddr, ifi, err := resolveGroup(group, iface)
	if err != nil {
		return nil, err
	}
	network := "udp6"
	if gaddr.IP.To4() != nil {
		network = "udp4"
	}
	lc := net.ListenConfig{Control: reuseAddr}
	pc, err := lc.ListenPacket(context.Background(), network, gaddr.String())
	if err != nil {
		return nil, fmt.Errorf("transport: multicast listen %s: %w", group, err)
	}
	join := &net.UDPAddr{IP: gaddr.IP}
	if network == "udp4" {
		err = ipv4.NewPacketConn(pc).JoinGroup(ifi, join)
	} else {
		err = ipv6.NewPacketConn(pc).JoinGroup(ifi, join)
	}
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("transport: multicast join %s on %q: %w", group, iface, err)
	}
	return &MulticastReceiver{pc: pc.(*net.UDPConn)}, nil
}

// ReadFrom reads one datagram into buf (a longer datagram is truncated) and
// returns its source. It unblocks with an error when the receiver is closed.
func (r *MulticastReceiver) ReadFrom(buf []byte) (n int, src netip.AddrPort, err error) {
	n, src, err = r.pc.ReadFromUDPAddrPort(buf)
	return n, netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), err
}

// LocalAddr returns the bound group address and port.
func (r *MulticastReceiver) LocalAddr() net.Addr { return r.pc.LocalAddr() }

// Close leaves the group and closes the socket.
func (r *MulticastReceiver) Close() error { return r.pc.Close() }
