package testhost

// GuestXML is the small L2 domain the suites start inside the test host:
// q35, 64 MiB, no OS (SeaBIOS waits forever, which is all a USB attach
// needs), TCG since the test host has no KVM, and the given USB
// controller element, e.g. `<controller type='usb' model='qemu-xhci' ports='8'/>`.
func GuestXML(name, controller string) string {
	return `<domain type='qemu'>
  <name>` + name + `</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    ` + controller + `
    <memballoon model='none'/>
  </devices>
</domain>
`
}
