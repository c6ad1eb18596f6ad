package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/user"
	"strconv"
	"time"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/devname"
	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/override"
	"github.com/usbctl/usbctl/reconcile"
)

// RuntimeBackend is what the runtime routes need from the daemon: the
// devices and assignments (the controller), the conf.d files (the daemon's
// config writer), the event stream.
type RuntimeBackend interface {
	Devices(name string) ([]reconcile.Device, error)
	Assign(ctx context.Context, r controller.AssignRequest) (controller.AssignResult, bool, error)
	Unassign(ctx context.Context, device string, by override.Setter) (controller.AssignResult, bool, error)
	ConfigFile(domain string) (ConfigFile, error)
	WriteConfig(ctx context.Context, w ConfigWrite, uid uint32) (ConfigWritten, error)
	Events() *events.Hub
}

// Errors a backend wraps so the answer says what kind of failure it is.
var (
	// ErrBadRequest: a request usbctld refuses whatever the state (a path
	// it does not write, a block type it does not accept).
	ErrBadRequest = errors.New("bad request")
	// ErrConflict: the request was based on state that changed since
	// (a config file edited meanwhile).
	ErrConflict = errors.New("conflict")
)

const (
	configFilePath = "/v1/config/file"
	// maxConfigBody bounds a config file write (its content in base64).
	maxConfigBody = 1 << 20
	// eventBuffer is how far a reader of the event stream may fall
	// behind before it is cut off.
	eventBuffer = 256
)

// assignTimeout bounds how long an assignment request waits for the sync
// that carries it out; the assignment holds either way.
const assignTimeout = 20 * time.Second

