package testhost

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// GadgetSpec is the identity of a USB gadget made inside the test host.
// Strings go to the kernel as they are (hostile ones too: they are passed
// in the environment, never quoted into a script).
type GadgetSpec struct {
	Name            string // configfs directory name: [A-Za-z0-9_.-]+
	Vendor, Product string // 4 hex digits each, e.g. "1d6b", "0104"
	Serial          string // empty: no serial number string
	Manufacturer    string
	ProductName     string
	// MaxSpeed caps the speed the gadget enumerates at (configfs
	// max_speed: "low-speed", "full-speed", "high-speed"); empty: the
	// UDC's fastest (high speed on dummy_hcd).
	MaxSpeed string
}

// Gadget is a configfs gadget (one ACM function) bound to a dummy_hcd UDC:
// to the kernel, a device plugged into port 1 of that dummy_hcd's bus.
type Gadget struct {
	h    *Host
	Spec GadgetSpec
	UDC  string // dummy_udc.N
	// Port is the device's sysfs name inside (BUS-1), Bus and Dev its
	// busnum and devnum (/dev/bus/usb/BBB/DDD) since the last bind.
	Port     string
	Bus, Dev int
}

var (
	gadgetName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	maxSpeed   = regexp.MustCompile(`^(|low-speed|full-speed|high-speed|super-speed)$`)
	hex4       = regexp.MustCompile(`^[0-9a-fA-F]{4}$`)
)

// gadgetLoad loads dummy_hcd with UDCs controllers and the gadget
// framework, and mounts configfs.
const gadgetLoad = `
modprobe dummy_hcd num="$UDCS"
modprobe libcomposite
modprobe usb_f_acm
mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
`

// gadgetWait prints "UDC PORT BUS DEV" once the gadget bound to $UDC has
// enumerated as $PID with a devnum other than $OLDDEV.
const gadgetWait = `
n=${UDC#dummy_udc.}
for i in $(seq 200); do
	for d in /sys/devices/platform/dummy_hcd.$n/usb*/*-1; do
		[ -e "$d/devnum" ] || continue
		[ "$(cat "$d/idProduct")" = "$PID" ] || continue
		dev=$(cat "$d/devnum")
		# 0 is no address: a device seen before the kernel gave it one
		# (a full-speed gadget once showed devnum 0 here).
		[ "$dev" != 0 ] && [ "$dev" != "$OLDDEV" ] || continue
		echo "$UDC ${d##*/} $(cat "$d/busnum") $dev"
		exit 0
	done
	sleep 0.05
done
echo "gadget $NAME on $UDC did not enumerate as $VID:$PID" >&2
exit 1
`

const gadgetCreate = `
G=/sys/kernel/config/usb_gadget/$NAME
UDC=
for u in $(ls /sys/class/udc); do
	used=
	for f in /sys/kernel/config/usb_gadget/*/UDC; do
		[ -e "$f" ] && [ "$(cat "$f")" = "$u" ] && used=1
	done
	if [ -z "$used" ]; then UDC=$u; break; fi
done
if [ -z "$UDC" ]; then echo "no free UDC (all $(ls /sys/class/udc | wc -l) in use)" >&2; exit 1; fi
mkdir "$G"
echo "0x$VID" > "$G/idVendor"
echo "0x$PID" > "$G/idProduct"
mkdir "$G/strings/0x409"
if [ -n "$SERIAL" ]; then printf %s "$SERIAL" > "$G/strings/0x409/serialnumber"; fi
if [ -n "$MFR" ]; then printf %s "$MFR" > "$G/strings/0x409/manufacturer"; fi
if [ -n "$PRODUCT" ]; then printf %s "$PRODUCT" > "$G/strings/0x409/product"; fi
if [ -n "$MAXSPEED" ]; then echo "$MAXSPEED" > "$G/max_speed"; fi
mkdir "$G/configs/c.1" "$G/functions/acm.usb0"
ln -s "$G/functions/acm.usb0" "$G/configs/c.1/"
echo "$UDC" > "$G/UDC"
OLDDEV=
` + gadgetWait

