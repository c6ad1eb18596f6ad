package testhost

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestNetworkHub plays three QEMUs on the hub's sockets: a frame from one
// port reaches every other and not its sender, a port that left gets
// nothing and its sockets are gone, and Close removes the directory.
func TestNetworkHub(t *testing.T) {
	n, err := NewNetwork(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var ports []*port
	var vms []*net.UnixConn
	for i := 0; i < 3; i++ {
		p, err := n.join()
		if err != nil {
			t.Fatal(err)
		}
		vm, err := net.ListenUnixgram("unixgram", p.vm)
		if err != nil {
			t.Fatal(err)
		}
		defer vm.Close()
		ports, vms = append(ports, p), append(vms, vm)
	}
	for i, want := range []string{"10.77.0.1", "10.77.0.2", "10.77.0.3"} {
		if got := ports[i].addr.String(); got != want {
			t.Errorf("port %d: address %s, want %s", i, got, want)
		}
	}
	if ports[0].mac == ports[1].mac {
		t.Errorf("ports 0 and 1 share MAC %s", ports[0].mac)
	}

	send := func(from int, frame []byte) {
		t.Helper()
		if _, err := vms[from].WriteToUnix(frame, ports[from].hub.LocalAddr().(*net.UnixAddr)); err != nil {
			t.Fatal(err)
		}
	}
	// recv returns the frame vm i got within d, nil for none.
	recv := func(i int, d time.Duration) []byte {
		t.Helper()
		buf := make([]byte, 2048)
		vms[i].SetReadDeadline(time.Now().Add(d))
		k, _, err := vms[i].ReadFromUnix(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return buf[:k]
	}

	frame := []byte("\xff\xff\xff\xff\xff\xff\x52\x54\x00\x77\x00\x01\x08\x06 an ARP who-has")
	send(0, frame)
	for _, i := range []int{1, 2} {
		if got := recv(i, 2*time.Second); !bytes.Equal(got, frame) {
			t.Errorf("vm %d got %q, want the frame", i, got)
		}
	}
	if got := recv(0, 200*time.Millisecond); got != nil {
		t.Errorf("the sender got its own frame back: %q", got)
	}

	ports[2].leave()
	for _, f := range []string{ports[2].vm.Name, ports[2].hub.LocalAddr().String()} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s still there after leave (%v)", f, err)
		}
	}
	send(1, []byte("second"))
	if got := recv(0, 2*time.Second); string(got) != "second" {
		t.Errorf("vm 0 got %q, want second", got)
	}
	if got := recv(2, 200*time.Millisecond); got != nil {
		t.Errorf("a port that left got %q", got)
	}

	p, err := n.join()
	if err != nil {
		t.Fatal(err)
	}
	if p.addr.String() != "10.77.0.4" {
		t.Errorf("a port after one left got %s, want 10.77.0.4 (addresses are not reused)", p.addr)
	}
	dir := n.Dir()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Close left %s (%v)", dir, err)
	}
	if _, err := n.join(); err == nil {
		t.Error("join after Close: no error")
	}
}
