// Command agent is the test host's control agent (internal/testhost builds it
// with CGO_ENABLED=0 into the instance's writable share). It serves
// wire.Requests from the virtio-serial port wire.PortName: runs commands and
// background processes and answers with their output and exit status.
//
// In "agent" mode it is PID 1 of the test host, so every orphan of the
// system is reparented to it: one reaper (wait4(-1) on SIGCHLD) collects all
// children and hands each status to the request waiting for that PID; the
// rest are orphans and are dropped. No exec.Cmd.Wait anywhere, since it would
// race with the reaper for the same child.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/usbctl/usbctl/internal/testhost/wire"
)

// proc is a child of the agent; done closes once the reaper has its status.
type proc struct {
	done   chan struct{}
	status syscall.WaitStatus
}

type agent struct {
	port *os.File
	wmu  sync.Mutex // one line at a time on the port

	mu      sync.Mutex     // held across fork+register and by the reaper's lookup
	procs   map[int]*proc  // by PID, until reaped and waited for
	running map[uint64]int // OpRun request ID → PID, for OpCancel
	bg      map[int]*proc  // background processes, kept for OpWait after they end
	env     []string
}

func main() {
	mode := "agent"
	if os.Getpid() != 1 {
		mode = "systemd"
	}
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8", "TERM=dumb"}
	a := &agent{procs: map[int]*proc{}, running: map[uint64]int{}, bg: map[int]*proc{}, env: env}
	// Reaper first: a child may end before anything waits for it.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD)
	if os.Getpid() == 1 {
		// PID 1 must not die of a stray signal: that panics the kernel.
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	}
	go a.reap(sigs)
	port, err := openPort()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testhost agent:", err)
		if os.Getpid() == 1 {
			// Keep the console log readable rather than panic at once.
			time.Sleep(2 * time.Second)
		}
		os.Exit(1)
	}
	a.port = port
	a.send(wire.Response{Hello: mode})
	a.serve()
}

// openPort finds the control port: udev's symlink if there is one, else the
// vportNpM whose sysfs name is ours (agent mode has no udev).
func openPort() (*os.File, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if f, err := os.OpenFile("/dev/virtio-ports/"+wire.PortName, os.O_RDWR, 0); err == nil {
			return f, nil
		}
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil || strings.TrimSpace(string(b)) != wire.PortName {
				continue
			}
			dev := "/dev/" + filepath.Base(filepath.Dir(n))
			if f, err := os.OpenFile(dev, os.O_RDWR, 0); err == nil {
				return f, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no virtio-serial port %q (looked in /dev/virtio-ports and /sys/class/virtio-ports)", wire.PortName)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serve reads requests until the end. A read of 0 bytes means the host side
// is not connected (yet, or any more): wait and read again.
func (a *agent) serve() {
	r := bufio.NewReaderSize(a.port, 1<<20)
	var line []byte
	for {
		chunk, err := r.ReadBytes('\n')
		line = append(line, chunk...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			fmt.Fprintln(os.Stderr, "testhost agent: read:", err)
			time.Sleep(time.Second)
			continue
		}
		var req wire.Request
		if err := json.Unmarshal(line, &req); err != nil {
			fmt.Fprintf(os.Stderr, "testhost agent: bad request %q: %v\n", line, err)
			line = line[:0]
			continue
		}
		line = line[:0]
		go a.handle(req)
	}
}

func (a *agent) send(resp wire.Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(wire.Response{ID: resp.ID, Err: err.Error()})
	}
	b = append(b, '\n')
	a.wmu.Lock()
	defer a.wmu.Unlock()
	for len(b) > 0 {
		n, err := a.port.Write(b)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testhost agent: write:", err)
			return
		}
		b = b[n:]
	}
}

