# usbctl — see README.md. `make demo` and `make test` are the two commands a
# new machine needs; both install what is missing first (scripts/deps.sh).
GO       ?= go
PREFIX   ?= /usr/local
BIN      := bin
GOFLAGS  ?=
FUZZTIME ?= 5s

.PHONY: all build deps test test-unit test-udev test-libvirt test-e2e test-kernel test-guest test-systemd test-usbip testhost test-package fuzz-smoke vet bench bench-smoke sandbox demo clean install uninstall deb

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

deps:
	@bash scripts/deps.sh

# The README's test command. Every tier runs; a tier that cannot run fails.
test: deps vet test-unit fuzz-smoke test-udev test-libvirt test-e2e test-kernel test-usbip test-systemd test-package bench-smoke

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags umockdev ./...
	$(GO) vet -tags "testhost testguest testsystemd" ./...

# Pure logic and fakes: reconcile, config, controller, CLI.
test-unit:
	$(GO) test -race -count=1 ./...

# Real libudev on fake devices (umockdev), as root in a private netns.
test-udev:
	$(GO) test -race -count=1 -tags umockdev -exec $(CURDIR)/scripts/umockdev-exec ./internal/umockdev/ ./udevsrc/

# The libvirt adapter against a real libvirtd and QEMU guests (sandbox).
test-libvirt:
	$(GO) test -count=1 -tags umockdev -exec $(CURDIR)/scripts/umockdev-exec ./virt/ ./internal/sandbox/

# The real usbctld binary end to end: sandbox libvirtd, QEMU guests, fake
# devices; asserted with virsh. -v prints each scenario and the latency.
test-e2e:
	$(GO) test -count=1 -v -timeout 20m -tags umockdev -exec $(CURDIR)/scripts/umockdev-exec ./e2e/

# The real usbctld and usbctl in a real-kernel test host (internal/testhost):
# Debian's kernel under QEMU, real udev, libvirtd as Debian ships it, an L2
# guest; devices emulated over QMP and gadgets on dummy_hcd. As root. With
# testguest, TestInGuest too: a Linux L2 guest on the same test host whose
# own sysfs shows what usbctld attached (64 s of the suite, measured).
test-kernel: deps
	$(GO) test -p 1 -count=1 -v -timeout 20m -tags 'testhost testguest' ./internal/testhost/ ./e2e/kernel/

# USB/IP between two real-kernel test hosts booted side by side on one
# private network (testhost.Network): a gadget on A exported by usbipd,
# attached on B, seen in B's own sysfs on vhci_hcd, detached, back on A;
# 5 rounds, the latency logged. As root. In make test: 31 s measured, the
# median of six runs of make test-usbip with the machine's heavy slots to
# itself (30.5, 30.6, 31.0, 31.8, 42.8, 44.3 s; every step was slower in
# the two long ones), 2026-12-02.
test-usbip: deps
	$(GO) test -count=1 -v -timeout 10m -tags testhost ./e2e/usbip/

# TestInGuest alone (it also runs in test-kernel): a Linux L2 guest whose
# own sysfs must show the device usbctld attached (plug, DFU
# re-enumeration, removal, a device held on the host). 82 s measured.
test-guest: deps
	$(GO) test -p 1 -count=1 -v -timeout 20m -tags 'testhost testguest' -run TestInGuest ./e2e/kernel/

# The packaged usbctld under a real systemd: the test host booted with
# systemd as PID 1 (one boot for the suite), the .deb installed with dpkg
# (USBCTL_DEB names a built one, else scripts/deb.sh builds it first),
# attach through polkit as the user usbctl, reload, socket access, stop,
# remove and purge, then make install from this tree and systemctl enable
# --now. As root. In make test: 2 min 18 s measured (make test-systemd,
# machine to itself, 2026-12-02).
test-systemd: deps
	$(GO) test -p 1 -count=1 -v -timeout 20m -tags 'testhost testsystemd' ./e2e/systemd/

# A test host for work by hand: boots it, starts libvirtd inside, prints the
# QMP socket and the share, and runs the shell lines typed at it; Ctrl-C ends.
testhost: deps
	$(GO) run ./internal/testhost/cmd/testhost -libvirt

# Short fuzzing of every fuzz target, on top of the committed corpora.
fuzz-smoke:
	@bash scripts/fuzz-smoke.sh $(FUZZTIME)

# Performance: go test benchmarks (Plan, controller overhead), then the real
# usbctld on the sandbox: plug-to-attach against the floor (AttachDeviceFlags
# on an open connection) and the old virsh-per-event way, idle cost,
# start-up; one table with targets. Then the plug figures on the real stack
# (the test host: e2e/kernel TestBench, 30 plugs each, 5 guest starts), a
# second table. ~8 min, as root.
bench: deps
	@bash scripts/bench.sh

# The same, every sandbox benchmark once (benchtime 1x, 3 plugs, 5 s idle):
# CI checks that they work; the figures mean nothing. The real-stack smoke
# is TestBench in test-kernel (1 plug each, 1 guest start: ~27 s).
bench-smoke: deps
	@bash scripts/bench.sh -smoke

# The README's first command: the sandbox, the real usbctld and an example
# config; devices and guests come and go, usbctl status after each step.
demo: deps build
	$(GO) build -tags umockdev -o $(BIN)/usbctl-demo ./internal/demo
	@bash scripts/umockdev-exec $(BIN)/usbctl-demo -bin $(BIN)

# The sandbox alone (libvirtd, guests gaming and work), for work by hand.
sandbox: deps build
	$(GO) build -tags umockdev -o $(BIN)/usbctl-demo ./internal/demo
	@bash scripts/umockdev-exec $(BIN)/usbctl-demo -bin $(BIN) -hold

# System install, honouring PREFIX and DESTDIR (scripts/install.sh says what
# goes where); a Debian package; their tests.
install: build
	bash scripts/install.sh install PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' BUILDDIR='$(CURDIR)/$(BIN)'

uninstall:
	bash scripts/install.sh uninstall PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)'

deb:
	bash scripts/deb.sh

test-package:
	bash scripts/install-test.sh
	bash scripts/deb-test.sh

clean:
	rm -rf $(BIN)
