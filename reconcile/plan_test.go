package reconcile

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden Results in testdata/plan")

// goldenName turns a table case's name into a file name.
func goldenName(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-") + ".json"
}

// checkGolden compares the whole Result, as JSON, with its golden file:
// every action with its reason, every placement, every conflict. The
// goldens are the spec of Plan; review them by hand after -update.
func checkGolden(t *testing.T, name string, r Result) {
	t.Helper()
	got, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "plan", goldenName(name))
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./reconcile -run TestPlanTable -update writes it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("Result differs from %s (go test -update rewrites it; review the diff):\n%s", path, got)
	}
}

func d(bus, dev int, id, port string) Device {
	return Device{Bus: bus, Dev: dev, Vendor: id[:4], Product: id[5:], Port: port, Class: "00"}
}

func hub(bus, dev int, id, port string) Device {
	x := d(bus, dev, id, port)
	x.Class = "09"
	return x
}

func withSerial(x Device, s string) Device { x.Serial = s; return x }

func withIfaces(x Device, cs ...string) Device { x.InterfaceClasses = cs; return x }

func idm(label string, ids ...string) Match {
	m := Match{Label: label}
	for _, id := range ids {
		v, p, _ := strings.Cut(id, ":")
		if v == "*" {
			v = ""
		}
		if p == "*" {
			p = ""
		}
		m.IDs = append(m.IDs, IDPattern{Vendor: v, Product: p})
	}
	return m
}

func serialm(label, s string) Match { return Match{Label: label, Serial: s} }

func portm(label, p string) Match {
	pp := PortPattern{Path: p}
	if strings.HasSuffix(p, ".*") {
		pp = PortPattern{Path: strings.TrimSuffix(p, ".*"), Subtree: true}
	}
	return Match{Label: label, Port: &pp}
}

func classm(label string, cs ...string) Match { return Match{Label: label, Classes: cs} }

func dom(name string, prio int, mode Mode, ms ...Match) DomainRules {
	return DomainRules{Name: name, Priority: prio, Mode: mode, Devices: ms}
}

func run(name string, hs ...Hostdev) Domain {
	return Domain{Name: name, State: StateRunning, Hostdevs: hs}
}
func off(name string) Domain { return Domain{Name: name, State: StateShutoff} }
func ours(bus, dev int) Hostdev {
	k := DeviceKey{Bus: bus, Dev: dev}
	return Hostdev{Alias: k.Alias(), Bus: bus, Dev: dev}
}

// acts renders actions compactly: "attach vm 001:002".
func acts(r Result) []string {
	var out []string
	for _, a := range r.Actions {
		out = append(out, fmt.Sprintf("%s %s %s", a.Kind, a.Domain, a.Key))
	}
	return out
}

func placementOf(r Result, k DeviceKey) Placement { return placement(r, k) }

func placement(r Result, k DeviceKey) Placement {
	for _, p := range r.Placements {
		if p.Device.Key() == k {
			return p
		}
	}
	return Placement{}
}

var (
	receiver = d(1, 2, "046d:c52b", "1-1")
	yubiA    = withSerial(d(1, 3, "1050:0407", "1-2"), "111")
	yubiB    = withSerial(d(1, 4, "1050:0407", "1-3"), "222")
	deskHub  = hub(1, 5, "05e3:0610", "1-4")
	behind1  = d(1, 6, "0bda:8153", "1-4.1")
	behind2  = withIfaces(d(1, 7, "0b05:1872", "1-4.2.1"), "03")
	rootHub  = hub(1, 1, "1d6b:0002", "usb1")
	k        = func(x Device) DeviceKey { return x.Key() }
)

