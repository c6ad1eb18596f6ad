// Command testhost boots a real-kernel test host (internal/testhost) for
// work by hand: make testhost.
//
//	go run ./internal/testhost/cmd/testhost [-libvirt] [-init agent|systemd] [-- CMD ARGS...]
//
// With a command it runs it inside, prints its output and exits with its
// status. Without one it reads shell lines from stdin, runs each with sh -c
// inside (no tty: one line, one command), and holds the test host until
// Ctrl-C or end of input. The QMP socket and the share are printed, for
// plugging devices from another terminal (e.g. socat - UNIX:DIR/qmp.sock).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/usbctl/usbctl/internal/testhost"
)

func main() {
	libvirt := flag.Bool("libvirt", false, "start udevd, virtlogd and libvirtd inside (SetupLibvirt)")
	init := flag.String("init", "agent", "PID 1 inside: agent or systemd")
	mem := flag.Int("mem", 2048, "memory of the test host in MiB")
	verbose := flag.Bool("v", false, "debug log")
	flag.Parse()
	lv := slog.LevelInfo
	if *verbose {
		lv = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, log, *libvirt, *init, *mem, flag.Args()))
}

func run(ctx context.Context, log *slog.Logger, libvirt bool, init string, mem int, argv []string) int {
	t0 := time.Now()
	h, err := testhost.Boot(ctx, testhost.Options{Init: init, MemMiB: mem, Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer h.Close()
	fmt.Fprintf(os.Stderr, "testhost: booted in %v\n", time.Since(t0).Round(time.Millisecond))
	if libvirt {
		t1 := time.Now()
		if err := h.SetupLibvirt(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "testhost: libvirtd up in %v\n", time.Since(t1).Round(time.Millisecond))
	}
	share, inside := h.SharedDir()
	if len(argv) > 0 {
		res, err := h.Run(ctx, argv...)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Stdout.Write(res.Stdout)
		os.Stderr.Write(res.Stderr)
		return res.Exit
	}
	fmt.Fprintf(os.Stderr, "testhost: QMP %s; share %s (inside %s); console %s\n",
		filepath.Join(h.Dir(), "qmp.sock"), share, inside, filepath.Join(h.Dir(), "console.log"))
	fmt.Fprintln(os.Stderr, "testhost: type shell commands (sh -c inside); Ctrl-C or Ctrl-D ends")
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		fmt.Fprint(os.Stderr, "testhost# ")
		select {
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr)
			return 0
		case l, ok := <-lines:
			if !ok {
				// No terminal (e.g. make in the background): hold until Ctrl-C.
				if !isTerminal() {
					<-ctx.Done()
				}
				return 0
			}
			if l == "" {
				continue
			}
			res, err := h.Run(ctx, "/bin/sh", "-c", l)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				continue
			}
			os.Stdout.Write(res.Stdout)
			os.Stderr.Write(res.Stderr)
			if res.Exit != 0 {
				fmt.Fprintf(os.Stderr, "(exit %d)\n", res.Exit)
			}
		}
	}
}

func isTerminal() bool {
	st, err := os.Stdin.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
