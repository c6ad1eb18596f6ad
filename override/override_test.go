package override

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/usbctl/usbctl/reconcile"
)

var (
	t0    = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	stick = reconcile.Device{Bus: 1, Dev: 5, Port: "1-1", Vendor: "0781", Product: "5583", Serial: "4C53", Manufacturer: "SanDisk", ProductName: "Ultra Fit"}
	kbd   = reconcile.Device{Bus: 1, Dev: 6, Port: "1-2", Vendor: "04d9", Product: "0006"}
	alice = Setter{UID: 1000, User: "alice", Via: "usbctl attach"}
)

func TestExpire(t *testing.T) {
	running := []reconcile.Domain{{Name: "win11", State: reconcile.StateRunning}, {Name: "work", State: reconcile.StateShutoff}}
	replugged := stick
	replugged.Dev = 9 // the kernel's new device number after a replug
	moved := stick
	moved.Port = "1-3" // the same number on another port: another device
	swapped := stick
	swapped.Serial = "other" // number reused by another stick
	for _, tc := range []struct {
		name  string
		o     Override
		w     World
		ended Reason // "" keeps it
	}{
		{"present, until unplug", Override{Device: IdentityOf(stick), Domain: "win11", Lifetime: UntilUnplug},
			World{Now: t0, Devices: []reconcile.Device{stick, kbd}, DevicesListed: true}, ""},
		{"unplugged", Override{Device: IdentityOf(stick), Domain: "win11", Lifetime: UntilUnplug},
			World{Now: t0, Devices: []reconcile.Device{kbd}, DevicesListed: true}, Unplugged},
		{"replugged: new device number", Override{Device: IdentityOf(stick), Domain: "win11", Lifetime: UntilUnplug},
			World{Now: t0, Devices: []reconcile.Device{replugged}, DevicesListed: true}, Unplugged},
		{"same number, other port", Override{Device: IdentityOf(stick), Lifetime: UntilUnplug},
			World{Now: t0, Devices: []reconcile.Device{moved}, DevicesListed: true}, Unplugged},
		{"same number, other serial", Override{Device: IdentityOf(stick), Lifetime: UntilUnplug},
			World{Now: t0, Devices: []reconcile.Device{swapped}, DevicesListed: true}, Unplugged},
		{"devices not listed yet (restart)", Override{Device: IdentityOf(stick), Domain: "win11", Lifetime: UntilUnplug},
			World{Now: t0}, ""},
		{"for, time left", Override{Device: IdentityOf(stick), Domain: "win11", Lifetime: For, Until: t0.Add(time.Second)},
			World{Now: t0, Devices: []reconcile.Device{stick}, DevicesListed: true}, ""},
		{"for, time up", Override{Device: IdentityOf(stick), Domain: "win11", Lifetime: For, Until: t0},
			World{Now: t0, Devices: []reconcile.Device{stick}, DevicesListed: true}, TimeUp},
		{"for, to the host, time up", Override{Device: IdentityOf(stick), Lifetime: For, Until: t0.Add(-time.Hour)},
			World{Now: t0, Devices: []reconcile.Device{stick}, DevicesListed: true}, TimeUp},
		{"for, unplugged before the time", Override{Device: IdentityOf(stick), Domain: "win11", Lifetime: For, Until: t0.Add(time.Hour)},
			World{Now: t0, DevicesListed: true}, Unplugged},
		{"until stop, running", Override{Device: IdentityOf(stick), Domain: "win11", Lifetime: UntilStop},
			World{Now: t0, Devices: []reconcile.Device{stick}, Domains: running, DevicesListed: true, DomainsListed: true}, ""},
		{"until stop, stopped", Override{Device: IdentityOf(stick), Domain: "work", Lifetime: UntilStop},
			World{Now: t0, Devices: []reconcile.Device{stick}, Domains: running, DevicesListed: true, DomainsListed: true}, DomainDown},
		{"until stop, undefined", Override{Device: IdentityOf(stick), Domain: "gone", Lifetime: UntilStop},
			World{Now: t0, Devices: []reconcile.Device{stick}, Domains: running, DevicesListed: true, DomainsListed: true}, DomainDown},
		{"until stop, domains not listed yet", Override{Device: IdentityOf(stick), Domain: "work", Lifetime: UntilStop},
			World{Now: t0, Devices: []reconcile.Device{stick}, DevicesListed: true}, ""},
		{"until unplug ignores the domain's state", Override{Device: IdentityOf(stick), Domain: "work", Lifetime: UntilUnplug},
			World{Now: t0, Devices: []reconcile.Device{stick}, Domains: running, DevicesListed: true, DomainsListed: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep, ended := Expire([]Override{tc.o}, tc.w)
			switch {
			case tc.ended == "" && (len(keep) != 1 || len(ended) != 0):
				t.Fatalf("ended %+v, want kept", ended)
			case tc.ended != "" && (len(keep) != 0 || len(ended) != 1 || ended[0].Why != tc.ended):
				t.Fatalf("kept %d, ended %+v; want ended: %s", len(keep), ended, tc.ended)
			}
		})
	}
}

