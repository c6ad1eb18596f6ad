package l2guest

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// line renders devices as init.sh does, so the parser is tested against the
// encoding, hostile serials included.
func line(devs ...Device) string {
	var b strings.Builder
	b.WriteString("USBCTL-L2 devices")
	for _, d := range devs {
		s := "-"
		if d.HasSerial {
			s = hex.EncodeToString([]byte(d.Serial))
		}
		b.WriteString(" " + strings.Join([]string{hex4(d.Vendor), hex4(d.Product), s}, ":") + "@" + d.Port)
		if d.State {
			cfg := "-"
			if d.Config != 0 {
				cfg = strconv.Itoa(d.Config)
			}
			b.WriteString("/" + cfg + "/" + strconv.Itoa(d.Interfaces))
		}
	}
	return b.String()
}

func hex4(v uint16) string { return hex.EncodeToString([]byte{byte(v >> 8), byte(v)}) }

func TestParseReportHostileSerials(t *testing.T) {
	hostile := []string{
		"",
		"plain123",
		"with space",
		"new\nline USBCTL-L2 devices dead:beef:-@9-9",
		"colon:at@percent%41",
		"\x00\xff\xfe invalid utf-8 \r",
		"日本語",
	}
	var devs []Device
	for i, s := range hostile {
		// Every other one with its state, configured or not, as init.sh
		// writes it; the rest as an older init.sh did.
		d := Device{Port: "1-" + string(rune('1'+i)), Vendor: 0x1d6b, Product: uint16(i), Serial: s, HasSerial: true}
		if i%2 == 0 {
			d.State, d.Config, d.Interfaces = true, i/2%2, i
		}
		devs = append(devs, d)
	}
	devs = append(devs, Device{Port: "2-1.4", Vendor: 0x0627, Product: 0x0001, State: true, Config: 255, Interfaces: 2})
	log := "[    3.1] xhci_hcd 0000:00:01.0: xHCI Host Controller\r\n" +
		"USBCTL-L2 ready uptime=3.71\r\n" +
		line() + "\n" +
		"[    9.2] usb 1-1: new device" + line(devs...) + "\r\n"
	rep, err := ParseReport(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Ready || rep.Uptime != "3.71" || !rep.Seen {
		t.Fatalf("report %+v: want ready at 3.71 with a device list", rep)
	}
	if len(rep.Devices) != len(devs) {
		t.Fatalf("got %d devices %v, want %d", len(rep.Devices), rep.Devices, len(devs))
	}
	for i, d := range devs {
		if rep.Devices[i] != d {
			t.Errorf("device %d: got %v, want %v", i, rep.Devices[i], d)
		}
	}
}

// The exact text init.sh writes, old and new, not only what line renders.
func TestParseReportConfiguredAndOldFormat(t *testing.T) {
	rep, err := ParseReport(strings.NewReader("USBCTL-L2 devices 1d6b:0131:54482d4755455354@1-1/-/0 0483:5740:-@1-2/1/2 0627:0001:-@1-3\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Device{
		{Port: "1-1", Vendor: 0x1d6b, Product: 0x0131, Serial: "TH-GUEST", HasSerial: true, State: true},
		{Port: "1-2", Vendor: 0x0483, Product: 0x5740, State: true, Config: 1, Interfaces: 2},
		{Port: "1-3", Vendor: 0x0627, Product: 0x0001},
	}
	if len(rep.Devices) != len(want) {
		t.Fatalf("got %v, want %v", rep.Devices, want)
	}
	for i := range want {
		if rep.Devices[i] != want[i] {
			t.Errorf("device %d: got %+v, want %+v", i, rep.Devices[i], want[i])
		}
	}
	if rep.Devices[0].Configured() || !rep.Devices[1].Configured() {
		t.Errorf("configured: %v %v, want false true", rep.Devices[0].Configured(), rep.Devices[1].Configured())
	}
	if s := rep.Devices[0].String(); !strings.Contains(s, "not configured") {
		t.Errorf("%q does not say it is not configured", s)
	}
}

func TestParseReportEmptyListIsAStatement(t *testing.T) {
	rep, err := ParseReport(strings.NewReader("USBCTL-L2 ready\n"))
	if err != nil || rep.Seen {
		t.Fatalf("ready only: %+v, %v: want no list seen", rep, err)
	}
	rep, err = ParseReport(strings.NewReader(line(Device{Port: "1-1", Vendor: 1, Product: 2}) + "\n" + line() + "\n"))
	if err != nil || !rep.Seen || len(rep.Devices) != 0 || rep.Devices == nil {
		t.Fatalf("detach to empty: %+v, %v: want an empty, seen list", rep, err)
	}
}

func TestParseReportMalformed(t *testing.T) {
	for _, l := range []string{
		"USBCTL-L2 devices 0627:0001:-",           // no port
		"USBCTL-L2 devices 0627:0001@1-1",         // no serial field
		"USBCTL-L2 devices 627:0001:-@1-1",        // short vendor
		"USBCTL-L2 devices 0627:zzzz:-@1-1",       // not hex
		"USBCTL-L2 devices 0627:0001:4x@1-1",      // serial not hex
		"USBCTL-L2 devices 0627:0001:414@1-1",     // odd hex
		"USBCTL-L2 devices 0627:0001:-:00@1-1",    // extra field
		"USBCTL-L2 devices 0627:0001:-@1-1/1",     // no interface count
		"USBCTL-L2 devices 0627:0001:-@1-1/0/0",   // configuration 0 is none
		"USBCTL-L2 devices 0627:0001:-@1-1/256/1", // configuration out of range
		"USBCTL-L2 devices 0627:0001:-@1-1/x/1",   // configuration not a number
		"USBCTL-L2 devices 0627:0001:-@1-1/1/-1",  // negative count
		"USBCTL-L2 devices 0627:0001:-@1-1/1/2/3", // extra state field
		"USBCTL-L2 devices 0627:0001:-@/1/1",      // state without a port
		"USBCTL-L2 launched",                      // unknown kind
	} {
		if _, err := ParseReport(strings.NewReader(l + "\n")); err == nil {
			t.Errorf("%q parsed, want an error", l)
		}
	}
}

func TestParseReportPanicAndErrors(t *testing.T) {
	rep, err := ParseReport(strings.NewReader("USBCTL-L2 error insmod xhci-pci.ko\n" +
		"[    1.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) != 1 || rep.Errors[0] != "insmod xhci-pci.ko" || rep.Panic == "" {
		t.Fatalf("report %+v: want the insmod error and the panic", rep)
	}
}

func TestWatcherPartialLinesAndLevel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	w := NewWatcher(path)
	w.poll = 5 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kbd := Device{Port: "1-1", Vendor: 0x0627, Product: 0x0001}
	has := func(devs []Device) bool { _, ok := Find(devs, 0x0627, 0x0001); return ok }

	// The file does not exist yet; then the list arrives in two writes, the
	// device half-written in the first.
	full := "USBCTL-L2 ready\n" + line() + "\n" + line(kbd) + "\n"
	cut := len(full) - 8
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = os.WriteFile(path, []byte(full[:cut]), 0o644)
		time.Sleep(30 * time.Millisecond)
		f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		_, _ = f.WriteString(full[cut:])
		_ = f.Close()
	}()
	if _, err := w.WaitFor(ctx, has); err != nil {
		t.Fatal(err)
	}

	// A fresh watcher on the whole log must not be satisfied by the stale
	// empty list before the attach.
	short, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	fresh := NewWatcher(path)
	fresh.poll = 5 * time.Millisecond
	if _, err := fresh.WaitFor(short, func(devs []Device) bool { return len(devs) == 0 }); err == nil {
		t.Fatal("a stale empty list satisfied the wait")
	}

	// A truncated log (the domain restarted) starts over.
	if err := os.WriteFile(path, []byte("USBCTL-L2 ready\n"+line()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WaitFor(ctx, func(devs []Device) bool { return len(devs) == 0 }); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherStopsOnPanic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(path, []byte("Kernel panic - not syncing: VFS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := NewWatcher(path).WaitFor(context.Background(), func([]Device) bool { return true })
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("got %v, want the panic", err)
	}
}
