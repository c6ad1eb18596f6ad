package virt

import (
	"strings"
	"testing"

	"github.com/usbctl/usbctl/reconcile"
)

func TestHostdevXML(t *testing.T) {
	x, err := HostdevXML(reconcile.DeviceKey{Bus: 1, Dev: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := `<hostdev mode="subsystem" type="usb">
  <source>
    <address bus="1" device="2"></address>
  </source>
  <alias name="ua-usbctl-001-002"></alias>
</hostdev>`
	if x != want {
		t.Fatalf("xml:\n got  %s\n want %s", x, want)
	}
	for _, k := range []reconcile.DeviceKey{{}, {Bus: 1}, {Bus: 1, Dev: 128}, {Bus: -1, Dev: 2}} {
		if _, err := HostdevXML(k); err == nil {
			t.Errorf("HostdevXML(%v) accepted", k)
		}
	}
}

const liveXML = `<domain type='qemu' id='3'>
  <name>win11</name>
  <uuid>c7a5fdbd-cdaf-9455-926a-d65c16db1809</uuid>
  <devices>
    <hostdev mode='subsystem' type='usb' managed='no'>
      <source>
        <address bus='1' device='2'/>
      </source>
      <alias name='ua-usbctl-001-002'/>
      <address type='usb' bus='0' port='1'/>
    </hostdev>
    <hostdev mode='subsystem' type='usb' managed='no'>
      <source>
        <vendor id='0x046D'/>
        <product id='0xc52b'/>
        <address bus='1' device='7'/>
      </source>
      <alias name='hostdev0'/>
    </hostdev>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source>
      <alias name='hostdev1'/>
    </hostdev>
  </devices>
</domain>`

func TestParseDomainXML(t *testing.T) {
	name, uuid, hs, err := ParseDomainXML(liveXML)
	if err != nil {
		t.Fatal(err)
	}
	want := []reconcile.Hostdev{
		{Alias: "ua-usbctl-001-002", Bus: 1, Dev: 2},
		{Alias: "hostdev0", Bus: 1, Dev: 7, Vendor: "046d", Product: "c52b"},
	}
	if name != "win11" || uuid != "c7a5fdbd-cdaf-9455-926a-d65c16db1809" || len(hs) != 2 || hs[0] != want[0] || hs[1] != want[1] {
		t.Fatalf("got %q %q %+v", name, uuid, hs)
	}
	if !hs[0].Owned() || hs[1].Owned() {
		t.Fatal("ownership by alias wrong")
	}
}

// FuzzParseDomainXML: any document parses or fails, never panics, and
// hostdev addresses stay in range.
func FuzzParseDomainXML(f *testing.F) {
	f.Add(liveXML)
	f.Add(`<domain><devices><hostdev type='usb'><source><address bus='99999999999' device='-1'/></source></hostdev></devices></domain>`)
	f.Fuzz(func(t *testing.T, doc string) {
		_, _, hs, err := ParseDomainXML(doc)
		if err != nil {
			return
		}
		for _, h := range hs {
			if h.Bus < 0 || h.Bus > 999 || h.Dev < 0 || h.Dev > 127 {
				t.Fatalf("address out of range: %+v", h)
			}
			if h.Vendor != "" && len(h.Vendor) != 4 || strings.ContainsAny(h.Vendor+h.Product, "<>&'\"") {
				t.Fatalf("bad id: %+v", h)
			}
		}
	})
}

// bigXML is liveXML with 24 more devices, the size of a real guest's
// live XML.
func bigXML() string {
	var b strings.Builder
	b.WriteString(liveXML[:strings.Index(liveXML, "<devices>")+len("<devices>")])
	for i := 0; i < 8; i++ {
		b.WriteString(`<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/a.qcow2' index='1'/><backingStore/><target dev='vda' bus='virtio'/><alias name='virtio-disk0'/><address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/></disk>`)
		b.WriteString(`<controller type='pci' index='1' model='pcie-root-port'><model name='pcie-root-port'/><target chassis='1' port='0x10'/><alias name='pci.1'/><address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0' multifunction='on'/></controller>`)
		b.WriteString(`<interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default' portid='x' bridge='virbr0'/><target dev='vnet0'/><model type='virtio'/><alias name='net0'/><address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></interface>`)
	}
	b.WriteString(liveXML[strings.Index(liveXML, "<devices>")+len("<devices>"):])
	return b.String()
}

func BenchmarkParseDomainXML(b *testing.B) {
	doc := bigXML()
	b.SetBytes(int64(len(doc)))
	for i := 0; i < b.N; i++ {
		if _, _, _, err := ParseDomainXML(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// Only the name and hostdevs are decoded: the other devices around them
// must not hide or change any hostdev.
func TestParseDomainXMLAmongOtherDevices(t *testing.T) {
	_, _, want, err := ParseDomainXML(liveXML)
	if err != nil {
		t.Fatal(err)
	}
	name, _, got, err := ParseDomainXML(bigXML())
	if err != nil {
		t.Fatal(err)
	}
	if name != "win11" || len(got) != len(want) || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %q %+v, want win11 %+v", name, got, want)
	}
	if _, _, _, err := ParseDomainXML(`<network><name>x</name></network>`); err == nil {
		t.Fatal("a document that is not a domain parsed")
	}
}

// TestParseUSBControllers: the models of the live USB controllers, without
// "none" and other controller types.
func TestParseUSBControllers(t *testing.T) {
	doc := `<domain><name>l2s</name><devices>
<controller type='usb' index='0' model='piix3-uhci'><alias name='usb'/></controller>
<controller type='pci' index='0' model='pcie-root'/>
<controller type='usb' index='1' model='none'/>
<controller type='usb' index='2'/>
</devices></domain>`
	_, _, _, models, err := parseDomainXML(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 2 || models[0] != "piix3-uhci" || models[1] != "" {
		t.Errorf("usb controller models %q, want [piix3-uhci \"\"]", models)
	}
}
