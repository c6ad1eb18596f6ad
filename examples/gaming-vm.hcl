# gaming-vm.hcl: a Windows gaming VM that gets a wireless keyboard/mouse
# receiver and a gamepad while it runs, and gives them back when it stops.
#
# Install as /etc/usbctl/usbctl.hcl, or as /etc/usbctl/conf.d/gaming-vm.hcl
# next to the default usbctl.hcl. Check it with:  usbctl check FILE
#
# The domain name must be the name `virsh list --all` shows. The ids are the
# "ID vendor:product" column of `lsusb` (`usbctl devices` shows them too).

libvirt {
  uri = "qemu:///system"
}

domain "win11-gaming" {
  # mode = "allow" is the default: the VM gets only the devices listed below.

  # Logitech Unifying receiver (keyboard and mouse paired to it).
  # lsusb: ID 046d:c52b Logitech, Inc. Unifying Receiver
  # If the host uses a second receiver with the same id, add
  # port = "1-2" (the socket this one is plugged into) so only it matches.
  device "receiver" {
    vendor  = "046d"
    product = "c52b"
  }

  # An Xbox controller on a USB cable. It reports a different product id
  # depending on the model, so list every model you own:
  #   045e:028e Xbox 360 Controller
  #   045e:02ea Xbox One S Controller
  #   045e:0b12 Xbox Series X|S Controller
  # A device matches when any one of the ids matches.
  device "gamepad" {
    ids = ["045e:028e", "045e:02ea", "045e:0b12"]
  }
}
