# two-yubikeys.hcl: two identical YubiKeys (same id 1050:0407), one for each
# VM, told apart by their USB serial numbers.
#
# vendor:product alone cannot tell the keys apart: both are 1050:0407. The
# serial can. `usbctl devices` shows each key's serial, as does
#   lsusb -v -d 1050:0407 | grep iSerial
# Copy the string exactly. If a key shows no serial, it does not report it
# over USB (YubiKeys do not by default); turn that on once per key with
#   ykpersonalize -o serial-usb-visible
# or tell the keys apart by the port they stay plugged into (port = "1-3").

libvirt {
  uri = "qemu:///system"
}

# The key on the work keyring goes to the work VM, wherever it is plugged in.
domain "work" {
  device "yubikey-work" {
    vendor  = "1050"
    product = "0407"
    serial  = "12345678"
  }
}

# The personal key goes to the personal VM.
domain "personal" {
  device "yubikey-personal" {
    vendor  = "1050"
    product = "0407"
    serial  = "23456789"
  }
}

# Every criterion given must hold, so each block above matches one key only.
# While a VM is shut off its key stays on the host.
