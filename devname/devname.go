// Package devname finds the present USB device a person means: by bus and
// device number as lsusb and usbctl print it (1:5, 001:005), by port (1-4.2),
// by vendor:product (046d:c52b), by serial, or by a word of its product or
// maker name (yubikey, logitech). It is pure: the caller passes the devices.
package devname

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/usbctl/usbctl/reconcile"
)

// Kind says how a name was read.
type Kind int

const (
	// BusDev is "1:5" or "001:005": bus and device number in decimal.
	BusDev Kind = iota + 1
	// Port is a physical port path, "1-4.2", or a root hub, "usb1".
	Port
	// ID is vendor:product, four hex digits each.
	ID
	// Serial is the device's serial number, exactly.
	Serial
	// Words is one or more words of the maker and product names, in order,
	// compared without case.
	Words
)

func (k Kind) String() string {
	switch k {
	case BusDev:
		return "bus:device"
	case Port:
		return "port"
	case ID:
		return "vendor:product"
	case Serial:
		return "serial"
	case Words:
		return "name"
	}
	return "unknown"
}

var (
	busDevRE = regexp.MustCompile(`^([0-9]{1,3}):([0-9]{1,3})$`)
	idRE     = regexp.MustCompile(`^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$`)
	portRE   = regexp.MustCompile(`^([0-9]+-[0-9]+(\.[0-9]+)*|usb[0-9]+)$`)
)

// Classify says how name is read. The forms do not overlap: bus:dev has at
// most three digits a side, vendor:product exactly four hex digits, a port
// a dash; anything else is a serial or words.
func Classify(name string) Kind {
	switch {
	case busDevRE.MatchString(name):
		return BusDev
	case idRE.MatchString(name):
		return ID
	case portRE.MatchString(name):
		return Port
	}
	return Words // or Serial: Resolve tries serials first
}

// NotFoundError says that no present device has the name.
type NotFoundError struct {
	Name string
	As   Kind
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no present device has %s %q; usbctl devices lists them", e.As, e.Name)
}

// AmbiguousError says that several present devices have the name. The
// caller lists Candidates, so the user can pick one by bus:dev.
type AmbiguousError struct {
	Name       string
	As         Kind
	Candidates []reconcile.Device // sorted by bus:dev
}

func (e *AmbiguousError) Error() string {
	keys := make([]string, len(e.Candidates))
	for i, d := range e.Candidates {
		keys[i] = d.Key().String()
	}
	return fmt.Sprintf("%d devices have %s %q (%s); name one by bus:device, port or serial", len(e.Candidates), e.As, e.Name, strings.Join(keys, ", "))
}

// Resolve returns the one device of devs that name designates, or a
// *NotFoundError or *AmbiguousError. A name that is not bus:dev, a port or
// vendor:product is a serial if some device has that serial, and words of
// the maker and product names otherwise: a serial names one device, words
// name a kind of device.
func Resolve(name string, devs []reconcile.Device) (reconcile.Device, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return reconcile.Device{}, fmt.Errorf("empty device name: give bus:device (1:5), a port (1-4.2), vendor:product, a serial or a word of the product name")
	}
	kind := Classify(name)
	var hits []reconcile.Device
	switch kind {
	case BusDev:
		m := busDevRE.FindStringSubmatch(name)
		bus, _ := strconv.Atoi(m[1])
		dev, _ := strconv.Atoi(m[2])
		hits = filter(devs, func(d reconcile.Device) bool { return d.Bus == bus && d.Dev == dev })
	case ID:
		id := strings.ToLower(name)
		hits = filter(devs, func(d reconcile.Device) bool { return d.ID() == id })
	case Port:
		hits = filter(devs, func(d reconcile.Device) bool { return d.Port == name })
	default:
		hits = filter(devs, func(d reconcile.Device) bool { return d.Serial != "" && d.Serial == name })
		if len(hits) > 0 {
			kind = Serial
			break
		}
		want := words(name)
		hits = filter(devs, func(d reconcile.Device) bool { return containsRun(words(d.Manufacturer+" "+d.ProductName), want) })
	}
	switch len(hits) {
	case 0:
		return reconcile.Device{}, &NotFoundError{Name: name, As: kind}
	case 1:
		return hits[0], nil
	}
	slices.SortFunc(hits, func(a, b reconcile.Device) int {
		if a.Key().Less(b.Key()) {
			return -1
		}
		if b.Key().Less(a.Key()) {
			return 1
		}
		return 0
	})
	return reconcile.Device{}, &AmbiguousError{Name: name, As: kind, Candidates: hits}
}

func filter(devs []reconcile.Device, f func(reconcile.Device) bool) []reconcile.Device {
	var out []reconcile.Device
	for _, d := range devs {
		if f(d) {
			out = append(out, d)
		}
	}
	return out
}

// words splits s at everything but letters and digits, lower-cased:
// "YubiKey OTP+FIDO+CCID" is yubikey, otp, fido, ccid.
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// containsRun reports whether want appears in have as consecutive words.
func containsRun(have, want []string) bool {
	if len(want) == 0 {
		return false
	}
	for i := 0; i+len(want) <= len(have); i++ {
		if slices.Equal(have[i:i+len(want)], want) {
			return true
		}
	}
	return false
}
