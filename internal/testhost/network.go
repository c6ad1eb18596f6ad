package testhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Network is a private Ethernet segment that joins test hosts booted with
// Options.Network: each gets a virtio-net NIC on it and a static IPv4
// address (Host.IP), configured by Boot. Nothing of the machine's own
// network is used: no tap, no bridge, no multicast on the host's
// interfaces, so it needs no set-up, cannot collide with another
// suite's network, and nothing is left when it closes.
//
// Each NIC is a QEMU "-netdev dgram" backend on a pair of unix datagram
// sockets in the network's directory: QEMU's end (vm-N.sock) and the
// network's (hub-N.sock). One datagram is one Ethernet frame. The network
// is a hub in this process: a frame read from one port is written to
// every other. A hub rather than a learning switch because a test
// network has a handful of hosts and flooding them costs nothing worth
// the state. QEMU 7.2's dgram backend is the one that can be wired like
// this; its socket backend's listen/connect joins exactly two hosts, and
// mcast goes through the host's own interfaces.
type Network struct {
	log    *slog.Logger
	dir    string
	prefix netip.Prefix

	mu     sync.Mutex
	ports  []*port // by index; a closed port stays, so indexes (and addresses) are never reused
	closed bool
	wg     sync.WaitGroup
}

// port is one NIC's attachment to the network.
type port struct {
	n    *Network
	idx  int
	hub  *net.UnixConn // the network's end, bound to hub-N.sock
	vm   *net.UnixAddr // QEMU's end
	addr netip.Addr
	mac  string

	left bool // under n.mu: off the network
}

// networkPrefix is the segment's subnet. Private to the segment: the test
// hosts have no other route, so it cannot clash with anything.
var networkPrefix = netip.MustParsePrefix("10.77.0.0/24")

// maxPorts bounds the hosts on one network: one address each in
// networkPrefix, .1 upwards.
const maxPorts = 250

// hubWriteTimeout bounds a write to one port: a datagram to a QEMU whose
// queue is full (a guest that is not reading) blocks. After it the frame
// is dropped, as a switch drops a frame its queue has no room for, so one
// stuck host cannot stop the others' traffic.
const hubWriteTimeout = 100 * time.Millisecond

// NewNetwork makes a network whose sockets live in a new temporary
// directory under dir (default os.TempDir(); keep it short: unix socket
// paths are limited to 107 bytes). Close removes it.
func NewNetwork(dir string, log *slog.Logger) (*Network, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d, err := os.MkdirTemp(dir, "testnet-")
	if err != nil {
		return nil, fmt.Errorf("test network: %w", err)
	}
	return &Network{log: log, dir: d, prefix: networkPrefix}, nil
}

// Dir is the network's directory (its sockets).
func (n *Network) Dir() string { return n.dir }

// Prefix is the network's subnet; hosts get addresses in it from .1 up,
// in the order they joined.
func (n *Network) Prefix() netip.Prefix { return n.prefix }

// join adds a port: the hub's socket is bound before QEMU starts, so
// QEMU's first frame has somewhere to go.
func (n *Network) join() (*port, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errors.New("test network: closed")
	}
	idx := len(n.ports)
	if idx >= maxPorts {
		return nil, fmt.Errorf("test network %s: full (%d hosts)", n.dir, maxPorts)
	}
	hubPath := filepath.Join(n.dir, fmt.Sprintf("hub-%d.sock", idx))
	hub, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: hubPath, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("test network: port %d: %w", idx, err)
	}
	addr := n.prefix.Addr().As4()
	addr[3] = byte(idx + 1)
	p := &port{
		n:    n,
		idx:  idx,
		hub:  hub,
		vm:   &net.UnixAddr{Name: filepath.Join(n.dir, fmt.Sprintf("vm-%d.sock", idx)), Net: "unixgram"},
		addr: netip.AddrFrom4(addr),
		// 52:54:00 is QEMU's own prefix; the 4th byte is this
		// package's, the last the port.
		mac: fmt.Sprintf("52:54:00:77:00:%02x", idx+1),
	}
	n.ports = append(n.ports, p)
	n.wg.Add(1)
	go p.forward()
	n.log.Debug("test network: port added", "dir", n.dir, "port", idx, "addr", p.addr, "mac", p.mac)
	return p, nil
}

