package hook

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/usbctl/usbctl/reconcile"
)

func saved(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/saved.xml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	receiver = reconcile.Device{Bus: 1, Dev: 5, Vendor: "046d", Product: "c52b", Port: "1-1"}
	// replugged is the receiver plugged in again: a new device number.
	replugged = reconcile.Device{Bus: 1, Dev: 9, Vendor: "046d", Product: "c52b", Port: "1-1"}
	pad       = reconcile.Device{Bus: 1, Dev: 8, Vendor: "045e", Product: "028e", Port: "1-2"}
	yubikey   = reconcile.Device{Bus: 1, Dev: 3, Vendor: "1050", Product: "0407", Port: "1-3"}
	keyboard  = reconcile.Device{Bus: 1, Dev: 12, Vendor: "04d9", Product: "0006", Port: "1-4"}
)

func rules(ids ...string) *reconcile.Rules {
	var ms []reconcile.Match
	for _, id := range ids {
		p, err := reconcile.ParseIDPattern(id)
		if err != nil {
			panic(err)
		}
		ms = append(ms, reconcile.Match{Label: id, IDs: []reconcile.IDPattern{p}})
	}
	return &reconcile.Rules{Domains: []reconcile.DomainRules{{Name: "g1", Mode: reconcile.ModeAllow, Devices: ms}}}
}

var hostdevRE = regexp.MustCompile(`(?s)<hostdev .*?</hostdev>`)

// usbHostdevs parses the rewritten XML as libvirt would and returns its
// USB hostdevs.
func usbHostdevs(t *testing.T, doc []byte) []libvirtxml.DomainHostdev {
	t.Helper()
	var d libvirtxml.Domain
	if err := d.Unmarshal(string(doc)); err != nil {
		t.Fatalf("rewritten XML does not parse: %v\n%s", err, doc)
	}
	var out []libvirtxml.DomainHostdev
	for _, h := range d.Devices.Hostdevs {
		if h.SubsysUSB != nil {
			out = append(out, h)
		}
	}
	return out
}

// TestRestoreReplugged: the guest was saved with the receiver at 001:005;
// it came back as 001:009. The hostdev is re-pointed there, with the alias
// of 001:009, on the same guest port; the pad (still at 001:008) and the
// hostdev usbctl did not attach stay as they were; nothing else of the
// XML changes.
func TestRestoreReplugged(t *testing.T) {
	in := saved(t)
	out, changes, err := Rewrite(Input{Domain: "g1", Op: OpRestore, XML: in,
		Devices: []reconcile.Device{replugged, pad, yubikey}, Rules: rules("046d:c52b", "045e:028e")})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].From != receiver.Key() || changes[0].To != replugged.Key() {
		t.Fatalf("changes %v", changes)
	}
	hs := usbHostdevs(t, out)
	if len(hs) != 3 {
		t.Fatalf("%d USB hostdevs after the rewrite, want 3 (libvirt refuses fewer)", len(hs))
	}
	h := hs[0]
	if h.Alias.Name != "ua-usbctl-001-009" || *h.SubsysUSB.Source.Address.Bus != 1 || *h.SubsysUSB.Source.Address.Device != 9 ||
		h.Address.USB == nil || h.Address.USB.Port != "1" || h.Managed != "no" {
		t.Fatalf("re-pointed hostdev: %+v source %+v", h, h.SubsysUSB.Source.Address)
	}
	if hs[1].Alias.Name != "hostdev0" || hs[2].Alias.Name != "ua-usbctl-001-008" {
		t.Fatalf("other hostdevs changed: %s, %s", hs[1].Alias.Name, hs[2].Alias.Name)
	}
	// Outside the one element, the XML is byte for byte what libvirt gave.
	orig := hostdevRE.FindAllIndex(in, -1)
	if got, want := string(out[:orig[0][0]]), string(in[:orig[0][0]]); got != want {
		t.Fatal("the XML before the hostdev changed")
	}
	if got, want := string(out[len(out)-(len(in)-orig[0][1]):]), string(in[orig[0][1]:]); got != want {
		t.Fatal("the XML after the hostdev changed")
	}
}