func TestPlanTable(t *testing.T) {
	tests := []struct {
		name      string
		rules     Rules
		obs       Observed
		ovs       []Override
		want      []string // actions
		conflicts int
		conflict  string               // substring of the first conflict's reason
		reason    map[DeviceKey]string // substring of the placement reason
	}{
		{
			name:  "exact id attaches to running domain by bus/dev",
			rules: Rules{Domains: []DomainRules{dom("win", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:   Observed{Devices: []Device{receiver, yubiA}, Domains: []Domain{run("win")}},
			want:  []string{"attach win 001:002"},
			reason: map[DeviceKey]string{k(receiver): `matched domain "win" device "rx"`,
				k(yubiA): "no rule matches"},
		},
		{
			name:   "stopped domain gets nothing",
			rules:  Rules{Domains: []DomainRules{dom("win", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:    Observed{Devices: []Device{receiver}, Domains: []Domain{off("win")}},
			reason: map[DeviceKey]string{k(receiver): `wanted by win, which is not running`},
		},
		{
			name:  "domain not defined in libvirt gets nothing",
			rules: Rules{Domains: []DomainRules{dom("ghost", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:   Observed{Devices: []Device{receiver}},
			// Not "not running" (issue 13 item 11): nothing will start it.
			reason: map[DeviceKey]string{k(receiver): `wanted by ghost, which is not defined in libvirt (virsh list --all does not show it: check the domain block's name, or define the domain)`},
		},
		{
			name: "stopped and undefined domains want it: each said as it is",
			rules: Rules{Domains: []DomainRules{
				dom("ghost", 0, ModeAllow, idm("rx", "046d:c52b")),
				dom("win", 0, ModeAllow, idm("rx", "046d:c52b")),
			}},
			obs:    Observed{Devices: []Device{receiver}, Domains: []Domain{{Name: "win", State: StateShutoff}}},
			reason: map[DeviceKey]string{k(receiver): `wanted by win, which is not running; and by ghost, which is not defined in libvirt`},
		},
		{
			name:  "paused domain keeps and gets devices",
			rules: Rules{Domains: []DomainRules{dom("win", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:   Observed{Devices: []Device{receiver}, Domains: []Domain{{Name: "win", State: StatePaused}}},
			want:  []string{"attach win 001:002"},
		},
		{
			name: "extreme priorities compare without overflow",
			rules: Rules{Domains: []DomainRules{
				dom("low", -(1<<63 - 1), ModeAllow, idm("rx", "046d:c52b")),
				dom("high", 1<<63-1, ModeAllow, idm("rx", "046d:c52b")),
			}},
			obs:  Observed{Devices: []Device{receiver}, Domains: []Domain{run("low"), run("high")}},
			want: []string{"attach high 001:002"},
		},
		{
			name: "identical devices told apart by serial",
			rules: Rules{Domains: []DomainRules{
				dom("a", 0, ModeAllow, serialm("key", "111")),
				dom("b", 0, ModeAllow, serialm("key", "222")),
			}},
			obs:  Observed{Devices: []Device{yubiB, yubiA}, Domains: []Domain{run("b"), run("a")}},
			want: []string{"attach a 001:003", "attach b 001:004"},
		},
		{
			name: "identical serial-less devices told apart by port",
			rules: Rules{Domains: []DomainRules{
				dom("a", 0, ModeAllow, portm("left", "1-1")),
				dom("b", 0, ModeAllow, portm("right", "1-2")),
			}},
			obs:  Observed{Devices: []Device{d(1, 9, "046d:c52b", "1-2"), d(1, 8, "046d:c52b", "1-1")}, Domains: []Domain{run("a"), run("b")}},
			want: []string{"attach a 001:008", "attach b 001:009"},
		},
		{
			name:   "port subtree takes devices behind the hub, not the hub",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, portm("desk", "1-4.*"))}},
			obs:    Observed{Devices: []Device{deskHub, behind1, behind2, receiver}, Domains: []Domain{run("a")}},
			want:   []string{"attach a 001:006", "attach a 001:007"},
			reason: map[DeviceKey]string{k(deskHub): "no rule matches"},
		},
		{
			name:   "hub refused by wildcard id",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("all-genesys", "05e3:*"))}},
			obs:    Observed{Devices: []Device{deskHub}, Domains: []Domain{run("a")}},
			reason: map[DeviceKey]string{k(deskHub): "hub: placed only by an exact"},
		},
		{
			name:   "hub refused by class",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, classm("hubs", "09"))}},
			obs:    Observed{Devices: []Device{deskHub}, Domains: []Domain{run("a")}},
			reason: map[DeviceKey]string{k(deskHub): "hub: placed only by an exact"},
		},
		{
			name:   "hub refused by exact port",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, portm("p", "1-4"))}},
			obs:    Observed{Devices: []Device{deskHub}, Domains: []Domain{run("a")}},
			reason: map[DeviceKey]string{k(deskHub): "hub: placed only by an exact"},
		},
		{
			name:  "hub and root hub refused by mode all and deny",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAll), dom("b", 0, ModeDeny, idm("x", "dead:beef"))}},
			obs:   Observed{Devices: []Device{rootHub, deskHub}, Domains: []Domain{run("a"), run("b")}},
			reason: map[DeviceKey]string{k(rootHub): "hub: placed only by an exact",
				k(deskHub): "hub: placed only by an exact"},
		},
		{
			name:  "hub passed by exact id",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("h", "05e3:0610"))}},
			obs:   Observed{Devices: []Device{deskHub}, Domains: []Domain{run("a")}},
			want:  []string{"attach a 001:005"},
		},
		{
			name:  "class matches an interface class",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, classm("hid", "03"))}},
			obs:   Observed{Devices: []Device{behind2, behind1}, Domains: []Domain{run("a")}},
			want:  []string{"attach a 001:007"},
		},
		{
			name:  "wildcard product-only and vendor-only ids",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("asus", "0b05:*")), dom("b", 0, ModeAllow, idm("any-1872", "*:c52b"))}},
			obs:   Observed{Devices: []Device{receiver, behind2}, Domains: []Domain{run("a"), run("b")}},
			want:  []string{"attach b 001:002", "attach a 001:007"},
		},
		{
			name:  "all criteria must match",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, Match{Label: "x", IDs: []IDPattern{{Vendor: "1050"}}, Serial: "222"})}},
			obs:   Observed{Devices: []Device{yubiA, yubiB}, Domains: []Domain{run("a")}},
			want:  []string{"attach a 001:004"},
		},
		{
			name:  "mode deny takes all but listed",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeDeny, idm("rx", "046d:c52b"))}},
			obs:   Observed{Devices: []Device{receiver, yubiA}, Domains: []Domain{run("a")}},
			want:  []string{"attach a 001:003"},
		},
		{
			// Found by comparing Plan with its rewrite on random worlds:
			// a refusal of b was overwritten by a's want.
			name:   "mode deny refuses its listed devices whatever domains come before it",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAll), dom("b", 0, ModeDeny, idm("rx", "046d:c52b"))}},
			obs:    Observed{Devices: []Device{receiver, yubiA}, Domains: []Domain{off("a"), run("b")}},
			want:   []string{"attach b 001:003"},
			reason: map[DeviceKey]string{k(receiver): "wanted by a, which is not running"},
		},
		{
			name: "exclude wins over everything and detaches what we placed",
			rules: Rules{Domains: []DomainRules{dom("a", 100, ModeAll)},
				Excludes: []Match{{Label: "host-kbd", Source: "u.hcl:3", IDs: []IDPattern{{Vendor: "046d", Product: "c52b"}}}}},
			obs:    Observed{Devices: []Device{receiver, yubiA}, Domains: []Domain{run("a", ours(1, 2))}},
			want:   []string{"detach a 001:002", "attach a 001:003"},
			reason: map[DeviceKey]string{k(receiver): `excluded by exclude "host-kbd" (u.hcl:3)`},
		},
		{
			name:  "higher priority wins",
			rules: Rules{Domains: []DomainRules{dom("a", 1, ModeAllow, idm("rx", "046d:c52b")), dom("b", 5, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:   Observed{Devices: []Device{receiver}, Domains: []Domain{run("a"), run("b")}},
			want:  []string{"attach b 001:002"},
		},
		{
			name:  "explicit rule beats mode all at equal priority",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAll), dom("z", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:   Observed{Devices: []Device{receiver}, Domains: []Domain{run("a"), run("z")}},
			want:  []string{"attach z 001:002"},
		},
		{
			name:      "equal priority: name order decides, conflict reported",
			rules:     Rules{Domains: []DomainRules{dom("b", 0, ModeAllow, idm("rx", "046d:c52b")), dom("a", 0, ModeAllow, idm("rx", "046d:*"))}},
			obs:       Observed{Devices: []Device{receiver}, Domains: []Domain{run("a"), run("b")}},
			want:      []string{"attach a 001:002"},
			conflicts: 1,
			conflict:  `"a" chosen by name order`,
		},
		{
			name:   "sticky: higher priority without preempt does not take it",
			rules:  Rules{Domains: []DomainRules{dom("a", 1, ModeAllow, idm("rx", "046d:c52b")), dom("b", 5, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:    Observed{Devices: []Device{receiver}, Domains: []Domain{run("a", ours(1, 2)), run("b")}},
			reason: map[DeviceKey]string{k(receiver): `stays although "b" has higher priority (5 > 1) without preempt`},
		},
		{
			name: "preempt moves it: detach then attach",
			rules: Rules{Domains: []DomainRules{dom("a", 1, ModeAllow, idm("rx", "046d:c52b")),
				{Name: "b", Priority: 5, Preempt: true, Mode: ModeAllow, Devices: []Match{idm("rx", "046d:c52b")}}}},
			obs:  Observed{Devices: []Device{receiver}, Domains: []Domain{run("a", ours(1, 2)), run("b")}},
			want: []string{"detach a 001:002", "attach b 001:002"},
		},
		{
			name:  "preempt needs strictly higher priority",
			rules: Rules{Domains: []DomainRules{dom("b", 5, ModeAllow, idm("rx", "046d:c52b")), {Name: "a", Priority: 5, Preempt: true, Mode: ModeAllow, Devices: []Match{idm("rx", "046d:c52b")}}}},
			obs:   Observed{Devices: []Device{receiver}, Domains: []Domain{run("a"), run("b", ours(1, 2))}},
			// a wins the name order but b holds it and a does not outrank b.
			conflicts: 1,
			conflict:  `"b" keeps it where it is`,
			reason:    map[DeviceKey]string{k(receiver): `stays: "a" ranks first only by name or rule kind`},
		},
		{
			name:  "winner stops: the other domain gets it",
			rules: Rules{Domains: []DomainRules{dom("a", 1, ModeAllow, idm("rx", "046d:c52b")), dom("b", 5, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:   Observed{Devices: []Device{receiver}, Domains: []Domain{run("a"), off("b")}},
			want:  []string{"attach a 001:002"},
		},
		{
			name:  "unplugged device is detached",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:   Observed{Domains: []Domain{run("a", ours(1, 2))}},
			want:  []string{"detach a 001:002"},
		},
		{
			name:  "no longer wanted is detached",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("rx", "1234:5678"))}},
			obs:   Observed{Devices: []Device{receiver}, Domains: []Domain{run("a", ours(1, 2))}},
			want:  []string{"detach a 001:002"},
		},
		{
			name:      "duplicate: attached to two domains, one keeps it",
			rules:     Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("rx", "046d:c52b")), dom("b", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:       Observed{Devices: []Device{receiver}, Domains: []Domain{run("a", ours(1, 2)), run("b", ours(1, 2))}},
			want:      []string{"detach b 001:002"},
			conflicts: 1,
		},
		{
			name:      "foreign hostdev never touched; blocks placement elsewhere as conflict",
			rules:     Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:       Observed{Devices: []Device{receiver}, Domains: []Domain{run("a"), run("manual", Hostdev{Alias: "hostdev0", Bus: 1, Dev: 2})}},
			conflicts: 1,
			reason:    map[DeviceKey]string{k(receiver): `held by a hostdev not managed by usbctl in domain "manual"`},
		},
		{
			name:      "foreign hostdev by vendor:product only also holds the device",
			rules:     Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:       Observed{Devices: []Device{receiver}, Domains: []Domain{run("a"), run("manual", Hostdev{Alias: "hostdev0", Vendor: "046d", Product: "c52b"})}},
			conflicts: 1,
		},
		{
			name:  "foreign hostdev of an unwanted device: nothing, no conflict",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("rx", "1234:5678"))}},
			obs:   Observed{Devices: []Device{receiver}, Domains: []Domain{run("a", Hostdev{Alias: "hostdev0", Bus: 1, Dev: 2})}},
		},
		{
			name:  "foreign hostdev in the wanting domain itself: no action, no conflict",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:   Observed{Devices: []Device{receiver}, Domains: []Domain{run("a", Hostdev{Alias: "hostdev0", Bus: 1, Dev: 2})}},
		},
		{
			name:  "hostdevs of inactive domains are ignored",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:   Observed{Devices: []Device{receiver}, Domains: []Domain{run("a"), {Name: "b", State: StateShutoff, Hostdevs: []Hostdev{ours(1, 2), {Alias: "hostdev0", Bus: 1, Dev: 2}}}}},
			want:  []string{"attach a 001:002"},
		},
		{
			name: "output order: detaches first, then by key and domain",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("y", "1050:*")),
				dom("b", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:  Observed{Devices: []Device{yubiB, receiver, yubiA}, Domains: []Domain{run("b"), run("a", ours(2, 9), ours(1, 2))}},
			want: []string{"detach a 001:002", "detach a 002:009", "attach b 001:002", "attach a 001:003", "attach a 001:004"},
		},
		// Runtime assignments (usbctl attach, detach, move).
		{
			name:   "assignment attaches a device no rule wants",
			rules:  Rules{Domains: []DomainRules{dom("other", 0, ModeAllow, idm("y", "1050:0407"))}},
			obs:    Observed{Devices: []Device{receiver}, Domains: []Domain{run("win")}},
			ovs:    []Override{{Key: k(receiver), Domain: "win", Source: "usbctl attach by alice"}},
			want:   []string{"attach win 001:002"},
			reason: map[DeviceKey]string{k(receiver): "runtime assignment: usbctl attach by alice"},
		},
		{
			name: "assignment outranks a higher-priority preempting rule and moves the device",
			rules: Rules{Domains: []DomainRules{func() DomainRules {
				x := dom("a", 10, ModeAllow, idm("rx", "046d:c52b"))
				x.Preempt = true
				return x
			}()}},
			obs:  Observed{Devices: []Device{receiver}, Domains: []Domain{run("a", ours(1, 2)), run("b")}},
			ovs:  []Override{{Key: k(receiver), Domain: "b", Source: "usbctl move by alice"}},
			want: []string{"detach a 001:002", "attach b 001:002"},
		},
		{
			name:   "assignment to the host detaches a rule-placed device and keeps it there",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:    Observed{Devices: []Device{receiver}, Domains: []Domain{run("a", ours(1, 2))}},
			ovs:    []Override{{Key: k(receiver), Source: "usbctl detach by alice, until 14:00:00"}},
			want:   []string{"detach a 001:002"},
			reason: map[DeviceKey]string{k(receiver): "kept on the host by a runtime assignment: usbctl detach by alice"},
		},
		{
			name:   "an exclude outranks an assignment, which does not apply",
			rules:  Rules{Excludes: []Match{idm("kbd", "046d:c52b")}},
			obs:    Observed{Devices: []Device{receiver}, Domains: []Domain{run("win")}},
			ovs:    []Override{{Key: k(receiver), Domain: "win", Source: "usbctl attach by alice"}},
			reason: map[DeviceKey]string{k(receiver): `excluded by exclude "kbd"; the runtime assignment (usbctl attach by alice) does not apply`},
		},
		{
			name:   "assignment to a domain that is not running: the device leaves its rule domain and waits",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:    Observed{Devices: []Device{receiver}, Domains: []Domain{run("a", ours(1, 2)), off("b")}},
			ovs:    []Override{{Key: k(receiver), Domain: "b", Source: "usbctl attach by alice"}},
			want:   []string{"detach a 001:002"},
			reason: map[DeviceKey]string{k(receiver): `runtime assignment to "b", which is not running`},
		},
		{
			name:      "assignment to a device a hostdev not ours holds: nothing done, conflict named",
			obs:       Observed{Devices: []Device{receiver}, Domains: []Domain{run("win"), run("hand", Hostdev{Alias: "hostdev0", Bus: 1, Dev: 2})}},
			ovs:       []Override{{Key: k(receiver), Domain: "win", Source: "usbctl attach by alice"}},
			conflicts: 1,
			conflict:  "wanted by win but held by a hostdev usbctl does not own in hand",
		},
		{
			name:   "assignment of a device already where it says: nothing to do",
			rules:  Rules{Domains: []DomainRules{dom("a", 5, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:    Observed{Devices: []Device{receiver}, Domains: []Domain{run("a"), run("b", ours(1, 2))}},
			ovs:    []Override{{Key: k(receiver), Domain: "b", Source: "usbctl attach by alice"}},
			reason: map[DeviceKey]string{k(receiver): "runtime assignment"},
		},
		{
			name: "assignment names a hub by its key: attached like an exact rule",
			obs:  Observed{Devices: []Device{deskHub}, Domains: []Domain{run("win")}},
			ovs:  []Override{{Key: k(deskHub), Domain: "win", Source: "usbctl attach by alice"}},
			want: []string{"attach win 001:005"},
		},
		{
			name: "assignments of absent devices are ignored",
			obs:  Observed{Devices: []Device{receiver}, Domains: []Domain{run("win")}},
			ovs:  []Override{{Key: DeviceKey{Bus: 9, Dev: 9}, Domain: "win", Source: "usbctl attach by alice"}},
		},
		// Ask me: offered, not attached.
		{
			name:   "mode ask offers a device and attaches nothing",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAsk)}},
			obs:    Observed{Devices: []Device{receiver}, Domains: []Domain{run("a")}},
			reason: map[DeviceKey]string{k(receiver): `offered to "a" (domain "a" mode ask); waits on the host`},
		},
		{
			name:   "mode ask attaches its listed devices without asking",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAsk, idm("rx", "046d:c52b"))}},
			obs:    Observed{Devices: []Device{receiver, yubiA}, Domains: []Domain{run("a")}},
			want:   []string{"attach a 001:002"},
			reason: map[DeviceKey]string{k(yubiA): `offered to "a"`},
		},
		{
			name: "an ask device block offers what it matches",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAllow, func() Match {
				m := idm("sticks", "1050:*")
				m.Ask = true
				return m
			}(), idm("rx", "046d:c52b"))}},
			obs:    Observed{Devices: []Device{receiver, yubiA}, Domains: []Domain{run("a")}},
			want:   []string{"attach a 001:002"},
			reason: map[DeviceKey]string{k(yubiA): `offered to "a" (domain "a" device "sticks")`},
		},
		{
			name:   "a device already in the ask domain stays without a question",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAsk)}},
			obs:    Observed{Devices: []Device{receiver}, Domains: []Domain{run("a", ours(1, 2))}},
			reason: map[DeviceKey]string{k(receiver): `matched domain "a" mode ask`},
		},
		{
			name:   "mode ask never offers a hub",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAsk)}},
			obs:    Observed{Devices: []Device{deskHub}, Domains: []Domain{run("a")}},
			reason: map[DeviceKey]string{k(deskHub): "hub"},
		},
		{
			name:  "a higher-priority allow rule beats an ask domain: attached, not offered",
			rules: Rules{Domains: []DomainRules{dom("a", 0, ModeAsk), dom("b", 1, ModeAllow, idm("rx", "046d:c52b"))}},
			obs:   Observed{Devices: []Device{receiver}, Domains: []Domain{run("a"), run("b")}},
			want:  []string{"attach b 001:002"},
		},
		{
			name:   "an ask domain that is not running offers nothing",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAsk)}},
			obs:    Observed{Devices: []Device{receiver}, Domains: []Domain{off("a")}},
			reason: map[DeviceKey]string{k(receiver): "wanted by a, which is not running"},
		},
		{
			name:   "an answer is an assignment: it outranks the offer",
			rules:  Rules{Domains: []DomainRules{dom("a", 0, ModeAsk)}},
			obs:    Observed{Devices: []Device{receiver, yubiA}, Domains: []Domain{run("a")}},
			ovs:    []Override{{Key: k(receiver), Domain: "a", Source: "usbctl attach by alice"}, {Key: k(yubiA), Source: "offer unanswered"}},
			want:   []string{"attach a 001:002"},
			reason: map[DeviceKey]string{k(yubiA): "kept on the host by a runtime assignment: offer unanswered"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Plan(tc.rules, tc.obs, tc.ovs)
			checkGolden(t, tc.name, r)
			if got := acts(r); !slices.Equal(got, tc.want) {
				t.Errorf("actions:\n got  %q\n want %q", got, tc.want)
			}
			if len(r.Conflicts) != tc.conflicts {
				t.Errorf("conflicts = %+v, want %d", r.Conflicts, tc.conflicts)
			}
			if tc.conflict != "" && (len(r.Conflicts) == 0 || !strings.Contains(r.Conflicts[0].Reason, tc.conflict)) {
				t.Errorf("conflicts = %+v, want the first to contain %q", r.Conflicts, tc.conflict)
			}
			for key, sub := range tc.reason {
				if p := placement(r, key); !strings.Contains(p.Reason, sub) {
					t.Errorf("placement of %s: reason %q, want it to contain %q", key, p.Reason, sub)
				}
			}
			if len(r.Placements) != len(tc.obs.Devices) {
				t.Errorf("%d placements for %d devices", len(r.Placements), len(tc.obs.Devices))
			}
			for _, a := range r.Actions {
				if a.Alias != a.Key.Alias() && a.Kind == Attach {
					t.Errorf("attach alias %q for key %s", a.Alias, a.Key)
				}
			}
		})
	}
}

