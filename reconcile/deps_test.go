package reconcile

import (
	"testing"

	"github.com/usbctl/usbctl/internal/deptest"
)

// reconcile is the pure decision (DESIGN.md): it builds without cgo and
// knows nothing of libvirt or udev, so it runs and is tested anywhere.
func TestDeps(t *testing.T) {
	deptest.Checker{
		Pkg:   ".",
		NoCgo: "reconcile is pure: no I/O and no C, so Plan is tested with tables and fuzzed anywhere, and usbctl plan --from replays a host without libvirt or udev",
		BadDeps: map[string]string{
			"libvirt.org/go/...":           "libvirt is the virt adapter's; reconcile only decides",
			"github.com/jochenvg/go-udev":  "udev is udevsrc's; reconcile only decides",
			"github.com/usbctl/usbctl/...": "reconcile is the bottom layer: every other package of usbctl imports it, it imports none",
		},
	}.Check(t)
}
