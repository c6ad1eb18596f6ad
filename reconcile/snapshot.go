package reconcile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ParseSnapshot reads a snapshot and checks it as strictly as usbctld
// checks what udev and libvirt report, so that a replay never plans for a
// world no host can produce: bus and device numbers in range, four-digit
// hex ids, class codes, port paths, known domain states, no device or
// domain twice, hostdevs that name a device. Every problem is returned,
// each naming its JSON path ("devices[3].dev: ..."); snap is usable only
// when errs is empty. warns are fields this usbctl does not know, which it
// ignores (a newer usbctl may add fields within a version).
func ParseSnapshot(data []byte) (snap Snapshot, errs, warns []error) {
	var top struct {
		Version    *int              `json:"version"`
		Host       string            `json:"host"`
		TakenAt    string            `json:"taken_at"`
		Devices    []json.RawMessage `json:"devices"`
		Domains    []json.RawMessage `json:"domains"`
		Unobserved []Unobserved      `json:"unobserved"`
		Overrides  []json.RawMessage `json:"overrides"`
	}
	v := &validator{data: data}
	if !v.decode("", data, &top, []string{"version", "host", "taken_at", "devices", "domains", "unobserved", "overrides"}) {
		return Snapshot{}, v.errs, v.warns
	}
	switch {
	case top.Version == nil:
		v.errorf("version", "missing; this usbctl reads version %d (write a snapshot with usbctl snapshot)", SnapshotVersion)
	case *top.Version != SnapshotVersion:
		// Nothing else can be read in a version this usbctl does not know.
		v.errorf("version", "snapshot version %d; this usbctl reads version %d (write a new snapshot with usbctl snapshot)", *top.Version, SnapshotVersion)
		return Snapshot{}, v.errs, v.warns
	}
	snap = Snapshot{Version: SnapshotVersion, Host: top.Host, TakenAt: top.TakenAt, Unobserved: top.Unobserved}
	if top.TakenAt != "" {
		if _, err := time.Parse(time.RFC3339, top.TakenAt); err != nil {
			v.errorf("taken_at", "%q is not an RFC 3339 time such as \"2026-11-25T15:42:03Z\"", top.TakenAt)
		}
	}
	for i, u := range top.Unobserved {
		p := fmt.Sprintf("unobserved[%d]", i)
		if u.Part != PartDevices && u.Part != PartDomains {
			v.errorf(p+".part", "%q: want %q or %q", u.Part, PartDevices, PartDomains)
		}
	}

	byKey := map[DeviceKey]string{}
	byDevpath := map[string]string{}
	byPort := map[string]string{}
	snap.Devices = make([]Device, 0, len(top.Devices))
	for i, raw := range top.Devices {
		p := fmt.Sprintf("devices[%d]", i)
		var d Device
		if !v.decode(p, raw, &d, []string{"bus", "dev", "vendor", "product", "serial", "port", "class", "interface_classes", "manufacturer", "product_name", "devpath"}) {
			continue
		}
		ok := v.device(p, raw, &d)
		// Duplicates are looked for among every device with numbers in
		// range, valid or not, so that one error does not hide another.
		if d.Bus >= 1 && d.Bus <= MaxBus && d.Dev >= 1 && d.Dev <= MaxDev {
			if first, dup := byKey[d.Key()]; dup {
				ok = v.errorf(p, "bus %d dev %d is %s's too: two devices never share a bus and device number", d.Bus, d.Dev, first)
			} else {
				byKey[d.Key()] = p
			}
		}
		if d.DevPath != "" {
			if first, dup := byDevpath[d.DevPath]; dup {
				v.errorf(p+".devpath", "%q is %s's too: two devices never share a devpath", d.DevPath, first)
			}
			byDevpath[d.DevPath] = p
		}
		if d.Port != "" {
			if first, dup := byPort[d.Port]; dup {
				v.errorf(p+".port", "%q is %s's too: one port holds one device", d.Port, first)
			}
			byPort[d.Port] = p
		}
		if ok {
			snap.Devices = append(snap.Devices, d)
		}
	}

	names := map[string]string{}
	uuids := map[string]string{}
	held := map[DeviceKey]string{}
	snap.Domains = make([]Domain, 0, len(top.Domains))
	for i, raw := range top.Domains {
		p := fmt.Sprintf("domains[%d]", i)
		var dj struct {
			Name     string            `json:"name"`
			UUID     string            `json:"uuid"`
			State    DomainState       `json:"state"`
			Hostdevs []json.RawMessage `json:"hostdevs"`
		}
		if !v.decode(p, raw, &dj, []string{"name", "uuid", "state", "hostdevs"}) {
			continue
		}
		d := Domain{Name: dj.Name, UUID: dj.UUID, State: dj.State}
		ok := true
		switch first, dup := names[d.Name]; {
		case d.Name == "":
			ok = v.errorf(p+".name", "missing: every libvirt domain has a name")
		case dup:
			ok = v.errorf(p+".name", "%q is %s's too: libvirt domain names are unique", d.Name, first)
		default:
			names[d.Name] = p
		}
		if d.UUID != "" {
			if !validUUID(d.UUID) {
				ok = v.errorf(p+".uuid", "%q is not a UUID such as \"4b8e1a6c-2f0d-4c5e-9a3b-7d1e2f3a4b5c\"", d.UUID)
			} else if first, dup := uuids[strings.ToLower(d.UUID)]; dup {
				ok = v.errorf(p+".uuid", "%q is %s's too: libvirt domain UUIDs are unique", d.UUID, first)
			} else {
				uuids[strings.ToLower(d.UUID)] = p
			}
		}
		if !validState(d.State) {
			ok = v.errorf(p+".state", "%q is not a libvirt state: want one of %s", d.State, strings.Join(stateNames(), ", "))
		} else if !d.State.Active() && len(dj.Hostdevs) > 0 {
			ok = v.errorf(p+".hostdevs", "a domain that is %q has no live hostdevs; list them only for running, paused, blocked or pmsuspended domains", d.State)
		}
		aliases := map[string]string{}
		for j, hraw := range dj.Hostdevs {
			hp := fmt.Sprintf("%s.hostdevs[%d]", p, j)
			var h Hostdev
			if !v.decode(hp, hraw, &h, []string{"alias", "bus", "dev", "vendor", "product"}) || !v.hostdev(hp, &h) {
				ok = false
				continue
			}
			if first, dup := aliases[h.Alias]; dup {
				ok = v.errorf(hp+".alias", "%q is %s's too: aliases are unique within a domain", h.Alias, first)
				continue
			}
			aliases[h.Alias] = hp
			if k, has := h.Key(); has {
				if first, dup := held[k]; dup {
					ok = v.errorf(hp, "bus %d dev %d is held by %s too: one device is in one guest at a time", k.Bus, k.Dev, first)
					continue
				}
				held[k] = hp
			}
			d.Hostdevs = append(d.Hostdevs, h)
		}
		if ok {
			snap.Domains = append(snap.Domains, d)
		}
	}

	// Runtime assignments name a device of the snapshot, one each.
	assigned := map[DeviceKey]string{}
	for i, raw := range top.Overrides {
		p := fmt.Sprintf("overrides[%d]", i)
		var o Override
		if !v.decode(p, raw, &o, []string{"key", "domain", "source"}) {
			continue
		}
		switch first, dup := assigned[o.Key]; {
		case byKey[o.Key] == "":
			v.errorf(p+".key", "bus %d dev %d is no device of the snapshot: an assignment names a present device", o.Key.Bus, o.Key.Dev)
		case dup:
			v.errorf(p+".key", "bus %d dev %d is %s's too: a device has one assignment at most", o.Key.Bus, o.Key.Dev, first)
		default:
			assigned[o.Key] = p
			snap.Overrides = append(snap.Overrides, o)
		}
	}
	return snap, v.errs, v.warns
}