func (a *agent) handle(req wire.Request) {
	resp := wire.Response{ID: req.ID}
	var err error
	switch req.Op {
	case wire.OpRun:
		err = a.run(req, &resp)
	case wire.OpStart:
		err = a.start(req, &resp)
	case wire.OpWait:
		a.mu.Lock()
		p := a.bg[req.PID]
		a.mu.Unlock()
		if p == nil {
			err = fmt.Errorf("no background process %d", req.PID)
			break
		}
		<-p.done
		setExit(&resp, p.status)
	case wire.OpSignal:
		pid := req.PID
		if req.Group {
			pid = -pid
		}
		err = syscall.Kill(pid, syscall.Signal(req.Signal))
	case wire.OpCancel:
		a.mu.Lock()
		pid, ok := a.running[req.Ref]
		a.mu.Unlock()
		if ok {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		resp.Err = err.Error()
	}
	a.send(resp)
}

func setExit(resp *wire.Response, ws syscall.WaitStatus) {
	switch {
	case ws.Signaled():
		resp.Signal = int(ws.Signal())
		resp.Exit = 128 + resp.Signal
	default:
		resp.Exit = ws.ExitStatus()
	}
}

// spawn starts argv in its own process group and registers it with the
// reaper before the reaper can look for it.
func (a *agent) spawn(req wire.Request, files []*os.File) (int, *proc, error) {
	if len(req.Argv) == 0 {
		return 0, nil, errors.New("empty argv")
	}
	env := append(append([]string(nil), a.env...), req.Env...)
	a.mu.Lock()
	defer a.mu.Unlock()
	path := req.Argv[0]
	if !strings.Contains(path, "/") {
		lp, err := lookPath(path, env)
		if err != nil {
			return 0, nil, err
		}
		path = lp
	}
	pr, err := os.StartProcess(path, req.Argv, &os.ProcAttr{
		Dir: req.Dir, Env: env, Files: files,
		Sys: &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		return 0, nil, err
	}
	pid := pr.Pid
	// The reaper, not os.Process, collects the status.
	_ = pr.Release()
	p := &proc{done: make(chan struct{})}
	a.procs[pid] = p
	return pid, p, nil
}

// lookPath is exec.LookPath on the child's PATH rather than the agent's.
func lookPath(name string, env []string) (string, error) {
	path := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH", name)
}

func (a *agent) run(req wire.Request, resp *wire.Response) error {
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return err
	}
	pid, p, err := a.spawn(req, []*os.File{stdinR, outW, errW})
	stdinR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		stdinW.Close()
		outR.Close()
		errR.Close()
		return err
	}
	resp.PID = pid
	a.mu.Lock()
	a.running[req.ID] = pid
	a.mu.Unlock()
	go func() {
		_, _ = stdinW.Write(req.Stdin)
		stdinW.Close()
	}()
	var stdout, stderr bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(&stdout, outR) }()
	go func() { defer wg.Done(); _, _ = io.Copy(&stderr, errR) }()
	<-p.done
	a.mu.Lock()
	delete(a.running, req.ID)
	a.mu.Unlock()
	// A daemon it left behind may hold the pipes open: take what came
	// within a moment, then stop reading (background processes belong in
	// OpStart, whose output goes to a file).
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(300 * time.Millisecond):
		outR.Close()
		errR.Close()
		<-drained
	}
	outR.Close()
	errR.Close()
	resp.Stdout, resp.Stderr = stdout.Bytes(), stderr.Bytes()
	setExit(resp, p.status)
	return nil
}

func (a *agent) start(req wire.Request, resp *wire.Response) error {
	if req.Log == "" {
		return errors.New("start without a log file")
	}
	if err := os.MkdirAll(filepath.Dir(req.Log), 0o755); err != nil {
		return err
	}
	log, err := os.OpenFile(req.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	pid, p, err := a.spawn(req, []*os.File{null, log, log})
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.bg[pid] = p
	a.mu.Unlock()
	resp.PID = pid
	return nil
}

// reap collects every child that ends, ours or an orphan's.
func (a *agent) reap(sigs <-chan os.Signal) {
	for range sigs {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			a.mu.Lock()
			if p := a.procs[pid]; p != nil {
				delete(a.procs, pid)
				p.status = ws
				close(p.done)
			}
			a.mu.Unlock()
		}
	}
}
