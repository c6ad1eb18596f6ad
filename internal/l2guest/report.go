package l2guest

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// The guest's console lines this package reads (written by init.sh):
//
//	USBCTL-L2 ready uptime=3.71
//	USBCTL-L2 devices 0627:0001:-@1-1/1/1 46f4:0001:31203221@1-2/-/0
//	USBCTL-L2 error insmod xhci-pci.ko
//
// A device is VID:PID:SERIAL@PORT/CFG/NIF: vendor and product as sysfs has
// them (4 hex digits), the serial hex-encoded byte for byte ("-" when the
// device has none, empty when it is empty), the sysfs port name
// (bus-port.port), its bConfigurationValue ("-" while it has none, i.e. the
// guest could not or did not yet configure it) and how many interfaces its
// sysfs lists. Root hubs are left out. Hex keeps a hostile serial (spaces,
// newlines, "USBCTL-L2", invalid UTF-8) from splitting or forging a line.
// An older init.sh wrote VID:PID:SERIAL@PORT alone; that still parses, with
// the state unknown (Device.State false).
const marker = "USBCTL-L2 "

// Device is one USB device as the guest's own sysfs shows it.
type Device struct {
	Port      string // sysfs name, e.g. "1-1" or "1-1.2"
	Vendor    uint16
	Product   uint16
	Serial    string
	HasSerial bool
	// State says whether the line gave Config and Interfaces (an older
	// init.sh did not).
	State bool
	// Config is the device's bConfigurationValue, 0 while it has none (a
	// configuration's value is never 0: USB 2.0 9.4.7).
	Config int
	// Interfaces is how many interfaces the guest's sysfs lists for it.
	Interfaces int
}

// Configured says whether the guest's kernel set a configuration, which
// is what gives the device interfaces and drivers: a device the guest
// lists but could not configure is of no use to it.
func (d Device) Configured() bool { return d.Config != 0 }

func (d Device) String() string {
	s := fmt.Sprintf("%04x:%04x@%s", d.Vendor, d.Product, d.Port)
	if d.HasSerial {
		s += fmt.Sprintf(" serial %q", d.Serial)
	}
	switch {
	case !d.State:
	case d.Configured():
		s += fmt.Sprintf(" config %d, %d interfaces", d.Config, d.Interfaces)
	default:
		s += fmt.Sprintf(" not configured, %d interfaces", d.Interfaces)
	}
	return s
}

// Report is what the console has said so far.
type Report struct {
	Ready bool
	// Uptime is the guest's /proc/uptime when it was ready, for boot
	// timing; empty if the line lacked it.
	Uptime string
	// Devices is the latest device list, sorted by port; Seen says whether
	// any list came yet (an empty list is a statement, no list is not).
	Devices []Device
	Seen    bool
	// Errors are the guest's own error lines, e.g. a module that failed.
	Errors []string
	// Panic is the kernel's panic line, if it panicked.
	Panic string
}

// ParseReport reads a whole console log. Lines that are not the guest's
// (kernel messages, firmware output) are ignored; a malformed guest line is
// an error, since init.sh and this parser are one protocol.
func ParseReport(r io.Reader) (Report, error) {
	var rep Report
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if err := rep.apply(sc.Text()); err != nil {
			return rep, err
		}
	}
	if err := sc.Err(); err != nil {
		return rep, fmt.Errorf("read l2 guest console: %w", err)
	}
	return rep, nil
}

// apply folds one console line into the report.
func (rep *Report) apply(line string) error {
	line = strings.TrimRight(line, "\r")
	if strings.Contains(line, "Kernel panic - not syncing") {
		rep.Panic = line
		return nil
	}
	// The marker may follow console noise on the same line (a kernel
	// message without its newline yet), so it is searched, not prefixed.
	i := strings.Index(line, marker)
	if i < 0 {
		return nil
	}
	kind, rest, _ := strings.Cut(line[i+len(marker):], " ")
	switch kind {
	case "ready":
		rep.Ready = true
		for _, f := range strings.Fields(rest) {
			if v, ok := strings.CutPrefix(f, "uptime="); ok {
				rep.Uptime = v
			}
		}
	case "devices":
		devs, err := parseDevices(rest)
		if err != nil {
			return fmt.Errorf("l2 guest console line %q: %w", line, err)
		}
		rep.Devices, rep.Seen = devs, true
	case "error":
		rep.Errors = append(rep.Errors, rest)
	default:
		return fmt.Errorf("l2 guest console line %q: unknown kind %q", line, kind)
	}
	return nil
}

func parseDevices(s string) ([]Device, error) {
	devs := []Device{}
	for _, f := range strings.Fields(s) {
		d, err := parseDevice(f)
		if err != nil {
			return nil, err
		}
		devs = append(devs, d)
	}
	slices.SortFunc(devs, func(a, b Device) int { return strings.Compare(a.Port, b.Port) })
	return devs, nil
}

func parseDevice(f string) (Device, error) {
	id, at, ok := strings.Cut(f, "@")
	port, state, hasState := strings.Cut(at, "/")
	if !ok || port == "" {
		return Device{}, fmt.Errorf("device %q: no port", f)
	}
	parts := strings.Split(id, ":")
	if len(parts) != 3 {
		return Device{}, fmt.Errorf("device %q: want VID:PID:SERIAL", f)
	}
	vid, err1 := strconv.ParseUint(parts[0], 16, 16)
	pid, err2 := strconv.ParseUint(parts[1], 16, 16)
	if err1 != nil || err2 != nil || len(parts[0]) != 4 || len(parts[1]) != 4 {
		return Device{}, fmt.Errorf("device %q: vendor and product must be 4 hex digits", f)
	}
	d := Device{Port: port, Vendor: uint16(vid), Product: uint16(pid)}
	if parts[2] != "-" {
		b, err := hex.DecodeString(parts[2])
		if err != nil {
			return Device{}, fmt.Errorf("device %q: serial: %w", f, err)
		}
		d.Serial, d.HasSerial = string(b), true
	}
	if hasState {
		if err := d.parseState(state); err != nil {
			return Device{}, fmt.Errorf("device %q: %w", f, err)
		}
	}
	return d, nil
}

// parseState reads CFG/NIF: "-" or 1..255, then a count.
func (d *Device) parseState(s string) error {
	cfg, nif, ok := strings.Cut(s, "/")
	if !ok {
		return fmt.Errorf("state %q: want CFG/NIF", s)
	}
	if cfg != "-" {
		c, err := strconv.ParseUint(cfg, 10, 8)
		if err != nil || c == 0 {
			return fmt.Errorf("configuration %q: want - or 1 to 255", cfg)
		}
		d.Config = int(c)
	}
	n, err := strconv.ParseUint(nif, 10, 8)
	if err != nil {
		return fmt.Errorf("interface count %q: %w", nif, err)
	}
	d.State, d.Interfaces = true, int(n)
	return nil
}

// Find returns the device with vendor:product, if the guest sees one.
func Find(devs []Device, vendor, product uint16) (Device, bool) {
	for _, d := range devs {
		if d.Vendor == vendor && d.Product == product {
			return d, true
		}
	}
	return Device{}, false
}
