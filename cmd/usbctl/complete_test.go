package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/usbctl/usbctl/controller"
	"github.com/usbctl/usbctl/reconcile"
)

// With USBCTL_TEST_AS_CLI=1 the test binary is the usbctl command, so the
// shells below can run it as their completion scripts do.
func TestMain(m *testing.M) {
	if os.Getenv("USBCTL_TEST_AS_CLI") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// stubDaemon answers the two questions completion asks usbctld: the
// present devices and the domains.
func stubDaemon(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "usbctl.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/devices", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]reconcile.Device{
			{Bus: 1, Dev: 1, Port: "usb1", Vendor: "1d6b", Product: "0002", Class: "09"},
			{Bus: 1, Dev: 5, Port: "1-4.2", Vendor: "046d", Product: "c52b", Manufacturer: "Logitech", ProductName: "USB Receiver"},
			{Bus: 2, Dev: 3, Port: "2-1", Vendor: "0781", Product: "5583", Manufacturer: "Evil\tCorp", ProductName: "Stick\x1b[31m"},
		})
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(controller.Status{Domains: []controller.DomainStatus{
			{Name: "work", State: reconcile.StateShutoff}, {Name: "win11", State: reconcile.StateRunning},
		}})
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// cliOnPath puts a "usbctl" that is this test binary first on PATH.
func cliOnPath(t *testing.T) []string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\nUSBCTL_TEST_AS_CLI=1 exec %q \"$@\"\n", self)
	if err := os.WriteFile(filepath.Join(dir, "usbctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "HOME="+t.TempDir())
}

func shell(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	if name == "usbctl" {
		// exec looks up names on the test's PATH, not on env's.
		for _, e := range env {
			if p, ok := strings.CutPrefix(e, "PATH="); ok {
				name = filepath.Join(strings.SplitN(p, ":", 2)[0], "usbctl")
			}
		}
	}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func completionScript(t *testing.T, env []string, sh string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "usbctl."+sh)
	if err := os.WriteFile(p, []byte(shell(t, env, "usbctl", "completion", sh)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// Bash, zsh and fish complete devices and domains as usbctld names them,
// through the scripts usbctl completion writes (and make install installs).
func TestShellCompletion(t *testing.T) {
	sock := stubDaemon(t)
	env := cliOnPath(t)

	// The values and descriptions, as every script gets them.
	out := shell(t, env, "usbctl", "--socket", sock, "__complete", "attach", "")
	if want := "1:5\t046d:c52b Logitech USB Receiver, port 1-4.2\n"; !strings.HasPrefix(out, want) {
		t.Fatalf("__complete attach:\n%q", out)
	}
	if strings.Contains(out, "1:1\t") {
		t.Error("a root hub is offered")
	}
	if strings.Contains(out, "\x1b") || strings.Contains(out, "Evil\tCorp") {
		t.Errorf("a device string reached the shell raw:\n%q", out)
	}

	t.Run("bash", func(t *testing.T) {
		script := completionScript(t, env, "bash")
		// As bash-completion loads it; compopt works only inside a
		// completion bash started, and here the test calls the function.
		run := func(line string) []string {
			return lines(shell(t, env, "bash", "-c", `source /usr/share/bash-completion/bash_completion; source "$1"; compopt() { :; }; COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<<"$COMP_LINE"; [[ $COMP_LINE == *" " ]] && COMP_WORDS+=(""); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); __start_usbctl; printf '%s\n' "${COMPREPLY[@]}"`, "_", script, line))
		}
		if got := run("usbctl --socket " + sock + " attach "); !slices.Equal(got, []string{"1:5", "2:3"}) {
			t.Errorf("attach → %q", got)
		}
		// bash breaks words at ':', so the reply is what follows it.
		if got := run("usbctl --socket " + sock + " attach 1:"); !slices.Equal(got, []string{"5"}) {
			t.Errorf("attach 1: → %q", got)
		}
		if got := run("usbctl --socket " + sock + " attach 1:5 w"); !slices.Equal(got, []string{"win11", "work"}) {
			t.Errorf("attach 1:5 w → %q", got)
		}
		if got := run("usbctl --socket " + sock + " detach 2"); !slices.Equal(got, []string{"2:3"}) {
			t.Errorf("detach 2 → %q", got)
		}
	})
	t.Run("fish", func(t *testing.T) {
		script := completionScript(t, env, "fish")
		got := lines(shell(t, env, "fish", "-c", fmt.Sprintf("source %s; complete -C 'usbctl --socket %s move '", script, sock)))
		if len(got) != 2 || got[0] != "1:5\t046d:c52b Logitech USB Receiver, port 1-4.2" || !strings.HasPrefix(got[1], "2:3\t") {
			t.Errorf("move → %q", got)
		}
		got = lines(shell(t, env, "fish", "-c", fmt.Sprintf("source %s; complete -C 'usbctl --socket %s attach 1:5 '", script, sock)))
		if !slices.Equal(got, []string{"win11\trunning", "work\tshut off"}) {
			t.Errorf("attach 1:5 → %q", got)
		}
	})
	t.Run("zsh", func(t *testing.T) {
		script := completionScript(t, env, "zsh")
		// zsh's completion system needs a terminal; its two entry points
		// the script uses are stubbed to print what it offers.
		got := lines(shell(t, env, "zsh", "-f", "-c", `compdef() { :; }; _describe() { print -rl -- $completions; }; compadd() { :; }; source "$1"; words=(usbctl --socket "$2" attach ""); CURRENT=5; _usbctl`, "_", script, sock))
		if len(got) != 2 || got[0] != `1\:5:046d\:c52b Logitech USB Receiver, port 1-4.2` {
			t.Errorf("attach → %q", got)
		}
	})
}
