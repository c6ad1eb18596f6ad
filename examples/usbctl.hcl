# /etc/usbctl/usbctl.hcl: the main usbctl configuration.
#
# usbctld reads this file, then every *.hcl file of /etc/usbctl/conf.d in
# name order, and merges them into one configuration (one file per VM in
# conf.d suits configuration management). After editing:
#   usbctl check              # every problem, with file:line:col
#   systemctl reload usbctld  # apply
#
# As installed, no domain is configured, so usbctld attaches nothing.
# See docs/config.md for the whole language, and the other files of the
# examples directory for complete setups.

# Which libvirt daemon to manage. qemu:///system is the default; the block
# may be given at most once across all files.
libvirt {
  uri = "qemu:///system"
}

# One domain block per VM, named as `virsh list --all` shows it. While the
# VM runs, it gets the host USB devices its device blocks match; when it
# stops, they return to the host. Uncomment and edit:
#
# domain "win11" {
#   # mode     = "allow"  # only the listed devices (default); "deny": all but
#   #                     # the listed ones; "all": every device
#   # priority = 0        # when several running VMs want a device, the
#   #                     # highest priority gets it
#   # preempt  = false    # true: take a device away from a running VM of
#   #                     # lower priority that already holds it
#
#   # Each device block names devices by vendor and product (the ID
#   # vendor:product of lsusb or usbctl devices), or by ids, serial, port
#   # or class.
#   device "receiver" {
#     vendor  = "046d"
#     product = "c52b"
#   }
# }

# Devices that no VM may ever have, whatever the domain blocks say:
#
# exclude "host-keyboard" {
#   port = "1-1"
# }