func (s *Server) runtimeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/devices", func(w http.ResponseWriter, r *http.Request) {
		devs, err := s.b.Devices(r.URL.Query().Get("name"))
		if err != nil {
			s.writeErr(w, err)
			return
		}
		if devs == nil {
			devs = []reconcile.Device{}
		}
		writeJSON(w, http.StatusOK, devs)
	})
	mux.HandleFunc("POST /v1/overrides", func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.allowChange(w, r, "usbctl attach, detach and move")
		if !ok {
			return
		}
		var req OverrideRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "override request: "+err.Error())
			return
		}
		verb := controller.Verb(req.Verb)
		ctx, cancel := context.WithTimeout(r.Context(), assignTimeout)
		defer cancel()
		sub := s.b.Events().Subscribe(eventBuffer)
		defer sub.Close()
		res, synced, err := s.b.Assign(ctx, controller.AssignRequest{Device: req.Device, Domain: req.Domain, Verb: verb,
			For: time.Duration(req.For), UntilStop: req.UntilStop, By: setter(p, "usbctl "+string(req.Verb))})
		if err != nil {
			s.log.Warn("runtime assignment refused", "uid", p.uid, "pid", p.pid, "verb", req.Verb, "device", req.Device, "domain", req.Domain, "err", err)
			s.writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, OverrideResult{Device: res.Device, Override: res.Override, Replaced: res.Replaced, From: res.From,
			Outcome: s.settle(ctx, sub, res.Device.Key(), outcome(s.b.Status(), res.Device.Key(), synced))})
	})
	mux.HandleFunc("DELETE /v1/overrides", func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.allowChange(w, r, "usbctl release")
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), assignTimeout)
		defer cancel()
		sub := s.b.Events().Subscribe(eventBuffer)
		defer sub.Close()
		res, synced, err := s.b.Unassign(ctx, r.URL.Query().Get("device"), setter(p, "usbctl release"))
		if err != nil {
			s.writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, OverrideResult{Device: res.Device, Replaced: res.Replaced, From: res.From,
			Outcome: s.settle(ctx, sub, res.Device.Key(), outcome(s.b.Status(), res.Device.Key(), synced))})
	})
	mux.HandleFunc("GET "+configFilePath, func(w http.ResponseWriter, r *http.Request) {
		f, err := s.b.ConfigFile(r.URL.Query().Get("domain"))
		if err != nil {
			s.writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("PUT "+configFilePath, func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.allowChange(w, r, "usbctl rule and --save")
		if !ok {
			return
		}
		var cw ConfigWrite
		if err := json.NewDecoder(r.Body).Decode(&cw); err != nil {
			writeError(w, http.StatusBadRequest, "config write: "+err.Error())
			return
		}
		res, err := s.b.WriteConfig(r.Context(), cw, p.uid)
		if err != nil {
			s.log.Warn("config write refused", "uid", p.uid, "pid", p.pid, "file", cw.Name, "err", err)
			s.writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("GET /v1/events", s.events)
}

// events streams the event hub as JSON lines until the reader goes, the
// server stops, or the reader falls too far behind.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	sub := s.b.Events().Subscribe(eventBuffer)
	defer sub.Close()
	rc := http.NewResponseController(w)
	// The server's timeouts are for requests; a stream has none.
	_ = rc.SetWriteDeadline(time.Time{})
	_ = rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stopping:
			return
		case <-sub.Done():
			s.log.Info("event reader cut off", "err", sub.Err())
			return
		case ev := <-sub.C():
			if err := enc.Encode(ev); err != nil {
				return
			}
			// Write everything already waiting, then flush once.
			for more := true; more; {
				select {
				case ev := <-sub.C():
					if err := enc.Encode(ev); err != nil {
						return
					}
				default:
					more = false
				}
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

// allowChange lets a peer change something, or answers 403, as change
// does for reload; the handler also needs the peer, for who set what.
// Every attempt is logged with the peer's credentials.
func (s *Server) allowChange(w http.ResponseWriter, r *http.Request, what string) (peer, bool) {
	p, _ := r.Context().Value(peerKey{}).(peer)
	if !p.known || !s.mayChange(p) {
		s.log.Warn("change refused", "what", what, "uid", p.uid, "gid", p.gid, "groups", p.groups, "pid", p.pid)
		msg := what + " needs root (usbctld --control-group GROUP lets a group's members do it too): run it with sudo"
		if s.ctlGroup != "" {
			msg = fmt.Sprintf("%s needs root or a member of group %s: run it with sudo, or join the group and log in again", what, s.ctlGroup)
		}
		writeError(w, http.StatusForbidden, msg)
		return p, false
	}
	s.log.Info("change requested", "what", what, "uid", p.uid, "gid", p.gid, "pid", p.pid)
	return p, true
}

// setter is who a peer is, by name if the user database knows the uid.
func setter(p peer, via string) override.Setter {
	st := override.Setter{UID: p.uid, Via: via}
	if u, err := user.LookupId(strconv.FormatUint(uint64(p.uid), 10)); err == nil {
		st.User = u.Username
	}
	return st
}

// writeErr answers with the code the error's kind calls for; an ambiguous
// device name lists the candidates.
func (s *Server) writeErr(w http.ResponseWriter, err error) {
	var amb *devname.AmbiguousError
	var nf *devname.NotFoundError
	switch {
	case errors.As(err, &amb):
		writeJSON(w, http.StatusConflict, errorBody{Error: err.Error(), Candidates: amb.Candidates})
	case errors.As(err, &nf), errors.Is(err, controller.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, controller.ErrRefused):
		writeError(w, http.StatusUnprocessableEntity, err.Error())
	case errors.Is(err, ErrBadRequest):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

// settleTimeout bounds how long an answer waits for a device still on its
// way: a move detaches from one guest and attaches to the other once QEMU
// has let go, a sync or two later.
const settleTimeout = 5 * time.Second

// settle waits while the device's action is pending, recomputing the
// outcome on each of its attached, detached or failed events, until it is
// done or settleTimeout passes.
func (s *Server) settle(ctx context.Context, sub *events.Sub, k reconcile.DeviceKey, out Outcome) Outcome {
	deadline := time.After(settleTimeout)
	for out.Pending && out.Synced {
		select {
		case <-ctx.Done():
			return out
		case <-deadline:
			return out
		case <-sub.Done():
			return out
		case ev := <-sub.C():
			if ev.Key == nil || *ev.Key != k {
				continue
			}
			switch ev.Type {
			case events.Attached, events.Detached, events.Failed:
				out = outcome(s.b.Status(), k, true)
			}
		}
	}
	return out
}

// outcome is where the device stands in the status after the sync.
func outcome(st controller.Status, k reconcile.DeviceKey, synced bool) Outcome {
	out := Outcome{Synced: synced}
	for _, d := range st.Domains {
		for _, a := range d.Attached {
			if a.Key == k {
				out.AttachedTo = d.Name
				out.Reason = a.Rule
			}
		}
	}
	for _, p := range st.Pending {
		if p.Action.Key == k {
			out.Pending, out.LastError = true, p.LastError
			if out.LastError == "" {
				out.LastError = "not carried out yet"
			}
		}
	}
	for _, p := range st.Unassigned {
		if p.Device.Key() == k && out.AttachedTo == "" {
			out.Reason = p.Reason
		}
	}
	return out
}
