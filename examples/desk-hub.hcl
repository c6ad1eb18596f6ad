# desk-hub.hcl: everything plugged into the desk hub goes to one VM.
#
# The hub is plugged into port 4 of USB bus 1, so the kernel names the
# devices behind it 1-4.1, 1-4.2, ... and, behind a second hub on its port 3,
# 1-4.3.1 and so on. `usbctl devices` shows this tree with each port path;
# they are also the names in /sys/bus/usb/devices.
#
# port = "1-4.*" matches every device behind port 1-4, at any depth, but not
# the hub on 1-4 itself. Hubs are never handed to a VM by a port rule (nor
# by any rule other than an exact vendor:product or a serial), so the hubs
# stay on the host and the devices plugged into them move.

libvirt {
  uri = "qemu:///system"
}

domain "workstation" {
  device "desk-hub" {
    port = "1-4.*"
  }
}

# If the host's own keyboard is plugged into the desk hub too (say into its
# port 1), keep it on the host: excludes win over every rule.
#
# exclude "host-keyboard" {
#   port = "1-4.1"
# }