func TestPlanActionCarriesDeviceAndRule(t *testing.T) {
	rules := Rules{Domains: []DomainRules{{Name: "win", Source: "u.hcl:1", Mode: ModeAllow,
		Devices: []Match{{Label: "rx", Source: "u.hcl:2", IDs: []IDPattern{{Vendor: "046d", Product: "c52b"}}}}}}}
	r := Plan(rules, Observed{Devices: []Device{receiver}, Domains: []Domain{run("win")}}, nil)
	if len(r.Actions) != 1 {
		t.Fatalf("actions = %+v", r.Actions)
	}
	a := r.Actions[0]
	if a.Alias != "ua-usbctl-001-002" || a.Device == nil || !reflect.DeepEqual(*a.Device, receiver) || a.Rule != `domain "win" device "rx" (u.hcl:2)` {
		t.Fatalf("action = %+v", a)
	}
	if p := r.Placements[0]; p.Domain != "win" || p.Rule != a.Rule {
		t.Fatalf("placement = %+v", p)
	}
}

// apply carries out actions on an Observed, as a perfect hypervisor would.
func apply(obs Observed, r Result) Observed {
	out := Observed{Devices: obs.Devices}
	for _, dm := range obs.Domains {
		dm.Hostdevs = slices.Clone(dm.Hostdevs)
		for _, a := range r.Actions {
			if a.Domain != dm.Name {
				continue
			}
			switch a.Kind {
			case Detach:
				dm.Hostdevs = slices.DeleteFunc(dm.Hostdevs, func(h Hostdev) bool { return h.Alias == a.Alias })
			case Attach:
				dm.Hostdevs = append(dm.Hostdevs, Hostdev{Alias: a.Alias, Bus: a.Key.Bus, Dev: a.Key.Dev})
			}
		}
		out.Domains = append(out.Domains, dm)
	}
	return out
}

