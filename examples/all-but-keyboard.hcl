# all-but-keyboard.hcl: one VM takes every USB device of the host except the
# host's own keyboard, so the host can always be driven.
#
# mode = "all" gives the VM every device that is not excluded and not a hub
# (hubs go only to rules naming their exact vendor:product or serial). The
# top-level exclude block keeps the keyboard on the host: excludes win over
# every domain.
#
# Mind what else "every device" means on your machine: a laptop's built-in
# webcam, Bluetooth adapter and fingerprint reader are USB devices too. Add
# an exclude block for each one the host must keep (lsusb lists them).

libvirt {
  uri = "qemu:///system"
}

domain "desktop" {
  mode = "all"
  # mode "all" takes no device blocks: it already wants everything.
}

# The host's keyboard. lsusb: ID 046d:c31c Logitech, Inc. Keyboard K120
exclude "host-keyboard" {
  ids = ["046d:c31c"]
}

# Alternative: mode = "deny" takes every device except those its own device
# blocks list. That keeps the keyboard away from this VM only, while an
# exclude keeps it away from every VM. Instead of the two blocks above:
#
# domain "desktop" {
#   mode = "deny"
#   device "host-keyboard" {
#     ids = ["046d:c31c"]
#   }
# }