func TestRestoreUnchanged(t *testing.T) {
	out, changes, err := Rewrite(Input{Domain: "g1", Op: OpRestore, XML: saved(t),
		Devices: []reconcile.Device{receiver, pad}, Rules: rules("046d:c52b")})
	if err != nil || out != nil || changes != nil {
		t.Fatalf("devices still at their addresses: out %v changes %v err %v", out != nil, changes, err)
	}
	// Other operations never rewrite, whatever the devices.
	for _, op := range []string{"prepare", "start", "started", "stopped", "release", "reconnect", "attach"} {
		if out, _, err := Rewrite(Input{Domain: "g1", Op: op, XML: saved(t)}); out != nil || err != nil {
			t.Fatalf("op %s: out %v err %v", op, out != nil, err)
		}
	}
	// A guest with no usbctl hostdev is left alone.
	plain := hostdevRE.ReplaceAll(saved(t), nil)
	if out, _, err := Rewrite(Input{Domain: "g1", Op: OpRestore, XML: plain}); out != nil || err != nil {
		t.Fatalf("no usbctl hostdev: out %v err %v", out != nil, err)
	}
}

// TestRestoreTwoLost: both usbctl devices were replugged; each gets one of
// the devices the rules give the guest, in the plan's order.
func TestRestoreTwoLost(t *testing.T) {
	pad2 := reconcile.Device{Bus: 1, Dev: 20, Vendor: "045e", Product: "028e", Port: "1-2"}
	out, changes, err := Rewrite(Input{Domain: "g1", Op: OpRestore, XML: saved(t),
		Devices: []reconcile.Device{replugged, pad2, keyboard}, Rules: rules("046d:c52b", "045e:028e")})
	if err != nil || len(changes) != 2 {
		t.Fatalf("changes %v err %v", changes, err)
	}
	hs := usbHostdevs(t, out)
	if hs[0].Alias.Name != "ua-usbctl-001-009" || hs[2].Alias.Name != "ua-usbctl-001-020" || hs[2].Address.USB.Port != "3" {
		t.Fatalf("aliases %s %s", hs[0].Alias.Name, hs[2].Alias.Name)
	}
}

// TestRestoreImpossible: the device is not back and nothing the rules give
// the guest is present: the restore fails with a message that says what
// to do, rather than libvirt's "Did not find USB device".
func TestRestoreImpossible(t *testing.T) {
	_, _, err := Rewrite(Input{Domain: "g1", Op: OpRestore, XML: saved(t),
		Devices: []reconcile.Device{pad, keyboard}, Rules: rules("046d:c52b", "045e:028e")})
	if err == nil || !strings.Contains(err.Error(), "ua-usbctl-001-005") || !strings.Contains(err.Error(), "virsh managedsave-remove g1") || strings.Contains(err.Error(), "001-008") {
		t.Fatalf("err = %v", err)
	}
	// The keyboard is present but no rule gives it to g1: it is never
	// taken in the receiver's place.
	_, _, err = Rewrite(Input{Domain: "g1", Op: OpRestore, XML: saved(t), Devices: []reconcile.Device{pad, keyboard}})
	if err == nil || !strings.Contains(err.Error(), "no usbctl config here") {
		t.Fatalf("without rules: err = %v", err)
	}
}

// TestMigrate: on the destination the saved numbers are another host's.
// A device at 001:005 here that the rules do not give g1 is never taken;
// a device they do give it takes the place.
func TestMigrate(t *testing.T) {
	stranger := reconcile.Device{Bus: 1, Dev: 5, Vendor: "0bda", Product: "8153", Port: "1-6"}
	out, changes, err := Rewrite(Input{Domain: "g1", Op: OpMigrate, XML: saved(t),
		Devices: []reconcile.Device{stranger, replugged, pad}, Rules: rules("046d:c52b", "045e:028e")})
	if err != nil || len(changes) != 1 || changes[0].To != replugged.Key() {
		t.Fatalf("changes %v err %v", changes, err)
	}
	if hs := usbHostdevs(t, out); hs[0].Alias.Name != "ua-usbctl-001-009" || hs[2].Alias.Name != "ua-usbctl-001-008" {
		t.Fatalf("aliases %s %s", hs[0].Alias.Name, hs[2].Alias.Name)
	}
	_, _, err = Rewrite(Input{Domain: "g1", Op: OpMigrate, XML: saved(t), Devices: []reconcile.Device{stranger, pad}, Rules: rules("045e:028e")})
	if err == nil || !strings.Contains(err.Error(), "cannot migrate g1") || !strings.Contains(err.Error(), "Detach them on the source host first") {
		t.Fatalf("err = %v", err)
	}
}

func TestUnreadable(t *testing.T) {
	_, _, err := Rewrite(Input{Domain: "g1", Op: OpRestore, XML: []byte("<domain><devices><hostdev")})
	if !errors.Is(err, ErrUnreadable) {
		t.Fatalf("err = %v", err)
	}
}