// randomWorld builds a small random world where collisions are likely.
func randomWorld(rng *rand.Rand) (Rules, Observed, []Override) {
	ids := []string{"046d:c52b", "1050:0407", "05e3:0610", "0b05:1872", "0483:df11"}
	ports := []string{"1-1", "1-2", "1-4", "1-4.1", "1-4.2", "1-4.2.3", "2-1"}
	var obs Observed
	used := map[DeviceKey]bool{}
	for range rng.IntN(8) {
		x := d(1+rng.IntN(2), 2+rng.IntN(6), ids[rng.IntN(len(ids))], ports[rng.IntN(len(ports))])
		if used[x.Key()] {
			continue
		}
		used[x.Key()] = true
		if rng.IntN(3) == 0 {
			x.Class = "09"
		}
		if rng.IntN(2) == 0 {
			x.Serial = fmt.Sprint(rng.IntN(3))
		}
		if rng.IntN(3) == 0 {
			x.InterfaceClasses = []string{"03"}
		}
		obs.Devices = append(obs.Devices, x)
	}
	names := []string{"a", "b", "c", "d"}
	var rules Rules
	for _, n := range names[:1+rng.IntN(len(names))] {
		dr := DomainRules{Name: n, Priority: rng.IntN(3), Preempt: rng.IntN(2) == 0, Mode: []Mode{ModeAllow, ModeAllow, ModeDeny, ModeAll, ModeAsk}[rng.IntN(5)]}
		if dr.Mode != ModeAll {
			for j := range rng.IntN(3) {
				var m Match
				switch rng.IntN(5) {
				case 0:
					m = idm("", ids[rng.IntN(len(ids))])
				case 1:
					m = idm("", ids[rng.IntN(len(ids))][:4]+":*")
				case 2:
					m = serialm("", fmt.Sprint(rng.IntN(3)))
				case 3:
					m = portm("", ports[rng.IntN(len(ports))]+[]string{"", ".*"}[rng.IntN(2)])
				default:
					m = classm("", []string{"03", "09", "00"}[rng.IntN(3)])
				}
				m.Label = fmt.Sprint("m", j)
				m.Ask = dr.Mode == ModeAllow && rng.IntN(4) == 0
				dr.Devices = append(dr.Devices, m)
			}
		}
		rules.Domains = append(rules.Domains, dr)
		state := []DomainState{StateRunning, StateRunning, StateShutoff, StatePaused}[rng.IntN(4)]
		dm := Domain{Name: n, State: state}
		for range rng.IntN(3) {
			if len(obs.Devices) == 0 {
				break
			}
			x := obs.Devices[rng.IntN(len(obs.Devices))]
			h := ours(x.Bus, x.Dev)
			if rng.IntN(4) == 0 {
				h.Alias = "hostdev" + fmt.Sprint(rng.IntN(9))
			}
			if rng.IntN(6) == 0 {
				h.Bus, h.Dev = 3, 99 // gone
				if h.Owned() {
					h.Alias = DeviceKey{Bus: 3, Dev: 99}.Alias()
				}
			}
			// libvirt keeps aliases unique within a domain.
			if !slices.ContainsFunc(dm.Hostdevs, func(o Hostdev) bool { return o.Alias == h.Alias }) {
				dm.Hostdevs = append(dm.Hostdevs, h)
			}
		}
		obs.Domains = append(obs.Domains, dm)
	}
	if rng.IntN(3) == 0 {
		rules.Excludes = append(rules.Excludes, idm("ex", ids[rng.IntN(len(ids))]))
	}
	// Runtime assignments: some present devices (one per key), to a
	// domain with rules, one without (or unknown), or the host.
	var ovs []Override
	for _, x := range obs.Devices {
		if rng.IntN(3) != 0 {
			continue
		}
		to := []string{"", "a", "b", "zz"}[rng.IntN(4)]
		ovs = append(ovs, Override{Key: x.Key(), Domain: to, Source: "usbctl attach by test"})
	}
	return rules, obs, ovs
}

