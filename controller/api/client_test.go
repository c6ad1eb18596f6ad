package api

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// The client's dialer seam: every connection it makes goes through Dial.
// Its transport is built once, so three requests dial once and share the
// connection.
func TestClientDialsOnceForManyRequests(t *testing.T) {
	_, sock := serve(t, &fakeBackend{}, nil)
	var dials atomic.Int32
	c := &Client{Socket: sock, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		if network != "unix" || addr != sock {
			t.Errorf("dial %s %s, want unix %s", network, addr, sock)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	ctx := context.Background()
	for i := range 3 {
		st, err := c.Status(ctx)
		if err != nil || st.Syncs != 7 {
			t.Fatalf("request %d: %+v, %v", i, st, err)
		}
	}
	if _, err := c.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials for 4 requests, want 1 (the connection reused)", n)
	}
}

// A failed dial says what to do, whatever the dialer: the errors a unix
// socket connect gives, as net.Dialer wraps them.
func TestClientDialErrorsSayWhatToDo(t *testing.T) {
	for _, c := range []struct {
		errno syscall.Errno
		want  string
		is    error
	}{
		{syscall.ENOENT, "systemctl start usbctld", ErrNotRunning},
		{syscall.ECONNREFUSED, "systemctl start usbctld", ErrNotRunning},
		{syscall.EACCES, "run as root, or as a member of the socket's group", nil},
		{syscall.ETIMEDOUT, "connect to usbctld at /run/x.sock", nil},
	} {
		cl := &Client{Socket: "/run/x.sock", Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", c.errno)}
		}}
		_, err := cl.Status(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.want) || c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%v: got %v, want it to say %q", c.errno, err, c.want)
		}
	}
}
