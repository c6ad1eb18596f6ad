package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usbctl/usbctl/controller/api"
)

// A second usbctld on the same libvirt URI refuses to run, naming the
// first one's pid, whatever its --socket; once the first is gone (however
// it ended) the next one starts. Issue 13 item 2: two daemons with
// different sockets attached and detached each other's devices.
func TestSecondDaemonOnOneURIRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "usbctl.hcl")
	if err := os.WriteFile(cfg, []byte(`domain "test" {
  device "none" { ids = ["dead:beef"] }
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	opts := func(sock string) options {
		return options{configs: []string{cfg}, uri: "test:///default", socket: filepath.Join(dir, sock), runtimeDir: runDir, logLevel: "info", logFormat: "text", resync: time.Minute}
	}
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, log, opts("first.sock")) }()
	stopped := false
	defer func() {
		cancel()
		if !stopped {
			<-done
		}
	}()
	c := &api.Client{Socket: filepath.Join(dir, "first.sock")}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if st, err := c.Status(ctx); err == nil && st.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first daemon not ready within 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Without the lock it would run: give it 5 s to say no.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	err := run(ctx2, log, opts("second.sock"))
	want := fmt.Sprintf("libvirt test:///default is already managed by another usbctld (pid %d; lock %s", os.Getpid(), runDir)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "stop that one") {
		t.Fatalf("second daemon: %v\nwant an error containing %q", err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "second.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused daemon created its socket: %v", err)
	}
	// Another URI is another libvirt.
	l, err := lockURI(runDir, "test:///other")
	if err != nil {
		t.Fatalf("lock of another URI: %v", err)
	}
	l.release()

	cancel()
	stopped = true
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(runDir, "*.lock")); len(m) != 0 {
		t.Fatalf("a stopped daemon left its lock file: %v", m)
	}
	l, err = lockURI(runDir, "test:///default")
	if err != nil {
		t.Fatalf("lock after the first daemon stopped: %v", err)
	}
	l.release()
}

// A daemon killed with SIGKILL leaves its lock file, with its pid, but not
// the lock: the next daemon takes it and writes its own pid.
func TestLockOfAKilledDaemonIsFree(t *testing.T) {
	dir := t.TempDir()
	if os.Getenv("USBCTLD_LOCK_HELPER") == "1" {
		if _, err := lockURI(os.Getenv("USBCTLD_LOCK_DIR"), "qemu:///system"); err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		fmt.Println("locked")
		time.Sleep(time.Minute)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockOfAKilledDaemonIsFree$")
	cmd.Env = append(os.Environ(), "USBCTLD_LOCK_HELPER=1", "USBCTLD_LOCK_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "locked") {
		cmd.Process.Kill()
		t.Fatalf("helper: %q", buf[:n])
	}
	if _, err := lockURI(dir, "qemu:///system"); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("(pid %d;", cmd.Process.Pid)) {
		cmd.Process.Kill()
		t.Fatalf("while the helper holds it: %v, want its pid named", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	b, _ := os.ReadFile(lockPath(dir, "qemu:///system"))
	if !strings.HasPrefix(string(b), fmt.Sprint(cmd.Process.Pid, "\n")) {
		t.Fatalf("the killed holder's file should still be there with its pid: %q", b)
	}
	old := syscall.Umask(0o077) // the unit's
	l, err := lockURI(dir, "qemu:///system")
	syscall.Umask(old)
	if err != nil {
		t.Fatalf("lock after the holder was killed: %v", err)
	}
	defer l.release()
	if st, err := os.Stat(l.path); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("lock file mode %v (%v), want 0644 whatever the umask: a daemon of another user must read the pid", st.Mode().Perm(), err)
	}
	b, _ = os.ReadFile(l.path)
	if string(b) != fmt.Sprint(os.Getpid(), "\nqemu:///system\n") {
		t.Fatalf("lock file = %q, want our pid and the URI", b)
	}
}

func TestLockPath(t *testing.T) {
	a, b := lockPath("/run/usbctl", "qemu:///system"), lockPath("/run/usbctl", "qemu:__/system")
	if a == b || !strings.HasPrefix(a, "/run/usbctl/libvirt-qemu____system-") || !strings.HasSuffix(a, ".lock") {
		t.Fatalf("lockPath: %q and %q", a, b)
	}
	long := lockPath("/run/usbctl", "qemu+unix:///system?socket="+strings.Repeat("/very/long", 40))
	if len(filepath.Base(long)) > 120 {
		t.Fatalf("lock file name of %d bytes", len(filepath.Base(long)))
	}
	t.Setenv("RUNTIME_DIRECTORY", "/run/usbctl-x")
	if d := defaultRuntimeDir(); d != "/run/usbctl-x" {
		t.Fatalf("defaultRuntimeDir under systemd = %q", d)
	}
	t.Setenv("RUNTIME_DIRECTORY", "")
	if d := defaultRuntimeDir(); d != "/run/usbctl" {
		t.Fatalf("defaultRuntimeDir = %q", d)
	}
}
