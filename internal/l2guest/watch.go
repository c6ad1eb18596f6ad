package l2guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// Watcher tails a guest's console log. It keeps its place, so a test that
// attaches and then detaches can wait on the same Watcher twice.
type Watcher struct {
	path    string
	off     int64
	partial []byte
	rep     Report
	poll    time.Duration
}

// NewWatcher watches the console log at path, which need not exist yet
// (libvirt creates it when the domain starts).
func NewWatcher(path string) *Watcher {
	return &Watcher{path: path, poll: 100 * time.Millisecond}
}

// Report is what the console has said up to the last read.
func (w *Watcher) Report() Report { return w.rep }

// WaitFor returns once pred holds for the guest's latest device list. It is
// level-based: pred sees the newest list after each read of the log, not
// every list in between, so a stale list earlier in the log (the empty one
// before an attach) cannot satisfy a wait for a later state. A kernel panic
// or a guest error line ends the wait with an error at once, rather than at
// the deadline.
func (w *Watcher) WaitFor(ctx context.Context, pred func(devs []Device) bool) (Report, error) {
	t := time.NewTicker(w.poll)
	defer t.Stop()
	for {
		if err := w.read(); err != nil {
			return w.rep, err
		}
		if w.rep.Panic != "" {
			return w.rep, fmt.Errorf("l2 guest %s: kernel panicked: %s", w.path, w.rep.Panic)
		}
		if len(w.rep.Errors) > 0 {
			return w.rep, fmt.Errorf("l2 guest %s: %s", w.path, w.rep.Errors[0])
		}
		if w.rep.Seen && pred(w.rep.Devices) {
			return w.rep, nil
		}
		select {
		case <-ctx.Done():
			return w.rep, fmt.Errorf("l2 guest %s: waiting for its devices (ready %t, last list %v): %w",
				w.path, w.rep.Ready, w.rep.Devices, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// WaitReady returns once the guest has loaded its modules and listed its
// devices for the first time.
func (w *Watcher) WaitReady(ctx context.Context) (Report, error) {
	return w.WaitFor(ctx, func([]Device) bool { return true })
}

// read consumes the complete lines appended since the last read; a line
// still being written waits for its newline.
func (w *Watcher) read() error {
	f, err := os.Open(w.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open l2 guest console: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() < w.off {
		// Truncated: the domain started again with a fresh log.
		w.off, w.partial, w.rep = 0, nil, Report{}
	}
	if _, err := f.Seek(w.off, io.SeekStart); err != nil {
		return fmt.Errorf("seek l2 guest console %s: %w", w.path, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("read l2 guest console %s: %w", w.path, err)
	}
	w.off += int64(len(data))
	buf := append(w.partial, data...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		if err := w.rep.apply(string(buf[:i])); err != nil {
			return err
		}
		buf = buf[i+1:]
	}
	w.partial = append([]byte(nil), buf...)
	return nil
}

// WaitFor watches the console log at logPath from its start until pred
// holds for the guest's latest device list (see Watcher.WaitFor).
func WaitFor(ctx context.Context, logPath string, pred func(devs []Device) bool) ([]Device, error) {
	rep, err := NewWatcher(logPath).WaitFor(ctx, pred)
	return rep.Devices, err
}
