package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// defaultRuntimeDir holds the per-URI locks: the systemd unit's
// RuntimeDirectory (systemd passes it as $RUNTIME_DIRECTORY), else
// /run/usbctl. It is not the control socket's directory: two daemons with
// different --socket paths must still find each other.
func defaultRuntimeDir() string {
	if d := os.Getenv("RUNTIME_DIRECTORY"); d != "" {
		// Several directories are separated by ':'; the unit has one.
		d, _, _ = strings.Cut(d, ":")
		return d
	}
	return "/run/usbctl"
}

// uriLock is a held lock of one libvirt URI.
type uriLock struct {
	f    *os.File
	path string
}

// lockPath is the lock file of uri in dir: readable, and a hash of the
// whole URI so that two URIs that read the same once sanitised do not
// share a lock.
func lockPath(dir, uri string) string {
	var b strings.Builder
	for _, r := range uri {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := b.String()
	if len(name) > 80 {
		name = name[:80]
	}
	sum := sha256.Sum256([]byte(uri))
	return filepath.Join(dir, "libvirt-"+name+"-"+hex.EncodeToString(sum[:4])+".lock")
}

// lockURI takes the lock of uri in dir, so that only one usbctld manages a
// libvirt: every ua-usbctl-* hostdev counts as the daemon's own, and two
// daemons on one libvirt attach and detach each other's devices (issue 13
// saw 392 and 548 actions in 15 s). The lock is an flock on the file, so it
// goes with the process however it ends; the file names the holder's pid
// for the message of the next one.
func lockURI(dir, uri string) (*uriLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock of libvirt %s: %w", uri, err)
	}
	path := lockPath(dir, uri)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if errors.Is(err, os.ErrPermission) {
			// Another user's daemon holds it, or held it: flock needs
			// no write access, so it still tells which.
			return nil, lockedByOther(path, uri)
		}
		if err != nil {
			return nil, fmt.Errorf("lock of libvirt %s: %w", uri, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("lock of libvirt %s (%s): %w", uri, path, err)
			}
			return nil, inUse(path, uri)
		}
		// The holder before us may have removed the file between our
		// open and our lock (release does): then we locked a file nobody
		// else can find. Lock the one at the path.
		st, err1 := f.Stat()
		pst, err2 := os.Stat(path)
		if err1 != nil || err2 != nil || !os.SameFile(st, pst) {
			f.Close()
			continue
		}
		// Readable by all whatever the umask (the unit's is 0077), so a
		// daemon of another user can name this one's pid.
		if err := f.Chmod(0o644); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock of libvirt %s: %w", uri, err)
		}
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock of libvirt %s: %w", uri, err)
		}
		if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"+uri+"\n"), 0); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock of libvirt %s: %w", uri, err)
		}
		return &uriLock{f: f, path: path}, nil
	}
}

// inUse is the error for a lock another daemon holds, naming its pid as
// its lock file says.
func inUse(path, uri string) error {
	holder := "a pid it has not written yet"
	if b, err := os.ReadFile(path); err == nil {
		if first, _, _ := strings.Cut(string(b), "\n"); first != "" {
			if pid, err := strconv.Atoi(first); err == nil {
				holder = "pid " + strconv.Itoa(pid)
			}
		}
	}
	return fmt.Errorf("libvirt %s is already managed by another usbctld (%s; lock %s): two daemons on one libvirt would detach each other's devices; stop that one (systemctl stop usbctld) or give this one a different --uri", uri, holder, path)
}

// lockedByOther tells, for a lock file this user may not write, whether a
// daemon holds it.
func lockedByOther(path, uri string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("lock of libvirt %s: %w", uri, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return inUse(path, uri)
	}
	return fmt.Errorf("lock of libvirt %s: %s belongs to another user and no daemon holds it: remove it, or run usbctld as its owner", uri, path)
}

// release removes the lock file while still holding the lock (so no one
// can have locked it in between), then lets go.
func (l *uriLock) release() {
	_ = os.Remove(l.path)
	_ = l.f.Close()
}