type validator struct {
	data        []byte
	errs, warns []error
}

// errorf records an error at a JSON path and returns false, for
// "ok = v.errorf(...)".
func (v *validator) errorf(path, format string, args ...any) bool {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	v.errs = append(v.errs, errors.New(msg))
	return false
}

// decode unmarshals raw into dst, reporting a syntax or type error at its
// path, and warns about fields not in known.
func (v *validator) decode(path string, raw []byte, dst any, known []string) bool {
	if err := json.Unmarshal(raw, dst); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			// Offset counts the byte that broke the syntax.
			line, col := lineCol(v.data, max(se.Offset-1, 0))
			v.errorf(path, "line %d column %d: %v (not valid JSON)", line, col, se)
		case errors.As(err, &te):
			field := te.Field
			if i := strings.LastIndexByte(field, '.'); i >= 0 {
				field = field[i+1:]
			}
			p := path
			if field != "" {
				p = jsonPath(path, field)
			}
			v.errorf(p, "want %s, got %s", jsonType(te.Type.Kind().String()), te.Value)
		default:
			v.errorf(path, "%v", err)
		}
		return false
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) == nil {
		var unknown []string
		for k := range fields {
			if !slices.Contains(known, k) {
				unknown = append(unknown, k)
			}
		}
		sort.Strings(unknown)
		for _, k := range unknown {
			v.warns = append(v.warns, fmt.Errorf("%s: unknown field, ignored (this usbctl knows %s)", jsonPath(path, k), strings.Join(known, ", ")))
		}
	}
	return true
}