// Gadget makes a gadget with spec's identity and binds it to a free
// dummy_udc; it returns once the kernel has enumerated it. The first call
// loads dummy_hcd with Options.UDCs controllers.
func (h *Host) Gadget(ctx context.Context, spec GadgetSpec) (*Gadget, error) {
	if !gadgetName.MatchString(spec.Name) || !hex4.MatchString(spec.Vendor) || !hex4.MatchString(spec.Product) {
		return nil, fmt.Errorf("test host: gadget %q: want a name of [A-Za-z0-9_.-] and 4-hex-digit vendor and product, have %q:%q", spec.Name, spec.Vendor, spec.Product)
	}
	if !maxSpeed.MatchString(spec.MaxSpeed) {
		return nil, fmt.Errorf("test host: gadget %s: max speed %q: want low-speed, full-speed, high-speed or super-speed", spec.Name, spec.MaxSpeed)
	}
	spec.Vendor, spec.Product = strings.ToLower(spec.Vendor), strings.ToLower(spec.Product)
	h.gmu.Lock()
	defer h.gmu.Unlock()
	if h.gadgets[spec.Name] {
		return nil, fmt.Errorf("test host: gadget %s exists", spec.Name)
	}
	script := gadgetCreate
	if !h.gloaded {
		script = gadgetLoad + script
	}
	g := &Gadget{h: h, Spec: spec}
	out, err := h.ShEnv(ctx, g.env("", "", spec.Product), script)
	if err != nil {
		return nil, fmt.Errorf("test host: gadget %s (%s:%s): %w", spec.Name, spec.Vendor, spec.Product, err)
	}
	h.gloaded = true
	h.gadgets[spec.Name] = true
	if err := g.parse(out); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *Gadget) env(udc, oldDev, product string) []string {
	return []string{
		"UDCS=" + strconv.Itoa(g.h.opts.UDCs), "NAME=" + g.Spec.Name, "UDC=" + udc, "OLDDEV=" + oldDev,
		"VID=" + g.Spec.Vendor, "PID=" + product,
		"SERIAL=" + g.Spec.Serial, "MFR=" + g.Spec.Manufacturer, "PRODUCT=" + g.Spec.ProductName,
		"MAXSPEED=" + g.Spec.MaxSpeed,
	}
}

func (g *Gadget) parse(out string) error {
	f := strings.Fields(out)
	if len(f) != 4 {
		return fmt.Errorf("test host: gadget %s: unexpected %q", g.Spec.Name, out)
	}
	bus, err1 := strconv.Atoi(f[2])
	dev, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("test host: gadget %s: unexpected %q", g.Spec.Name, out)
	}
	g.UDC, g.Port, g.Bus, g.Dev = f[0], f[1], bus, dev
	return nil
}

// Reenumerate unbinds the gadget, changes its product id and binds it
// again: the same port, a new devnum, as a board entering DFU mode does.
func (g *Gadget) Reenumerate(ctx context.Context, newProduct string) error {
	if !hex4.MatchString(newProduct) {
		return fmt.Errorf("test host: gadget %s: product %q: want 4 hex digits", g.Spec.Name, newProduct)
	}
	newProduct = strings.ToLower(newProduct)
	out, err := g.h.ShEnv(ctx, g.env(g.UDC, strconv.Itoa(g.Dev), newProduct), `
G=/sys/kernel/config/usb_gadget/$NAME
echo "" > "$G/UDC"
echo "0x$PID" > "$G/idProduct"
echo "$UDC" > "$G/UDC"
`+gadgetWait)
	if err != nil {
		return fmt.Errorf("test host: re-enumerate gadget %s as %s: %w", g.Spec.Name, newProduct, err)
	}
	g.Spec.Product = newProduct
	return g.parse(out)
}

// Remove unbinds the gadget (the kernel sees an unplug) and deletes it;
// it returns once the device is gone from sysfs.
func (g *Gadget) Remove(ctx context.Context) error {
	_, err := g.h.ShEnv(ctx, g.env(g.UDC, "", g.Spec.Product), `
G=/sys/kernel/config/usb_gadget/$NAME
n=${UDC#dummy_udc.}
echo "" > "$G/UDC"
rm -f "$G/configs/c.1/acm.usb0"
rmdir "$G/configs/c.1" "$G/functions/acm.usb0" "$G/strings/0x409" "$G"
for i in $(seq 200); do
	ls -d /sys/devices/platform/dummy_hcd.$n/usb*/*-1 >/dev/null 2>&1 || exit 0
	sleep 0.05
done
echo "device of gadget $NAME still in sysfs" >&2
exit 1
`)
	if err != nil {
		return fmt.Errorf("test host: remove gadget %s: %w", g.Spec.Name, err)
	}
	g.h.gmu.Lock()
	delete(g.h.gadgets, g.Spec.Name)
	g.h.gmu.Unlock()
	return nil
}