// qemuArgs wires a NIC to the port.
func (p *port) qemuArgs() []string {
	return []string{
		"-netdev", "dgram,id=net0,local.type=unix,local.path=" + p.vm.Name + ",remote.type=unix,remote.path=" + p.hub.LocalAddr().String(),
		"-device", "virtio-net-pci,netdev=net0,mac=" + p.mac,
	}
}

// forward copies every frame QEMU sends on this port to the other ports.
func (p *port) forward() {
	defer p.n.wg.Done()
	buf := make([]byte, 65536)
	for {
		k, _, err := p.hub.ReadFromUnix(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.n.log.Warn("test network: read", "port", p.idx, "err", err)
			}
			return
		}
		for _, q := range p.n.others(p) {
			// An error is a host not up yet or gone (its socket not
			// there, ECONNREFUSED) or not reading (the deadline): the
			// frame is lost, as on a wire nobody listens to. TCP
			// resends.
			_ = q.hub.SetWriteDeadline(time.Now().Add(hubWriteTimeout))
			_, _ = q.hub.WriteToUnix(buf[:k], q.vm)
		}
	}
}

// others are the open ports other than p.
func (n *Network) others(p *port) []*port {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*port, 0, len(n.ports))
	for _, q := range n.ports {
		if q != p && !q.left {
			out = append(out, q)
		}
	}
	return out
}

// leave takes the port off the network and removes its sockets (its
// host's QEMU is gone by then). The index stays taken.
func (p *port) leave() {
	p.n.mu.Lock()
	left := p.left
	p.left = true
	p.n.mu.Unlock()
	if left {
		return
	}
	p.hub.Close()
	os.Remove(p.hub.LocalAddr().String())
	os.Remove(p.vm.Name)
}

// Close takes every port off the network, waits for the hub to stop and
// removes the directory. Hosts still up lose their link, nothing else.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	ports := append([]*port(nil), n.ports...)
	n.mu.Unlock()
	for _, p := range ports {
		p.leave()
	}
	n.wg.Wait()
	if err := os.RemoveAll(n.dir); err != nil {
		return fmt.Errorf("test network: remove %s: %w", n.dir, err)
	}
	return nil
}

// netUp configures the NIC inside, found by its MAC (its name depends on
// the init: eth0 without udev, enp0s6 with systemd's udevd), brings up
// loopback too (a networked host's programs expect 127.0.0.1), and waits
// for the carrier, so a host is reachable once Boot returns.
const netUp = `
modprobe virtio_net
# systemd's udevd may rename the NIC; wait for it so the name is final.
if [ -e /run/udev/control ]; then udevadm settle; fi
IF=
for i in $(seq 200); do
	for d in /sys/class/net/*; do
		[ "$(cat "$d/address")" = "$MAC" ] && IF=${d##*/}
	done
	[ -n "$IF" ] && break
	sleep 0.05
done
if [ -z "$IF" ]; then echo "no network interface with MAC $MAC" >&2; exit 1; fi
ip link set lo up
ip link set "$IF" up
ip addr add "$ADDR" dev "$IF"
# The carrier comes a moment after "up" (the kernel's linkwatch, seen at
# ~1 s: NO-CARRIER, operstate down); until then the NIC sends nothing.
for i in $(seq 200); do
	[ "$(cat "/sys/class/net/$IF/operstate")" = up ] && { echo "$IF"; exit 0; }
	sleep 0.05
done
echo "$IF: no carrier 10 s after link up ($(cat "/sys/class/net/$IF/operstate"))" >&2
exit 1
`

// setupNetwork runs netUp for the host's port.
func (h *Host) setupNetwork(ctx context.Context) error {
	p := h.port
	out, err := h.ShEnv(ctx, []string{"MAC=" + p.mac, "ADDR=" + netip.PrefixFrom(p.addr, p.n.prefix.Bits()).String()}, netUp)
	if err != nil {
		return fmt.Errorf("test host: network %s: %w", p.addr, err)
	}
	h.log.Debug("test host network up", "if", out, "addr", p.addr, "mac", p.mac)
	return nil
}

// IP is the host's address on Options.Network; the zero Addr without one.
func (h *Host) IP() netip.Addr {
	if h.port == nil {
		return netip.Addr{}
	}
	return h.port.addr
}