// device checks a device as udevsrc.DeviceFromUdev checks udev's report of
// one, and normalizes its hex fields as it does.
func (v *validator) device(p string, raw []byte, d *Device) bool {
	var present map[string]json.RawMessage
	_ = json.Unmarshal(raw, &present)
	ok := true
	has := func(f string) bool {
		if _, found := present[f]; found {
			return true
		}
		ok = v.errorf(jsonPath(p, f), "missing: every device has it (usbctl devices shows it)")
		return false
	}
	busOK := has("bus") && (d.Bus >= 1 && d.Bus <= MaxBus || v.errorf(p+".bus", "%d is not a bus number from 1 to %d", d.Bus, MaxBus))
	if has("dev") && (d.Dev < 1 || d.Dev > MaxDev) {
		ok = v.errorf(p+".dev", "%d is not a device number from 1 to %d", d.Dev, MaxDev)
	}
	var err error
	if has("vendor") {
		if d.Vendor, err = ParseHexID(d.Vendor); err != nil {
			ok = v.errorf(p+".vendor", "%v", err)
		}
	}
	if has("product") {
		if d.Product, err = ParseHexID(d.Product); err != nil {
			ok = v.errorf(p+".product", "%v", err)
		}
	}
	if !busOK {
		ok = false
	}
	if d.Port != "" {
		if bus, perr := portBus(d.Port); perr != nil {
			ok = v.errorf(p+".port", "%v", perr)
		} else if busOK && bus != d.Bus {
			ok = v.errorf(p+".port", "%q is on bus %d, but the device is on bus %d", d.Port, bus, d.Bus)
		}
	}
	if d.Class != "" {
		if c, cerr := classCode(d.Class); cerr != nil {
			ok = v.errorf(p+".class", "%v", cerr)
		} else {
			d.Class = c
		}
	}
	for i, c := range d.InterfaceClasses {
		if n, cerr := classCode(c); cerr != nil {
			ok = v.errorf(fmt.Sprintf("%s.interface_classes[%d]", p, i), "%v", cerr)
		} else {
			d.InterfaceClasses[i] = n
		}
	}
	if d.DevPath != "" && !strings.HasPrefix(d.DevPath, "/devices/") {
		ok = v.errorf(p+".devpath", "%q: a kernel devpath starts with /devices/", d.DevPath)
	}
	return ok
}

