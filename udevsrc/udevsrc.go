// Package udevsrc is usbctl's view of the host's USB devices, through real
// libudev: go-udev lists the devices present, and a small libudev monitor
// (monitor.go) watches them come and go. It reads sysfs only through
// libudev, so tests can feed it fake devices with umockdev.
package udevsrc

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"time"

	"github.com/jochenvg/go-udev"

	"github.com/usbctl/usbctl/internal/backoff"
	"github.com/usbctl/usbctl/reconcile"
)

// Action is what happened to a device.
type Action string

const (
	ActionAdd    Action = "add"
	ActionRemove Action = "remove"
	// ActionResync says events may have been lost (the monitor broke and
	// was re-created): the consumer should list the devices again.
	ActionResync Action = "resync"
)

// Event is a device that came, went, or a resync signal.
type Event struct {
	Action Action
	Device reconcile.Device
}

// Source lists and watches USB devices.
type Source struct {
	log *slog.Logger
	// retry paces the re-creation of a broken monitor.
	retry backoff.Policy
}

// New returns a Source that logs to log.
func New(log *slog.Logger) *Source {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{log: log, retry: backoff.Policy{Min: 100 * time.Millisecond, Max: 30 * time.Second}}
}

// List returns the USB devices present, sorted by bus and device number.
// Devices whose udev data cannot be converted are logged and left out.
func (s *Source) List(ctx context.Context) ([]reconcile.Device, error) {
	var u udev.Udev
	e := u.NewEnumerate()
	if err := e.AddMatchSubsystem("usb"); err != nil {
		return nil, fmt.Errorf("enumerate usb devices: %w", err)
	}
	if err := e.AddMatchProperty("DEVTYPE", "usb_device"); err != nil {
		return nil, fmt.Errorf("enumerate usb devices: %w", err)
	}
	devs, err := e.Devices()
	if err != nil {
		return nil, fmt.Errorf("enumerate usb devices: %w", err)
	}
	out := make([]reconcile.Device, 0, len(devs))
	for _, ud := range present(devs) {
		d, err := DeviceFromUdev(ud.Properties(), ud.SysattrValue)
		if err != nil {
			s.log.Warn("usb device ignored", "err", err)
			continue
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key().Less(out[j].Key()) })
	return out, nil
}

// Watch delivers add and remove events to handle until ctx is done, and
// returns ctx.Err(). handle must not block: the netlink socket is read only
// as fast as handle returns. A monitor that breaks is logged and re-created
// with capped backoff, followed by an ActionResync event, since events may
// have been lost meanwhile.
func (s *Source) Watch(ctx context.Context, handle func(Event)) error {
	failures := 0
	for {
		started := time.Now()
		err := s.watchOnce(ctx, handle)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(started) > time.Minute {
			failures = 0 // it ran fine for a while
		}
		failures++
		wait := s.retry.Delay(failures)
		s.log.Error("udev monitor broke; re-creating it", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		handle(Event{Action: ActionResync})
	}
}

// watchOnce runs one monitor until it breaks or ctx is done.
func (s *Source) watchOnce(ctx context.Context, handle func(Event)) error {
	const want = 16 << 20
	m, err := newMonitor(want)
	if err != nil {
		return err
	}
	defer m.close()
	// Linux reports twice what it grants (bookkeeping overhead). Without
	// CAP_NET_ADMIN the grant stops at net.core.rmem_max: say so once,
	// since that is how usbctld runs under its unit.
	if got, err := m.recvBuf(); err == nil && got/2 < want {
		s.log.Info("udev receive buffer is smaller than asked: a burst of events that overruns it costs one full resync",
			"bytes", got, "asked", want, "raise_with", "sysctl net.core.rmem_max (usbctld has no CAP_NET_ADMIN to force it)")
	}
	return m.run(ctx, s, handle)
}

// deliver converts one event's device and hands it to handle. attr reads
// the device's sysattrs; remove events never use it (sysfs is gone).
func (s *Source) deliver(action string, props map[string]string, attr func(string) string, handle func(Event)) {
	var a Action
	switch action {
	case "add", "change", "bind":
		a = ActionAdd
	case "remove":
		a, attr = ActionRemove, nil // sysfs is gone: properties only
	default:
		return
	}
	d, err := DeviceFromUdev(props, attr)
	if err != nil {
		s.log.Warn("udev event refused", "action", action, "err", err)
		return
	}
	handle(Event{Action: a, Device: d})
}

// UsbfsClaims returns the sysfs names ("3-1:1.0") of d's interfaces whose
// driver is usbfs — claimed through /dev/bus/usb by a program, as libusb's
// claim_interface does — and how many interfaces d has. No uevent arrives
// for such a claim or its release (udevadm monitor on the real-kernel test
// host showed none), so this reads sysfs, through libudev like everything
// here. A device no longer in sysfs has none.
func (s *Source) UsbfsClaims(ctx context.Context, d reconcile.Device) (usbfs []string, interfaces int, err error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if d.DevPath == "" {
		return nil, 0, fmt.Errorf("usb device %s: no devpath to read its interfaces from", d.Key())
	}
	var u udev.Udev
	parent := u.NewDeviceFromSyspath("/sys" + d.DevPath)
	if parent == nil {
		// Unplugged since: it holds nothing, and its remove event
		// follows (a quick unplug after an attach does this).
		return nil, 0, nil
	}
	e := u.NewEnumerate()
	ifaces, err := func() ([]*udev.Device, error) {
		if err := e.AddMatchParent(parent); err != nil {
			return nil, err
		}
		if err := e.AddMatchSubsystem("usb"); err != nil {
			return nil, err
		}
		if err := e.AddMatchProperty("DEVTYPE", "usb_interface"); err != nil {
			return nil, err
		}
		return e.Devices()
	}()
	if err != nil {
		return nil, 0, fmt.Errorf("usb device %s: list interfaces: %w", d.Key(), err)
	}
	for _, i := range present(ifaces) {
		// Only the device's own interfaces: a hub's enumeration as
		// parent also finds the interfaces of the devices behind it.
		if path.Dir(i.Devpath()) != d.DevPath {
			continue
		}
		interfaces++
		if i.Driver() == "usbfs" {
			usbfs = append(usbfs, i.Sysname())
		}
	}
	sort.Strings(usbfs)
	return usbfs, interfaces, nil
}

// present drops the nil entries of an enumeration: go-udev's Devices gives
// nil for a device that went between libudev's scan and its read of the
// device (an unplug during the listing; the real-stack bench crashed on
// one). Such a device is not there; its remove event follows.
func present(devs []*udev.Device) []*udev.Device {
	out := devs[:0:0]
	for _, d := range devs {
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}
