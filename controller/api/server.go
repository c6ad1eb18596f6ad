// Package api is the daemon's control socket: HTTP and JSON over a unix
// socket, served by usbctld and used by the usbctl CLI. Reading (status,
// plan, metrics) is for whoever may open the socket: its mode 0660 and its
// group decide. Changing anything (reload) is for root and for the members
// of one control group, checked with the credentials the kernel took at
// connect (SO_PEERCRED, SO_PEERGROUPS); every change is logged with them.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/reconcile"
)

// Backend is what the server needs from the daemon.
type Backend interface {
	Status() controller.Status
	Plan(ctx context.Context) (reconcile.Result, error)
	Reload(ctx context.Context) (ReloadResult, error)
	RuntimeBackend
}

// ReloadResult says whether a reload took effect and what the config
// checker said.
type ReloadResult struct {
	Applied     bool     `json:"applied"`
	Diagnostics []string `json:"diagnostics,omitempty"`
}

// maxBody bounds request bodies; no endpoint needs one.
const maxBody = 64 << 10

// Listen creates the control socket at path with mode 0660, owned by group
// gid if gid >= 0. A socket file left by a daemon that died is replaced,
// but only after a connect to it fails: a live daemon's socket is never
// stolen. A path that is not a socket is never removed.
func Listen(path string, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: a file that is not a socket is in the way; remove it or pass --socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another usbctld is running and listening on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control socket %s: remove stale socket: %w", path, err)
		}
	}
	// Create it with no access, then open it up: no window in which
	// anyone could connect with the umask's permissions.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			if errors.Is(err, syscall.EPERM) {
				// Not root: chown(2) gives a file only to a group
				// its owner is a member of.
				return nil, fmt.Errorf("control socket %s: chown to group %d: %w: usbctld runs as uid %d, which must be a member of that group (under systemd: SupplementaryGroups= and SystemCallFilter=@chown in a drop-in; see usbctld(8))", path, gid, err, os.Geteuid())
			}
			return nil, fmt.Errorf("control socket %s: chown to group %d: %w", path, gid, err)
		}
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return ln, nil
}

// Server serves the control API.
type Server struct {
	b   Backend
	log *slog.Logger
	// mayChange decides whether a peer may change anything: root, or a
	// member of the control group. Tests replace it to see a refusal
	// while running as root.
	mayChange func(peer) bool
	// ctlGroup names the control group in refusals ("" for none).
	ctlGroup string
	metrics  http.Handler
	// stopping is closed when Serve's ctx ends: event streams end then,
	// or the graceful shutdown would wait for them.
	stopping chan struct{}
}

// SetMetrics serves h (Prometheus text format) at GET /metrics, for
// whoever may read status. Call before Serve.
func (s *Server) SetMetrics(h http.Handler) { s.metrics = h }

// SetControlGroup lets the members of group gid (primary or supplementary,
// as the peer had them at connect) change what root may change. name is
// the group's name, for messages. Call before Serve.
func (s *Server) SetControlGroup(gid uint32, name string) {
	s.ctlGroup = name
	s.mayChange = func(p peer) bool { return p.uid == 0 || p.inGroup(gid) }
}

// NewServer returns a server for b. Only root may change anything until
// SetControlGroup says who else may.
func NewServer(b Backend, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{b: b, log: log, mayChange: func(p peer) bool { return p.uid == 0 }, stopping: make(chan struct{})}
}

type peerKey struct{}

// change guards a route that changes something: peers that may not are
// refused with 403, and every attempt is logged with the peer's
// credentials, allowed or not.
func (s *Server) change(what string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerKey{}).(peer)
		if !p.known || !s.mayChange(p) {
			s.log.Warn(what+" refused", "uid", p.uid, "gid", p.gid, "groups", p.groups, "pid", p.pid)
			msg := fmt.Sprintf("%s needs root (usbctld --control-group GROUP lets a group's members do it too): run sudo usbctl %s", what, what)
			if s.ctlGroup != "" {
				msg = fmt.Sprintf("%s needs root or a member of group %s: run sudo usbctl %s, or join the group and log in again", what, s.ctlGroup, what)
			}
			writeError(w, http.StatusForbidden, msg)
			return
		}
		s.log.Info(what+" requested", "uid", p.uid, "gid", p.gid, "pid", p.pid)
		h(w, r)
	}
}

// Handler is the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.b.Status())
	})
	mux.HandleFunc("GET /v1/plan", func(w http.ResponseWriter, r *http.Request) {
		res, err := s.b.Plan(r.Context())
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics)
	}
	mux.HandleFunc("POST /v1/reload", s.change("reload", func(w http.ResponseWriter, r *http.Request) {
		res, err := s.b.Reload(r.Context())
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, res)
	}))
	s.runtimeRoutes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := int64(maxBody)
		if r.URL.Path == configFilePath {
			limit = maxConfigBody
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		mux.ServeHTTP(w, r)
	})
}

// Serve answers on ln until ctx is done, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		close(s.stopping)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return ctx.Err()
	}
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}