func TestSetRemoveNext(t *testing.T) {
	a := Override{Device: IdentityOf(stick), Domain: "win11", Lifetime: For, Until: t0.Add(time.Hour)}
	b := Override{Device: IdentityOf(kbd), Lifetime: For, Until: t0.Add(time.Minute)}
	ovs, old := Set(nil, a)
	if old != nil || len(ovs) != 1 {
		t.Fatal(ovs, old)
	}
	ovs, _ = Set(ovs, b)
	if n := Next(ovs); !n.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Next = %v", n)
	}
	moved := a
	moved.Domain, moved.Lifetime, moved.Until = "work", UntilUnplug, time.Time{}
	ovs, old = Set(ovs, moved)
	if old == nil || old.Domain != "win11" || len(ovs) != 2 {
		t.Fatalf("one device, one override: %+v, old %+v", ovs, old)
	}
	if o, ok := Find(ovs, stick.Key()); !ok || o.Domain != "work" {
		t.Fatalf("Find = %+v %v", o, ok)
	}
	ovs, old = Remove(ovs, kbd.Key())
	if old == nil || len(ovs) != 1 || !Next(ovs).IsZero() {
		t.Fatalf("Remove: %+v %+v", ovs, old)
	}
	if _, old = Remove(ovs, reconcile.DeviceKey{Bus: 9, Dev: 9}); old != nil {
		t.Fatal("removed what was not there")
	}
}

func TestDescribe(t *testing.T) {
	o := Override{Device: IdentityOf(stick), Domain: "win11", Lifetime: For, Until: t0.Add(2 * time.Hour), SetBy: alice, SetAt: t0}
	if got, want := o.Describe(), "usbctl attach by alice at 2026-11-26 12:00:00, until 14:00:00"; got != want {
		t.Errorf("%s\nwant %s", got, want)
	}
	o.Lifetime, o.SetBy.User = UntilStop, ""
	if got := o.Describe(); !strings.HasSuffix(got, "by uid 1000 at 2026-11-26 12:00:00, until win11 stops") {
		t.Errorf("%s", got)
	}
	if IdentityOf(stick).Name != "SanDisk Ultra Fit" {
		t.Errorf("name %q", IdentityOf(stick).Name)
	}
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if ovs, err := Load(path); err != nil || ovs != nil {
		t.Fatalf("missing file: %v %v", ovs, err)
	}
	want := []Override{
		{Device: IdentityOf(stick), Domain: "win11", Lifetime: For, Until: t0.Add(time.Hour), SetBy: alice, SetAt: t0},
		{Device: IdentityOf(kbd), Lifetime: UntilUnplug, SetBy: Setter{Via: "offer unanswered"}, SetAt: t0},
	}
	if err := Save(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip: %v\n%+v\nwant %+v", err, got, want)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if err := Save(path, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := Load(path); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	// No temporary file is left behind.
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d files after saving", len(ents))
	}
	for name, content := range map[string]string{
		"not json":       "{",
		"other version":  `{"version": 2, "overrides": []}`,
		"unknown field":  `{"version": 1, "overrides": [], "x": 1}`,
		"bad lifetime":   `{"version": 1, "overrides": [{"lifetime": "forever"}]}`,
		"stop, no guest": `{"version": 1, "overrides": [{"lifetime": "until-stop"}]}`,
	} {
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A directory that cannot be written: the error names the file.
	if err := Save(filepath.Join(dir, "missing", FileName), want); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("save into a missing directory: %v", err)
	}
}
