package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/override"
	"github.com/usbctl/usbctl/reconcile"
)

// Verb is what a person asked: it decides the override and is recorded
// with it.
type Verb string

const (
	VerbAttach Verb = "attach"
	VerbDetach Verb = "detach"
	VerbMove   Verb = "move"
)

// OverrideRequest asks usbctld to put a device somewhere until further
// notice: usbctl attach, detach and move.
type OverrideRequest struct {
	// Device is the name a person gave: bus:dev, port, vendor:product,
	// serial, or words of the product name (see package devname).
	Device string `json:"device"`
	// Domain is where it goes; empty for detach (the host), and for an
	// attach that answers an offer (the domain offered).
	Domain string `json:"domain,omitempty"`
	Verb   Verb   `json:"verb"`
	// For, if set, ends the override after that long; UntilStop ends it
	// when the domain stops. Neither: when the device is unplugged.
	For       Duration `json:"for,omitempty"`
	UntilStop bool     `json:"until_stop,omitempty"`
}

// Duration is a time.Duration written as "2h30m" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"2h30m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Outcome is where a device stands after the sync that followed a change.
type Outcome struct {
	// AttachedTo is the domain that holds it through usbctl ("" for the
	// host).
	AttachedTo string `json:"attached_to,omitempty"`
	// Pending is set when the action has not succeeded (yet): its last
	// error, and whether it waits for a change rather than a retry.
	Pending   bool   `json:"pending,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Reason is the plan's explanation of the placement.
	Reason string `json:"reason,omitempty"`
	// Synced is false if usbctld did not sync within the request's time;
	// the override is set all the same.
	Synced bool `json:"synced"`
}

// OverrideResult is the answer to an OverrideRequest or a release.
type OverrideResult struct {
	Device   reconcile.Device   `json:"device"`
	Override *override.Override `json:"override,omitempty"`
	// Replaced is the override it replaced (or, for a release, the one
	// released).
	Replaced *override.Override `json:"replaced,omitempty"`
	// From is the domain that held the device before (move).
	From    string  `json:"from,omitempty"`
	Outcome Outcome `json:"outcome"`
}

// ConfigFile is a config file under usbctld's conf.d, as usbctld reads it:
// what `usbctl rule add` and `--save` edit.
type ConfigFile struct {
	// Name is the file's name in conf.d ("win11.hcl"), Path its full path.
	Name   string `json:"name"`
	Path   string `json:"path"`
	Exists bool   `json:"exists"`
	// Content and SHA256 are the file's bytes and their hash (hex); a
	// write must name the hash it edited.
	Content []byte `json:"content"`
	SHA256  string `json:"sha256"`
}

// ConfigWrite replaces (or creates) a file in conf.d.
type ConfigWrite struct {
	Name string `json:"name"`
	// BaseSHA256 is the hash of the content the edit started from, ""
	// for a file that did not exist: a file changed meanwhile is refused.
	BaseSHA256 string `json:"base_sha256"`
	Content    []byte `json:"content"`
	// Why is logged with the peer's uid ("usbctl rule add win11 ...").
	Why string `json:"why,omitempty"`
}

// ConfigWritten says what became of a ConfigWrite.
type ConfigWritten struct {
	Path string `json:"path"`
	// Written is false if the checker refused the result; Diagnostics say
	// why (or warn, when written).
	Written     bool     `json:"written"`
	Diagnostics []string `json:"diagnostics,omitempty"`
	// Reload is the reload that followed.
	Reload ReloadResult `json:"reload"`
}

// AmbiguousError is the daemon's answer to a device name that several
// present devices have.
type AmbiguousError struct {
	Message    string
	Candidates []reconcile.Device
}

func (e *AmbiguousError) Error() string { return e.Message }

// errorBody is an error answer with the candidates of an ambiguous name.
type errorBody struct {
	Error      string             `json:"error"`
	Candidates []reconcile.Device `json:"candidates,omitempty"`
}

// send is do with a JSON request body.
func (c *Client) send(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://usbctld"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			return ue.Unwrap()
		}
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer of usbctld: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error = http.StatusText(resp.StatusCode)
		}
		if len(eb.Candidates) > 0 {
			return &AmbiguousError{Message: eb.Error, Candidates: eb.Candidates}
		}
		return &HTTPError{Code: resp.StatusCode, Message: eb.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode answer of usbctld: %w", err)
	}
	return nil
}

// Devices lists the present devices as usbctld last saw them; with a name,
// the one device it designates (an *AmbiguousError lists the candidates).
func (c *Client) Devices(ctx context.Context, name string) ([]reconcile.Device, error) {
	path := "/v1/devices"
	if name != "" {
		path += "?name=" + url.QueryEscape(name)
	}
	var devs []reconcile.Device
	return devs, c.send(ctx, http.MethodGet, path, nil, &devs)
}

// SetOverride puts a device somewhere until the override ends.
func (c *Client) SetOverride(ctx context.Context, r OverrideRequest) (OverrideResult, error) {
	var res OverrideResult
	return res, c.send(ctx, http.MethodPost, "/v1/overrides", r, &res)
}

// Release forgets the override of a device: the rules decide again.
func (c *Client) Release(ctx context.Context, device string) (OverrideResult, error) {
	var res OverrideResult
	return res, c.send(ctx, http.MethodDelete, "/v1/overrides?device="+url.QueryEscape(device), nil, &res)
}

// ConfigFileFor returns the conf.d file that holds (or would hold) the
// domain's rules; with domain "", the file usbctl keeps excludes in.
func (c *Client) ConfigFileFor(ctx context.Context, domain string) (ConfigFile, error) {
	var f ConfigFile
	return f, c.send(ctx, http.MethodGet, "/v1/config/file?domain="+url.QueryEscape(domain), nil, &f)
}

// WriteConfig has usbctld check the new content with its config parser,
// replace the file atomically, and reload.
func (c *Client) WriteConfig(ctx context.Context, w ConfigWrite) (ConfigWritten, error) {
	var res ConfigWritten
	return res, c.send(ctx, http.MethodPut, "/v1/config/file", w, &res)
}

// Events follows the event stream, calling f for each event until ctx is
// done, the stream ends, or f returns an error.
func (c *Client) Events(ctx context.Context, f func(events.Event) error) error {
	return c.EventsOpened(ctx, nil, f)
}

// EventsOpened is Events that also calls opened once the stream is open:
// a reader that re-reads the state on every event reads it then too, for
// what happened while it was not following.
func (c *Client) EventsOpened(ctx context.Context, opened func(), f func(events.Event) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://usbctld/v1/events", nil)
	if err != nil {
		return err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			return ue.Unwrap()
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error = http.StatusText(resp.StatusCode)
		}
		return &HTTPError{Code: resp.StatusCode, Message: eb.Error}
	}
	if opened != nil {
		opened()
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var ev events.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("event stream of usbctld: %w", err)
		}
		if err := f(ev); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("event stream of usbctld: %w", err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("usbctld ended the event stream")
}