// hostdev checks a hostdev as the libvirt adapter reads one.
func (v *validator) hostdev(p string, h *Hostdev) bool {
	ok := true
	if h.Alias == "" {
		ok = v.errorf(p+".alias", "missing: libvirt gives every live hostdev an alias")
	}
	hasAddr := h.Bus != 0 || h.Dev != 0
	if hasAddr {
		if h.Bus < 1 || h.Bus > MaxBus {
			ok = v.errorf(p+".bus", "%d is not a bus number from 1 to %d", h.Bus, MaxBus)
		}
		if h.Dev < 1 || h.Dev > MaxDev {
			ok = v.errorf(p+".dev", "%d is not a device number from 1 to %d", h.Dev, MaxDev)
		}
	}
	if h.Vendor != "" || h.Product != "" {
		var err error
		if h.Vendor, err = ParseHexID(h.Vendor); err != nil {
			ok = v.errorf(p+".vendor", "%v", err)
		}
		if h.Product, err = ParseHexID(h.Product); err != nil {
			ok = v.errorf(p+".product", "%v", err)
		}
	} else if !hasAddr {
		ok = v.errorf(p, "names no device: a hostdev has bus and dev, or vendor and product")
	}
	if h.Owned() && ok {
		k, has := h.Key()
		if !has || h.Alias != k.Alias() {
			ok = v.errorf(p+".alias", "%q marks a hostdev usbctl attached, whose alias is %s for the device at its bus and dev", h.Alias, aliasForm(h))
		}
	}
	return ok
}

func aliasForm(h *Hostdev) string {
	if k, has := h.Key(); has {
		return fmt.Sprintf("%q", k.Alias())
	}
	return AliasPrefix + "BBB-DDD"
}

// portBus checks a device's port as udevsrc derives it from the devpath:
// "usbN" for a root hub, else an exact port path; it returns the bus.
func portBus(port string) (int, error) {
	if n, found := strings.CutPrefix(port, "usb"); found {
		bus, err := strconv.Atoi(n)
		if err != nil || bus < 1 || bus > MaxBus || strconv.Itoa(bus) != n {
			return 0, fmt.Errorf("%q is not a root hub port such as \"usb1\"", port)
		}
		return bus, nil
	}
	pp, err := ParsePortPattern(port)
	if err != nil || pp.Subtree {
		return 0, fmt.Errorf("%q is not a port path such as \"1-4.2\" (or \"usb1\" for a root hub)", port)
	}
	bus, _ := strconv.Atoi(pp.Path[:strings.IndexByte(pp.Path, '-')])
	return bus, nil
}

// classCode checks a class code: two hex digits, returned in lower case.
func classCode(s string) (string, error) {
	if len(s) != 2 {
		return "", fmt.Errorf("%q is not a class code of two hex digits such as \"03\"", s)
	}
	if _, err := strconv.ParseUint(s, 16, 8); err != nil {
		return "", fmt.Errorf("%q is not a class code of two hex digits such as \"03\"", s)
	}
	return strings.ToLower(s), nil
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

func allStates() []DomainState {
	return []DomainState{StateRunning, StateBlocked, StatePaused, StateShutdown, StateShutoff, StateCrashed, StatePMSuspended, StateUnknown}
}

func validState(s DomainState) bool {
	for _, k := range allStates() {
		if s == k {
			return true
		}
	}
	return false
}

func stateNames() []string {
	var out []string
	for _, s := range allStates() {
		out = append(out, strconv.Quote(string(s)))
	}
	return out
}

func jsonPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// jsonType names a Go kind as JSON does.
func jsonType(kind string) string {
	switch kind {
	case "int", "int64", "uint", "uint64", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice":
		return "a list"
	case "struct", "map":
		return "an object"
	}
	return kind
}

func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}
