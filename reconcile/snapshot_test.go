package reconcile

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func snapJSON(devices, domains string) string {
	return `{"version": 1, "devices": [` + devices + `], "domains": [` + domains + `]}`
}

const okDev = `{"bus": 1, "dev": 3, "vendor": "046d", "product": "c52b", "port": "1-2"}`

// TestParseSnapshotErrors: every snapshot a host cannot produce is refused,
// each problem named by its JSON path, and all of them at once.
func TestParseSnapshotErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		json string
		want []string // one error containing each, in this order
	}{
		{"dev out of range", snapJSON(`{"bus": 1, "dev": 500, "vendor": "046d", "product": "c52b"}`, ""),
			[]string{"devices[0].dev: 500 is not a device number from 1 to 127"}},
		{"bus zero", snapJSON(`{"bus": 0, "dev": 2, "vendor": "046d", "product": "c52b"}`, ""),
			[]string{"devices[0].bus: 0 is not a bus number from 1 to 999"}},
		{"bad vendor and product", snapJSON(`{"bus": 1, "dev": 2, "vendor": "zzzz", "product": "12345"}`, ""),
			[]string{`devices[0].vendor: "zzzz" must be 4 hex digits`, `devices[0].product: "12345" must be 4 hex digits`}},
		{"duplicate device", snapJSON(okDev+`, {"bus": 1, "dev": 3, "vendor": "1050", "product": "0407", "port": "1-3"}`, ""),
			[]string{"devices[1]: bus 1 dev 3 is devices[0]'s too"}},
		{"duplicate port and devpath", snapJSON(`{"bus": 1, "dev": 3, "vendor": "046d", "product": "c52b", "port": "1-2", "devpath": "/devices/x/1-2"}, {"bus": 1, "dev": 4, "vendor": "046d", "product": "c52b", "port": "1-2", "devpath": "/devices/x/1-2"}`, ""),
			[]string{`devices[1].devpath: "/devices/x/1-2" is devices[0]'s too`, `devices[1].port: "1-2" is devices[0]'s too`}},
		{"missing numbers", snapJSON(`{"vendor": "046d", "product": "c52b"}`, ""),
			[]string{"devices[0].bus: missing", "devices[0].dev: missing"}},
		{"wrong type", snapJSON(`{"bus": "1", "dev": 2, "vendor": "046d", "product": "c52b"}`, ""),
			[]string{"devices[0].bus: want a number, got string"}},
		{"port", snapJSON(`{"bus": 1, "dev": 2, "vendor": "046d", "product": "c52b", "port": "1-4.*"}, {"bus": 2, "dev": 2, "vendor": "046d", "product": "c52b", "port": "1-5"}, {"bus": 3, "dev": 1, "vendor": "1d6b", "product": "0002", "port": "usbx"}`, ""),
			[]string{`devices[0].port: "1-4.*" is not a port path`, `devices[1].port: "1-5" is on bus 1, but the device is on bus 2`, `devices[2].port: "usbx" is not a root hub port`}},
		{"classes", snapJSON(`{"bus": 1, "dev": 2, "vendor": "046d", "product": "c52b", "class": "hid", "interface_classes": ["03", "3"]}`, ""),
			[]string{`devices[0].class: "hid" is not a class code`, `devices[0].interface_classes[1]: "3" is not a class code`}},
		{"devpath", snapJSON(`{"bus": 1, "dev": 2, "vendor": "046d", "product": "c52b", "devpath": "/sys/devices/x"}`, ""),
			[]string{`devices[0].devpath: "/sys/devices/x": a kernel devpath starts with /devices/`}},
		{"domain name, state, uuid", snapJSON("", `{"name": "", "state": "running"}, {"name": "a", "state": "runing", "uuid": "nope"}, {"name": "a", "state": "shut off"}`),
			[]string{"domains[0].name: missing", `domains[1].uuid: "nope" is not a UUID`, `domains[1].state: "runing" is not a libvirt state`, `domains[2].name: "a" is domains[1]'s too`}},
		{"hostdevs", snapJSON(okDev, `{"name": "off", "state": "shut off", "hostdevs": [{"alias": "hostdev0", "bus": 1, "dev": 3}]}, {"name": "on", "state": "running", "hostdevs": [{"alias": "ua-usbctl-001-004", "bus": 1, "dev": 3}, {"alias": "hostdev1"}, {"bus": 1, "dev": 200}, {"alias": "hostdev2", "vendor": "xx", "product": "0407"}]}`),
			[]string{`domains[0].hostdevs: a domain that is "shut off" has no live hostdevs`,
				`domains[1].hostdevs[0].alias: "ua-usbctl-001-004" marks a hostdev usbctl attached, whose alias is "ua-usbctl-001-003"`,
				"domains[1].hostdevs[1]: names no device", "domains[1].hostdevs[2].alias: missing", "domains[1].hostdevs[2].dev: 200 is not a device number",
				`domains[1].hostdevs[3].vendor: "xx" must be 4 hex digits`}},
		{"device in two guests", snapJSON(okDev, `{"name": "a", "state": "running", "hostdevs": [{"alias": "ua-usbctl-001-003", "bus": 1, "dev": 3}]}, {"name": "b", "state": "paused", "hostdevs": [{"alias": "hostdev0", "bus": 1, "dev": 3}]}`),
			[]string{"domains[1].hostdevs[0]: bus 1 dev 3 is held by domains[0].hostdevs[0] too"}},
		{"version", `{"devices": []}`, []string{"version: missing"}},
		{"other version", `{"version": 2, "devices": [{"bus": 0}]}`, []string{"version: snapshot version 2; this usbctl reads version 1"}},
		{"not an object", `[1, 2]`, []string{"want an object, got array"}},
		{"syntax", "{\n  \"version\": 1,\n  \"devices\": [}\n", []string{"line 3 column 15"}},
		{"taken_at and unobserved", `{"version": 1, "taken_at": "monday", "unobserved": [{"part": "disks", "error": "x"}]}`,
			[]string{`taken_at: "monday" is not an RFC 3339 time`, `unobserved[0].part: "disks": want "devices" or "domains"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errs, _ := ParseSnapshot([]byte(c.json))
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(got), len(c.want), strings.Join(got, "\n"))
			}
			for i, w := range c.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("error %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// TestParseSnapshotRoundTrip: what usbctl snapshot writes reads back
// unchanged, and hex fields are normalized as the daemon normalizes
// udev's.
func TestParseSnapshotRoundTrip(t *testing.T) {
	want := Snapshot{Version: 1, Host: "desk", TakenAt: "2026-11-25T15:42:03Z",
		Observed: Observed{
			Devices: []Device{
				{Bus: 1, Dev: 1, Vendor: "1d6b", Product: "0002", Port: "usb1", Class: "09", InterfaceClasses: []string{"09"}, DevPath: "/devices/pci0000:00/0000:00:14.0/usb1"},
				{Bus: 1, Dev: 3, Vendor: "046d", Product: "c52b", Port: "1-4.2", Class: "00", InterfaceClasses: []string{"03"}, Serial: "\x1b[2J<hostdev>", ProductName: "Receiver"},
			},
			Domains: []Domain{
				{Name: "gaming", UUID: "4b8e1a6c-2f0d-4c5e-9a3b-7d1e2f3a4b5c", State: StateRunning, Hostdevs: []Hostdev{{Alias: "ua-usbctl-001-003", Bus: 1, Dev: 3}, {Alias: "hostdev0", Vendor: "1050", Product: "0407"}}},
				{Name: "work", State: StateShutoff},
			},
		},
		Unobserved: nil,
	}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, errs, warns := ParseSnapshot(b)
	if len(errs) != 0 || len(warns) != 0 {
		t.Fatalf("errors %v, warnings %v", errs, warns)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got  %+v\n want %+v", got, want)
	}
	upper := strings.Replace(string(b), `"vendor":"046d","product":"c52b"`, `"vendor":"046D","product":"C52B"`, 1)
	got, errs, _ = ParseSnapshot([]byte(upper))
	if len(errs) != 0 || got.Devices[1].Vendor != "046d" || got.Devices[1].Product != "c52b" {
		t.Fatalf("upper-case ids: %v %+v", errs, got.Devices[1])
	}
}

func TestParseSnapshotUnknownFields(t *testing.T) {
	_, errs, warns := ParseSnapshot([]byte(`{"version": 1, "kernel": "6.1", "devices": [{"bus": 1, "dev": 2, "vendor": "046d", "product": "c52b", "seriall": "x"}]}`))
	if len(errs) != 0 || len(warns) != 2 || !strings.HasPrefix(warns[0].Error(), "kernel: unknown field") || !strings.HasPrefix(warns[1].Error(), "devices[0].seriall: unknown field") {
		t.Fatalf("errors %v, warnings %v", errs, warns)
	}
}

func TestParseSnapshotOverrides(t *testing.T) {
	good := `{"version": 1, "devices": [{"bus": 1, "dev": 3, "vendor": "046d", "product": "c52b", "port": "1-2"}],
	  "overrides": [{"key": {"bus": 1, "dev": 3}, "domain": "win11", "source": "usbctl attach by alice"}]}`
	snap, errs, _ := ParseSnapshot([]byte(good))
	if len(errs) != 0 || len(snap.Overrides) != 1 || snap.Overrides[0].Domain != "win11" {
		t.Fatalf("good: %v %+v", errs, snap.Overrides)
	}
	bad := `{"version": 1, "devices": [{"bus": 1, "dev": 3, "vendor": "046d", "product": "c52b", "port": "1-2"}],
	  "overrides": [{"key": {"bus": 1, "dev": 9}}, {"key": {"bus": 1, "dev": 3}}, {"key": {"bus": 1, "dev": 3}, "domain": "x"}]}`
	_, errs, _ = ParseSnapshot([]byte(bad))
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	got := strings.Join(all, "\n")
	if len(errs) != 2 || !strings.Contains(got, "overrides[0].key: bus 1 dev 9 is no device of the snapshot") || !strings.Contains(got, "overrides[2].key: bus 1 dev 3 is overrides[1]'s too") {
		t.Fatalf("bad:\n%s", got)
	}
}