// checkInvariants asserts what must hold for any plan.
func checkInvariants(t *testing.T, rules Rules, obs Observed, ovs []Override, r Result) {
	t.Helper()
	foreignBefore := map[string][]Hostdev{}
	for _, dm := range obs.Domains {
		for _, h := range dm.Hostdevs {
			if !h.Owned() {
				foreignBefore[dm.Name] = append(foreignBefore[dm.Name], h)
			}
		}
	}
	for _, a := range r.Actions {
		if !strings.HasPrefix(a.Alias, AliasPrefix) {
			t.Fatalf("action on a hostdev we do not own: %+v", a)
		}
	}
	after := apply(obs, r)
	holders := map[DeviceKey][]string{}
	for _, dm := range after.Domains {
		var foreign []Hostdev
		for _, h := range dm.Hostdevs {
			if !h.Owned() {
				foreign = append(foreign, h)
				continue
			}
			if !dm.State.Active() {
				continue
			}
			k, _ := h.Key()
			holders[k] = append(holders[k], dm.Name)
		}
		if !slices.Equal(foreign, foreignBefore[dm.Name]) {
			t.Fatalf("foreign hostdevs of %s changed: %+v → %+v", dm.Name, foreignBefore[dm.Name], foreign)
		}
	}
	byKey := map[DeviceKey]Device{}
	for _, x := range obs.Devices {
		byKey[x.Key()] = x
	}
	for key, ds := range holders {
		if len(ds) > 1 {
			t.Fatalf("device %s on %v after applying %v", key, ds, acts(r))
		}
		x, ok := byKey[key]
		if !ok {
			t.Fatalf("absent device %s still attached to %v", key, ds)
		}
		for _, ex := range rules.Excludes {
			if m, _ := Matches(ex, x); m {
				t.Fatalf("excluded device %s attached to %v", key, ds)
			}
		}
	}
	for _, a := range r.Actions {
		if a.Kind != Attach {
			continue
		}
		x := byKey[a.Key]
		if !x.IsHub() {
			continue
		}
		exact := false
		for _, dr := range rules.Domains {
			if dr.Name != a.Domain || dr.Mode != ModeAllow && dr.Mode != ModeAsk {
				continue
			}
			for _, m := range dr.Devices {
				if ok, ex := Matches(m, x); ok && ex {
					exact = true
				}
			}
		}
		if slices.ContainsFunc(ovs, func(o Override) bool { return o.Key == a.Key && o.Domain == a.Domain }) {
			exact = true // a person named this very device
		}
		if !exact {
			t.Fatalf("hub %s attached to %s without an exact rule: %+v", a.Key, a.Domain, a)
		}
	}
	// Runtime assignments outrank every rule, exclude aside: the device
	// ends where the assignment says, unless a hostdev not ours holds it;
	// an offered device is on the host.
	state := map[string]DomainState{}
	for _, dm := range obs.Domains {
		state[dm.Name] = dm.State
	}
	for _, o := range ovs {
		x := byKey[o.Key]
		p := placementOf(r, o.Key)
		excluded := false
		for _, ex := range rules.Excludes {
			if m, _ := Matches(ex, x); m {
				excluded = true
			}
		}
		switch {
		case excluded:
			if p.Kind != Excluded || !strings.Contains(p.Reason, o.Source) {
				t.Fatalf("assigned and excluded %s: %+v", o.Key, p)
			}
		case p.Kind == HeldForeign:
		case o.Domain == "" || !state[o.Domain].Active():
			if len(holders[o.Key]) != 0 {
				t.Fatalf("%s assigned to %q is on %v", o.Key, o.Domain, holders[o.Key])
			}
		default:
			if !slices.Equal(holders[o.Key], []string{o.Domain}) {
				t.Fatalf("%s assigned to %q is on %v after %v", o.Key, o.Domain, holders[o.Key], acts(r))
			}
		}
	}
	for _, p := range r.Placements {
		if p.Kind == Offered && (len(holders[p.Device.Key()]) != 0 || p.OfferedTo == "") {
			t.Fatalf("offered %s is on %v: %+v", p.Device.Key(), holders[p.Device.Key()], p)
		}
	}
	// Idempotence: after applying, nothing is left to do.
	if again := Plan(rules, after, ovs); len(again.Actions) != 0 {
		t.Fatalf("plan not idempotent: after %v it wants %v", acts(r), acts(again))
	}
}

func TestPlanProperties(t *testing.T) {
	const seed = 20261124
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range 20000 {
		rules, obs, ovs := randomWorld(rng)
		r := Plan(rules, obs, ovs)
		t.Run("", func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("seed %d iteration %d\nrules %+v\nobs %+v", seed, i, rules, obs)
				}
			}()
			checkInvariants(t, rules, obs, ovs, r)
			// Input order must not matter.
			shuffled := obs
			shuffled.Devices = slices.Clone(obs.Devices)
			shuffled.Domains = slices.Clone(obs.Domains)
			rng.Shuffle(len(shuffled.Devices), func(i, j int) { shuffled.Devices[i], shuffled.Devices[j] = shuffled.Devices[j], shuffled.Devices[i] })
			rng.Shuffle(len(shuffled.Domains), func(i, j int) { shuffled.Domains[i], shuffled.Domains[j] = shuffled.Domains[j], shuffled.Domains[i] })
			if r2 := Plan(rules, shuffled, ovs); !reflect.DeepEqual(r, r2) {
				t.Fatalf("plan depends on input order:\n%v\n%v", acts(r), acts(r2))
			}
		})
		if t.Failed() {
			return
		}
	}
}
