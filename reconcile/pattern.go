package reconcile

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseIDPattern parses "vendor:product" with four hex digits a side, where
// a side may be a wildcard: "0b05:*" and "*:1872", or the older bash tool's
// "0b05:" and ":1872". Hex digits are lower-cased.
func ParseIDPattern(s string) (IDPattern, error) {
	v, p, ok := strings.Cut(s, ":")
	if !ok {
		return IDPattern{}, fmt.Errorf("id %q: want \"vendor:product\" with 4 hex digits a side, such as \"046d:c52b\", or a wildcard side: \"0b05:*\", \"*:1872\"", s)
	}
	vendor, err := parseIDSide(v)
	if err != nil {
		return IDPattern{}, fmt.Errorf("id %q: vendor %w", s, err)
	}
	product, err := parseIDSide(p)
	if err != nil {
		return IDPattern{}, fmt.Errorf("id %q: product %w", s, err)
	}
	if vendor == "" && product == "" {
		return IDPattern{}, fmt.Errorf("id %q matches every device: use mode = \"all\" for that", s)
	}
	return IDPattern{Vendor: vendor, Product: product}, nil
}

func parseIDSide(s string) (string, error) {
	if s == "" || s == "*" {
		return "", nil
	}
	if err := checkHex4(s); err != nil {
		return "", err
	}
	return strings.ToLower(s), nil
}

// ParseHexID checks a vendor or product id: exactly four hex digits. It
// returns the lower-case form.
func ParseHexID(s string) (string, error) {
	if err := checkHex4(s); err != nil {
		return "", err
	}
	return strings.ToLower(s), nil
}

func checkHex4(s string) error {
	if len(s) != 4 {
		return fmt.Errorf("%q must be 4 hex digits, such as \"046d\"", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return fmt.Errorf("%q must be 4 hex digits, such as \"046d\"", s)
		}
	}
	return nil
}

// maxPortDepth bounds the port path: USB allows five hubs between the root
// and a device, so at most six port numbers.
const maxPortDepth = 6

// ParsePortPattern parses a physical port path as the kernel names it:
// "1-4.2" (bus 1, port 4, then port 2 of the hub there), or "1-4.*" for
// every device behind port 1-4.
func ParsePortPattern(s string) (PortPattern, error) {
	path, subtree := strings.CutSuffix(s, ".*")
	bus, ports, ok := strings.Cut(path, "-")
	if !ok {
		return PortPattern{}, fmt.Errorf("port %q: want BUS-PORT[.PORT...] such as \"1-4.2\", or \"1-4.*\" for everything behind port 1-4 (usbctl devices shows the ports)", s)
	}
	if _, err := portNumber(bus, 1, 999); err != nil {
		return PortPattern{}, fmt.Errorf("port %q: bus %w", s, err)
	}
	parts := strings.Split(ports, ".")
	if len(parts) > maxPortDepth {
		return PortPattern{}, fmt.Errorf("port %q: more than %d levels; USB allows at most 5 hubs in a chain", s, maxPortDepth)
	}
	for _, p := range parts {
		if _, err := portNumber(p, 1, 255); err != nil {
			return PortPattern{}, fmt.Errorf("port %q: %w", s, err)
		}
	}
	return PortPattern{Path: path, Subtree: subtree}, nil
}

func portNumber(s string, lo, hi int) (int, error) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q is not a number from %d to %d", s, lo, hi)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q is not a number from %d to %d", s, lo, hi)
	}
	return n, nil
}

// classTable lists the USB class codes (usb.org "Defined Class Codes") by
// the names configs may use. A function, not a package variable, so nothing
// can change it at run time.
func classTable() [][2]string {
	return [][2]string{
		{"audio", "01"}, {"comm", "02"}, {"hid", "03"}, {"physical", "05"},
		{"image", "06"}, {"printer", "07"}, {"mass-storage", "08"}, {"hub", "09"},
		{"cdc-data", "0a"}, {"smart-card", "0b"}, {"content-security", "0d"},
		{"video", "0e"}, {"personal-healthcare", "0f"}, {"av", "10"},
		{"billboard", "11"}, {"type-c-bridge", "12"}, {"diagnostic", "dc"},
		{"wireless", "e0"}, {"misc", "ef"}, {"application", "fe"},
		{"vendor-specific", "ff"},
	}
}

// ClassName returns the name of a two-digit class code, or "" if it has none.
func ClassName(code string) string {
	for _, e := range classTable() {
		if e[1] == code {
			return e[0]
		}
	}
	return ""
}

// ParseClass parses a class name (see classTable) or a hex code ("03",
// "0x03") and returns two lower-case hex digits.
func ParseClass(s string) (string, error) {
	for _, e := range classTable() {
		if strings.EqualFold(e[0], s) {
			return e[1], nil
		}
	}
	h := strings.TrimPrefix(strings.ToLower(s), "0x")
	if len(h) == 1 {
		h = "0" + h
	}
	if len(h) == 2 {
		if _, err := strconv.ParseUint(h, 16, 8); err == nil {
			if h == "00" {
				// Device class 00 means "see the interfaces": nearly every
				// device has it, so as a rule it would match almost all.
				return "", fmt.Errorf("class %q means \"defined per interface\" and would match almost every device: name the interface class you mean (hid, mass-storage, audio, ...)", s)
			}
			return h, nil
		}
	}
	return "", fmt.Errorf("class %q: want a name (hid, mass-storage, audio, video, printer, comm, smart-card, wireless, vendor-specific, ...) or a hex code such as \"03\"", s)
}
