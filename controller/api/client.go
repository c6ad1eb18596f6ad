package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/reconcile"
)

// DefaultSocket is where usbctld listens unless told otherwise.
const DefaultSocket = "/run/usbctl/usbctl.sock"

// ErrNotRunning means nothing answers on the control socket.
var ErrNotRunning = errors.New("usbctld is not running")

// HTTPError is an error answer of the daemon.
type HTTPError struct {
	Code    int
	Message string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("usbctld: %s (HTTP %d)", e.Message, e.Code) }

// Client talks to usbctld over its control socket. Set its fields before
// the first request; use it by pointer. Its HTTP transport is built at the
// first request and kept, so later requests reuse the connection (as
// Tailscale's local client does) instead of dialing again.
type Client struct {
	Socket string
	// Dial connects to the socket; nil dials Socket. Tests inject their
	// own.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	once sync.Once
	http *http.Client
}

func (c *Client) httpClient() *http.Client {
	c.once.Do(func() {
		dial := c.Dial
		if dial == nil {
			var d net.Dialer
			dial = d.DialContext
		}
		c.http = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				conn, err := dial(ctx, "unix", c.Socket)
				if err != nil {
					return nil, c.dialError(err)
				}
				return conn, nil
			},
			// One daemon at the other end: one idle connection is all
			// a command or a status watch needs.
			MaxIdleConns: 1,
		}}
	})
	return c.http
}

// dialError turns a failed connect into advice.
func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (nothing listens on %s): start it with systemctl start usbctld", ErrNotRunning, c.Socket)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("permission denied on %s: run as root, or as a member of the socket's group (usbctl for the packaged service, else the one given to usbctld --socket-group)", c.Socket)
	}
	return fmt.Errorf("connect to usbctld at %s: %w", c.Socket, err)
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://usbctld"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			// net/http wraps the dial error in *url.Error.
			return ue.Unwrap()
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer of usbctld: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var ae apiError
		if json.Unmarshal(body, &ae) != nil || ae.Error == "" {
			ae.Error = http.StatusText(resp.StatusCode)
		}
		return &HTTPError{Code: resp.StatusCode, Message: ae.Error}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode answer of usbctld: %w", err)
	}
	return nil
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (controller.Status, error) {
	var st controller.Status
	return st, c.do(ctx, http.MethodGet, "/v1/status", &st)
}

// Plan returns what the daemon would do now, changing nothing.
func (c *Client) Plan(ctx context.Context) (reconcile.Result, error) {
	var r reconcile.Result
	return r, c.do(ctx, http.MethodGet, "/v1/plan", &r)
}

// Reload asks the daemon to re-read its config.
func (c *Client) Reload(ctx context.Context) (ReloadResult, error) {
	var r ReloadResult
	return r, c.do(ctx, http.MethodPost, "/v1/reload", &r)
}
