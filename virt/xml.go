package virt

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/usbctl/usbctl/reconcile"
)

// HostdevXML is the <hostdev> usbctl attaches for a device: the source is
// the bus and device number, never vendor:product (two identical devices
// must be told apart), and the alias marks it as ours. It is built with
// libvirtxml from two numbers only, so nothing a device reports about
// itself can reach the XML. No startupPolicy: an optional hostdev for an
// absent device lets QEMU's autoscan grab an unrelated one.
func HostdevXML(key reconcile.DeviceKey) (string, error) {
	if key.Bus < 1 || key.Dev < 1 || key.Bus > 999 || key.Dev > 127 {
		return "", fmt.Errorf("hostdev for %s: bus or device number out of range", key)
	}
	bus, dev := uint(key.Bus), uint(key.Dev)
	hd := libvirtxml.DomainHostdev{
		SubsysUSB: &libvirtxml.DomainHostdevSubsysUSB{
			Source: &libvirtxml.DomainHostdevSubsysUSBSource{
				Address: &libvirtxml.DomainAddressUSB{Bus: &bus, Device: &dev},
			},
		},
		Alias: &libvirtxml.DomainAlias{Name: key.Alias()},
	}
	return hd.Marshal()
}

// domainHostdevs is the part of a domain's XML usbctl reads: its name and
// its hostdevs, each decoded by libvirtxml. Decoding the whole document into
// libvirtxml.Domain decoded every disk, controller and interface only to
// throw them away, on each of the loop's re-reads (BenchmarkParseDomainXML,
// a domain with 24 other devices: 260 → 165 µs, 139 → 88 KB per read), and
// left encoding/xml's type cache holding the whole domain schema in the
// daemon's heap for good. Elements not named here are skipped.
type domainHostdevs struct {
	XMLName xml.Name `xml:"domain"`
	Name    string   `xml:"name"`
	UUID    string   `xml:"uuid"`
	Devices struct {
		Hostdevs []libvirtxml.DomainHostdev `xml:"hostdev"`
		// Controllers: only their type and model, which say what
		// speeds the guest takes (reconcile.SpeedMismatch).
		Controllers []struct {
			Type  string `xml:"type,attr"`
			Model string `xml:"model,attr"`
		} `xml:"controller"`
	} `xml:"devices"`
}

// ParseDomainXML reads the USB hostdevs of a domain's live XML.
func ParseDomainXML(doc string) (name, uuid string, hostdevs []reconcile.Hostdev, err error) {
	name, uuid, hostdevs, _, err = parseDomainXML(doc)
	return name, uuid, hostdevs, err
}

// parseDomainXML is ParseDomainXML and the models of the domain's USB
// controllers (but "none", which is no controller).
func parseDomainXML(doc string) (name, uuid string, hostdevs []reconcile.Hostdev, usbModels []string, err error) {
	var d domainHostdevs
	if err := xml.Unmarshal([]byte(doc), &d); err != nil {
		return "", "", nil, nil, fmt.Errorf("parse domain xml: %w", err)
	}
	for _, h := range d.Devices.Hostdevs {
		if h.SubsysUSB == nil {
			continue
		}
		hostdevs = append(hostdevs, hostdevOf(h))
	}
	for _, c := range d.Devices.Controllers {
		if c.Type == "usb" && c.Model != "none" {
			usbModels = append(usbModels, c.Model)
		}
	}
	return d.Name, d.UUID, hostdevs, usbModels, nil
}

func hostdevOf(h libvirtxml.DomainHostdev) reconcile.Hostdev {
	var out reconcile.Hostdev
	if h.Alias != nil {
		out.Alias = h.Alias.Name
	}
	src := h.SubsysUSB.Source
	if src == nil {
		return out
	}
	if a := src.Address; a != nil && a.Bus != nil && a.Device != nil && *a.Bus <= 999 && *a.Device <= 127 {
		out.Bus, out.Dev = int(*a.Bus), int(*a.Device)
	}
	if src.Vendor != nil {
		out.Vendor = hexID(src.Vendor.ID)
	}
	if src.Product != nil {
		out.Product = hexID(src.Product.ID)
	}
	return out
}

// hexID turns libvirt's "0x046d" into "046d"; anything else into "".
func hexID(s string) string {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 16)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%04x", v)
}
